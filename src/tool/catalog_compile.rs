//! The two stages behind [`Catalog::parse`](super::Catalog::parse).

use std::path::Path;

use super::catalog::{Catalog, CatalogError};
use super::registry::Registry;

pub(super) fn compile(text: &str, origin: &Path, registry: &Registry) -> Result<Catalog, CatalogError> {
    let _ = (text, registry);
    Err(CatalogError {
        problems: vec![format!("{}: catalog compilation not implemented", origin.display())],
    })
}
