//! Checking that a tool's `parameters` is a usable JSON Schema costs a full compile, and
//! clients send the same tools with every chat call: schemas already accepted are remembered
//! (by their exact JSON text, in a bounded set) and not compiled again (`tool_schemas`).

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

/// Most schema texts remembered, and most bytes of them; past either the set starts over.
const MAX_SCHEMAS: usize = 1024;
const MAX_BYTES: usize = 1 << 20;

struct Known {
    texts: HashSet<String>,
    bytes: usize,
}

static KNOWN: LazyLock<Mutex<Known>> = LazyLock::new(|| {
    Mutex::new(Known {
        texts: HashSet::new(),
        bytes: 0,
    })
});

fn known() -> MutexGuard<'static, Known> {
    KNOWN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether a schema with exactly this JSON text was accepted before.
pub(super) fn is_known(text: &str) -> bool {
    known().texts.contains(text)
}

/// Remembers an accepted schema's JSON text.
pub(super) fn remember(text: String) {
    if text.len() > MAX_BYTES {
        return;
    }
    let mut known = known();
    if known.texts.len() >= MAX_SCHEMAS || known.bytes + text.len() > MAX_BYTES {
        known.texts.clear();
        known.bytes = 0;
    }
    known.bytes += text.len();
    known.texts.insert(text);
}

#[cfg(test)]
mod tests {
    #[test]
    fn remembered_texts_are_bounded_in_count_and_bytes() {
        let text = |i: usize| format!("{{\"known-schemas-test\":{i}}}");
        super::remember(text(0));
        assert!(super::is_known(&text(0)));
        for i in 1..=super::MAX_SCHEMAS {
            super::remember(text(i));
        }
        let known = super::known();
        assert!(known.texts.len() <= super::MAX_SCHEMAS);
        assert!(known.bytes <= super::MAX_BYTES);
    }
}
