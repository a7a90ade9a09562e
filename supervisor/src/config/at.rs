//! [`At`]: the plugin being resolved, and the problems found with its keys
//! so far, each named by file and key.

use super::error::Problem;

/// Which plugin of which file is being resolved, and what is wrong with it
/// so far: names the keys of its problems and collects them.
pub(super) struct At<'a> {
    pub(super) file: &'a str,
    pub(super) name: &'a str,
    pub(super) problems: Vec<Problem>,
    /// Keys (under `plugins.NAME.`) already refused while the layers were
    /// read: a problem resolving them again is not said twice.
    pub(super) refused: Vec<String>,
}

impl At<'_> {
    pub(super) fn key(&self, k: &str) -> String {
        format!("plugins.{}.{k}", self.name)
    }

    /// Notes a problem with key `k` of this plugin.
    pub(super) fn refuse(&mut self, k: &str, message: impl Into<String>) {
        if self.refused.iter().any(|r| r == k) {
            return;
        }
        let problem = Problem {
            file: self.file.to_string(),
            key: self.key(k),
            message: message.into(),
        };
        self.problems.push(problem);
    }
}
