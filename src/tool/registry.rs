//! The explicit list of handler factories agentd knows, by tools.toml `handler` name.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use agentd_sdk::{BuildContext, HandlerFactory};

/// Handler factories by name, and what they are told about where the daemon runs.
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<&'static str, Arc<dyn HandlerFactory>>,
    context: BuildContext,
}

impl Registry {
    /// Every handler shipped with agentd.
    pub fn builtin() -> Self {
        let mut registry = Self::default();
        registry.register(Arc::new(super::builtin::EchoFactory));
        registry.register(Arc::new(agentd_example::LookupFactory));
        registry.register(Arc::new(agentd_http::HttpFactory));
        registry.register(Arc::new(agentd_smtp::SmtpFactory));
        registry
    }

    /// Adds (or replaces) a factory.
    pub fn register(&mut self, factory: Arc<dyn HandlerFactory>) -> &mut Self {
        self.factories.insert(factory.name(), factory);
        self
    }

    /// The data directory handlers resolve relative paths of files they write against.
    pub fn set_data_dir(&mut self, data_dir: PathBuf) -> &mut Self {
        self.context.data_dir = Some(data_dir);
        self
    }

    /// What factories are built with.
    pub fn build_context(&self) -> &BuildContext {
        &self.context
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn HandlerFactory>> {
        self.factories.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.factories.keys().copied()
    }
}
