//! The report's `registry` and `services` sections, from the trace's records and the hives.

use std::collections::HashSet;
use std::hash::Hash;

use super::hives::{self, Hives};
use super::ids::{incomplete, ProcessIds};
use super::paths::{hkey_path, strip_ci};
use super::policy::WINE_CHURN;
use super::reg::{render, type_name, RegValue, REG_DWORD};
use super::trace::{Op, Role, Trace};
use crate::report::{Registry, RegistryKey, RegistryValue, Report, Service};

/// Entries kept per registry list, mutexes and services; the rest is counted in `incomplete`.
pub const ENTRIES_MAX: usize = 5_000;

/// The registry section: the trace, then the hive diff when the trace is not whole, then the
/// final state from the saved hives.
pub(super) fn registry(
    report: &mut Report,
    trace: Option<&Trace>,
    ids: &ProcessIds,
    sid: &str,
    before: &Hives,
    after: Option<&Hives>,
) -> Registry {
    let mut lists = RegistryLists::new();
    if let Some(t) = trace {
        registry_from_trace(&mut lists, t, ids, sid);
    }
    let whole = trace.is_some_and(|t| t.dropped == 0 && t.cut_lines == 0 && !t.ended_mid_line);
    match (whole, after, before.problems.first()) {
        (false, Some(after), None) => {
            registry_from_diff(&mut lists, &hives::diff(before, after), sid);
        }
        (false, _, Some((file, e))) => {
            let reason = format!(
                "the image's registry {file} could not be read ({e}), so what the trace lacks \
                 could not be found by comparison"
            );
            incomplete(report, "registry", reason, None);
        }
        _ => {}
    }
    let dropped = lists.dropped();
    if dropped > 0 {
        let reason = format!("more than {ENTRIES_MAX} entries in a list");
        incomplete(report, "registry", reason, Some(dropped));
    }
    let mut r = lists.finish();
    if let Some(after) = after {
        final_state(&mut r, after, sid);
    }
    r
}

/// A list that keeps the first of equal entries, up to [`ENTRIES_MAX`], and counts the rest.
pub(super) struct Unique<T> {
    pub(super) items: Vec<T>,
    seen: HashSet<T>,
    dropped: u64,
}

impl<T: Eq + Hash + Clone> Unique<T> {
    pub(super) fn new() -> Self {
        Unique {
            items: Vec::new(),
            seen: HashSet::new(),
            dropped: 0,
        }
    }

    pub(super) fn push(&mut self, item: T) {
        if self.seen.contains(&item) {
            return;
        }
        if self.items.len() >= ENTRIES_MAX {
            self.dropped += 1;
            return;
        }
        self.seen.insert(item.clone());
        self.items.push(item);
    }
}

/// The registry lists while they are built.
struct RegistryLists {
    keys_created: Unique<RegistryKey>,
    keys_deleted: Unique<RegistryKey>,
    values_set: Unique<RegistryValue>,
    values_deleted: Unique<RegistryValue>,
}

impl RegistryLists {
    fn new() -> Self {
        RegistryLists {
            keys_created: Unique::new(),
            keys_deleted: Unique::new(),
            values_set: Unique::new(),
            values_deleted: Unique::new(),
        }
    }

    fn dropped(&self) -> u64 {
        self.keys_created.dropped
            + self.keys_deleted.dropped
            + self.values_set.dropped
            + self.values_deleted.dropped
    }

    fn finish(self) -> Registry {
        Registry {
            keys_created: self.keys_created.items,
            keys_deleted: self.keys_deleted.items,
            values_set: self.values_set.items,
            values_deleted: self.values_deleted.items,
        }
    }
}

fn value_entry(key: String, name: String, v: &RegValue, process_id: Option<u32>) -> RegistryValue {
    RegistryValue {
        key,
        name,
        value_type: type_name(v.ty),
        data: render(v),
        process_id,
        exists_at_end: None,
    }
}

fn registry_from_trace(r: &mut RegistryLists, t: &Trace, ids: &ProcessIds, sid: &str) {
    for rec in &t.records {
        let process_id = ids.get(rec.process);
        match &rec.op {
            Op::KeyCreated { key } => {
                let key = hkey_path(key, sid);
                r.keys_created.push(RegistryKey { key, process_id });
            }
            Op::KeyDeleted { key } => {
                let key = hkey_path(key, sid);
                r.keys_deleted.push(RegistryKey { key, process_id });
            }
            Op::ValueSet { key, name, value } => {
                let key = hkey_path(key, sid);
                r.values_set
                    .push(value_entry(key, name.clone(), value, process_id));
            }
            Op::ValueDeleted { key, name, value } => {
                let key = hkey_path(key, sid);
                let e = match value {
                    Some(v) => value_entry(key, name.clone(), v, process_id),
                    None => RegistryValue {
                        key,
                        name: name.clone(),
                        value_type: String::new(),
                        data: String::new(),
                        process_id,
                        exists_at_end: None,
                    },
                };
                r.values_deleted.push(e);
            }
            _ => {}
        }
    }
}

fn churn(key: &str) -> bool {
    let lower = key.to_lowercase();
    WINE_CHURN.iter().any(|c| lower.starts_with(c))
}

/// Adds the diff's changes the trace did not list (compared case-insensitively, as the registry
/// does), without a process.
fn registry_from_diff(r: &mut RegistryLists, d: &super::reg::HiveDiff, sid: &str) {
    let lower_key = |k: &RegistryKey| k.key.to_lowercase();
    let lower_value = |v: &RegistryValue| (v.key.to_lowercase(), v.name.to_lowercase());
    let created: HashSet<String> = r.keys_created.items.iter().map(lower_key).collect();
    let deleted: HashSet<String> = r.keys_deleted.items.iter().map(lower_key).collect();
    let set: HashSet<(String, String)> = r.values_set.items.iter().map(lower_value).collect();
    let gone: HashSet<(String, String)> = r.values_deleted.items.iter().map(lower_value).collect();
    for k in d.keys_created.iter().filter(|k| !churn(k)) {
        let key = hkey_path(k, sid);
        if !created.contains(&key.to_lowercase()) {
            r.keys_created.push(RegistryKey {
                key,
                process_id: None,
            });
        }
    }
    for k in d.keys_deleted.iter().filter(|k| !churn(k)) {
        let key = hkey_path(k, sid);
        if !deleted.contains(&key.to_lowercase()) {
            r.keys_deleted.push(RegistryKey {
                key,
                process_id: None,
            });
        }
    }
    for (k, name, v) in d.values_set.iter().filter(|(k, _, _)| !churn(k)) {
        let key = hkey_path(k, sid);
        if !set.contains(&(key.to_lowercase(), name.to_lowercase())) {
            r.values_set.push(value_entry(key, name.clone(), v, None));
        }
    }
    for (k, name, v) in d.values_deleted.iter().filter(|(k, _, _)| !churn(k)) {
        let key = hkey_path(k, sid);
        if !gone.contains(&(key.to_lowercase(), name.to_lowercase())) {
            r.values_deleted
                .push(value_entry(key, name.clone(), v, None));
        }
    }
}

/// `HKEY_CURRENT_USER\x` → `REGISTRY\User\<sid>\x` (the hives' own naming).
fn registry_path(key: &str, sid: &str) -> String {
    let (root, rest) = key.split_once('\\').unwrap_or((key, ""));
    let root = match root {
        "HKEY_LOCAL_MACHINE" => "REGISTRY\\Machine".to_string(),
        "HKEY_CURRENT_USER" => format!("REGISTRY\\User\\{sid}"),
        "HKEY_USERS" => "REGISTRY\\User".to_string(),
        other => other.to_string(),
    };
    if rest.is_empty() {
        root
    } else {
        format!("{root}\\{rest}")
    }
}

fn final_state(r: &mut Registry, after: &Hives, sid: &str) {
    for v in &mut r.values_set {
        v.exists_at_end = after.has_value(&registry_path(&v.key, sid), &v.name);
    }
    for v in &mut r.values_deleted {
        v.exists_at_end = after.has_value(&registry_path(&v.key, sid), &v.name);
    }
}

const SERVICES_KEY: &str = "HKEY_LOCAL_MACHINE\\System\\CurrentControlSet\\Services\\";

fn start_type(v: &RegValue) -> Option<String> {
    let n = match (&v.data, v.ty) {
        (super::reg::ValueData::Dword(d), REG_DWORD) => *d,
        _ => return None,
    };
    let name = match n {
        0 => "boot",
        1 => "system",
        2 => "auto",
        3 => "demand",
        4 => "disabled",
        _ => return Some(n.to_string()),
    };
    Some(name.into())
}

/// Services from the keys created under `...\Services` (with their values) and from processes
/// services.exe started for the sample.
pub(super) fn services(t: Option<&Trace>, ids: &ProcessIds, sid: &str) -> Vec<Service> {
    let mut out: Vec<Service> = Vec::new();
    let Some(t) = t else {
        return out;
    };
    for rec in &t.records {
        let (key, value) = match &rec.op {
            Op::KeyCreated { key } => (key, None),
            Op::ValueSet { key, name, value } => (key, Some((name, value))),
            _ => continue,
        };
        let full = hkey_path(key, sid);
        let Some(rest) = strip_ci(&full, SERVICES_KEY) else {
            continue;
        };
        if rest.is_empty() || rest.contains('\\') {
            continue;
        }
        let index = match out.iter().position(|s| s.name.eq_ignore_ascii_case(rest)) {
            Some(i) => i,
            None if matches!(rec.op, Op::KeyCreated { .. }) && out.len() < ENTRIES_MAX => {
                out.push(Service {
                    name: rest.to_string(),
                    operation: "created".into(),
                    binary_path: None,
                    display_name: None,
                    start_type: None,
                    process_id: ids.get(rec.process),
                });
                out.len() - 1
            }
            None => continue,
        };
        let s = &mut out[index];
        match value {
            Some((n, v)) if n.eq_ignore_ascii_case("ImagePath") => s.binary_path = Some(render(v)),
            Some((n, v)) if n.eq_ignore_ascii_case("DisplayName") => {
                s.display_name = Some(render(v))
            }
            Some((n, v)) if n.eq_ignore_ascii_case("Start") => s.start_type = start_type(v),
            _ => {}
        }
    }
    started_services(&mut out, t, ids);
    out
}

/// A sample process whose parent is services.exe is a service it started; its name is the
/// service whose `ImagePath` services.exe read and that names the process's image.
fn started_services(out: &mut Vec<Service>, t: &Trace, ids: &ProcessIds) {
    for p in t.processes.values() {
        let parent = p.parent.and_then(|k| t.processes.get(&k));
        let by_services = parent
            .and_then(|pp| pp.image.as_deref())
            .is_some_and(|i| i.to_lowercase().ends_with("\\services.exe"));
        if !by_services || t.role(p.key) != Role::Sample || out.len() >= ENTRIES_MAX {
            continue;
        }
        let image = p.image.clone().unwrap_or_default();
        let wanted = image.to_lowercase();
        let known = t
            .service_images
            .values()
            .map(|(name, path)| (name, path))
            .chain(
                out.iter()
                    .filter_map(|s| Some((&s.name, s.binary_path.as_ref()?))),
            )
            .find(|(_, path)| !wanted.is_empty() && path.to_lowercase().contains(&wanted));
        let (name, binary_path) = match known {
            Some((name, path)) => (name.clone(), Some(path.clone())),
            None => (image.clone(), p.command_line.clone()),
        };
        out.push(Service {
            name,
            operation: "started".into(),
            binary_path,
            display_name: None,
            start_type: None,
            process_id: ids.get(Some(p.key)),
        });
    }
}
