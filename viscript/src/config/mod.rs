//! The viscript app catalogue: loading, validating and querying `config.yaml`.
//!
//! The file is YAML with two optional top-level keys, `settings` and `apps`.
//! Parsing is strict: unknown keys, wrong types, duplicate keys, bad app names,
//! unknown `after` targets and dependency cycles are all errors, and every
//! error names `file:line:column`.
//!
//! Errors that leave the document readable (unknown keys, bad names, semantic
//! problems) are collected and reported together; a YAML syntax error or a
//! value of the wrong type stops parsing at that point.
//!
//! Files: `types.rs` (what a config holds, how loading fails), `parse.rs` (the YAML, read
//! strictly with positions), `validate.rs` (the checks that need the whole document).

mod parse;
mod types;
mod validate;

pub use types::*;

use std::io::Read;
use std::path::Path;

// ---------------------------------------------------------------------------
// Config API
// ---------------------------------------------------------------------------

impl Config {
    /// Reads, parses and validates the config file at `path`.
    ///
    /// Relative app paths are resolved against the folder of `path` made
    /// absolute (without resolving symlinks); `Config::path` is that absolute
    /// path. Error messages use `path` as given.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let io_err = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io_err)?;
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err)?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
                limit: MAX_CONFIG_BYTES,
            });
        }
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let line = good.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
                let column =
                    String::from_utf8_lossy(&good[line_start..]).chars().count() as u64 + 1;
                return Err(ConfigError::NotUtf8 {
                    path: path.to_path_buf(),
                    line,
                    column,
                });
            }
        };
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        parse::parse_impl(&text, path, &absolute)
    }

    /// Parses and validates config text. `path` is the file the text came
    /// from: it names the file in errors and relative paths resolve against
    /// its folder. Nothing is read from disk.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        parse::parse_impl(text, path, path)
    }

    /// The app called `name`.
    pub fn app(&self, name: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.name == name)
    }

    /// All apps in start order: every app comes after the apps in its `after`
    /// list; otherwise file order is kept (Kahn's algorithm, earliest app in
    /// the file first). `after` names that are not in the config are ignored.
    /// Never panics: should the apps have been edited into a cycle, the apps
    /// on it follow in file order.
    pub fn start_order(&self) -> Vec<&App> {
        let n = self.apps.len();
        let deps: Vec<Vec<usize>> = self
            .apps
            .iter()
            .map(|a| a.after.iter().filter_map(|d| self.index_of(d)).collect())
            .collect();
        let mut placed = vec![false; n];
        let mut order = Vec::with_capacity(n);
        while order.len() < n {
            let next = (0..n).find(|&i| !placed[i] && deps[i].iter().all(|&d| placed[d]));
            match next {
                Some(i) => {
                    placed[i] = true;
                    order.push(&self.apps[i]);
                }
                None => break,
            }
        }
        for (i, app) in self.apps.iter().enumerate() {
            if !placed[i] {
                order.push(app);
            }
        }
        order
    }

    /// All apps in stop order: the reverse of [`Config::start_order`], so an
    /// app stops before the apps it depends on.
    pub fn stop_order(&self) -> Vec<&App> {
        let mut order = self.start_order();
        order.reverse();
        order
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.apps.iter().position(|a| a.name == name)
    }
}
/// What a reload changes: apps by name, compared entry by entry (every field of [`App`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// In the new config only.
    pub added: Vec<String>,
    /// In the old config only.
    pub removed: Vec<String>,
    /// In both, with a different entry.
    pub changed: Vec<String>,
    /// In both, the same.
    pub same: Vec<String>,
    /// The settings differ.
    pub settings: bool,
}

impl Changes {
    /// What turns `old` into `new`; each list in the order of the config it comes from.
    pub fn between(old: &Config, new: &Config) -> Changes {
        let mut c = Changes {
            settings: old.settings != new.settings,
            ..Changes::default()
        };
        for a in &new.apps {
            match old.app(&a.name) {
                None => c.added.push(a.name.clone()),
                Some(o) if o != a => c.changed.push(a.name.clone()),
                Some(_) => c.same.push(a.name.clone()),
            }
        }
        c.removed = old
            .apps
            .iter()
            .filter(|a| new.app(&a.name).is_none())
            .map(|a| a.name.clone())
            .collect();
        c
    }
}

#[cfg(test)]
mod tests;
