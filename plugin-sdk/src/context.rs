//! [`Context`]: what a plugin knows about where it runs.

use std::sync::Arc;

/// Handed to every hook: the plugin's identity under this supervisor.
#[derive(Debug, Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
}

impl Context {
    pub(crate) fn new(name: String) -> Self {
        Self {
            inner: Arc::new(Inner { name }),
        }
    }

    /// The name this plugin runs under in the fleet config.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
}
