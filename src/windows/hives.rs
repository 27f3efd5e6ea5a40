//! The prefix's three hive files, before and after a run, and what the diff of them says.

use std::fs;
use std::path::Path;

use super::paths::WINE_USER_SID;
use super::reg::{self, Hive, HiveDiff};

/// The hive files of a prefix, as wineserver saves them.
pub const HIVE_FILES: &[&str] = &["system.reg", "user.reg", "userdef.reg"];

/// A prefix's registry: one parsed hive per file that could be read.
#[derive(Debug, Default)]
pub struct Hives {
    pub hives: Vec<Hive>,
    /// (file, reason) for the files that could not be read.
    pub problems: Vec<(String, String)>,
}

impl Hives {
    /// Reads `system.reg`, `user.reg` and `userdef.reg` from `dir`.
    pub fn read(dir: &Path) -> Hives {
        let mut out = Hives::default();
        for name in HIVE_FILES {
            let path = dir.join(name);
            let parsed = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    let text = String::from_utf8_lossy(&bytes);
                    Hive::parse(&text).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(h) => out.hives.push(h),
                Err(e) => out.problems.push((path.display().to_string(), e)),
            }
        }
        out
    }

    /// The SID of the user whose hive is `user.reg` (Wine's fixed local user by default).
    pub fn user_sid(&self) -> String {
        self.hives
            .iter()
            .find_map(|h| {
                let rest = strip_ci(&h.root, "REGISTRY\\User\\")?;
                (rest.starts_with("S-")).then(|| rest.to_string())
            })
            .unwrap_or_else(|| WINE_USER_SID.to_string())
    }

    /// The hive holding a full key path (`REGISTRY\Machine\...`), and the path inside it.
    fn locate<'a>(&'a self, key: &'a str) -> Option<(&'a Hive, &'a str)> {
        let key = key.strip_prefix('\\').unwrap_or(key);
        self.hives.iter().find_map(|h| {
            let rest = strip_ci(key, &h.root)?;
            if rest.is_empty() {
                return Some((h, ""));
            }
            Some((h, rest.strip_prefix('\\')?))
        })
    }

    /// Whether the key at full path `key` has a value `name`; `None` when the key's hive was
    /// not read.
    pub fn has_value(&self, key: &str, name: &str) -> Option<bool> {
        let (hive, path) = self.locate(key)?;
        Some(hive.value(path, name).is_some())
    }
}

/// The changes between two versions of the prefix's registry, with full key paths
/// (`REGISTRY\Machine\...`), hive by hive (matched by root).
pub fn diff(before: &Hives, after: &Hives) -> HiveDiff {
    let mut all = HiveDiff::default();
    for new in &after.hives {
        let Some(old) = before
            .hives
            .iter()
            .find(|h| h.root.eq_ignore_ascii_case(&new.root))
        else {
            continue;
        };
        let d = reg::diff(old, new);
        let full = |p: &str| format!("{}\\{}", new.root, p);
        all.keys_created
            .extend(d.keys_created.iter().map(|k| full(k)));
        all.keys_deleted
            .extend(d.keys_deleted.iter().map(|k| full(k)));
        all.values_set
            .extend(d.values_set.into_iter().map(|(k, n, v)| (full(&k), n, v)));
        all.values_deleted.extend(
            d.values_deleted
                .into_iter()
                .map(|(k, n, v)| (full(&k), n, v)),
        );
    }
    all
}

fn strip_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}
