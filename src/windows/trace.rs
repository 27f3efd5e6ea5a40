//! Reading wineserver's request trace (`wineserver -f -d2`, Wine 8.0).
//!
//! Line shapes (all real, see `tests/data/wine/`):
//! - a request: `00ec: set_key_value( hkey=0038, type=1, name=L"Run", data={...} )`,
//! - its reply: `00ec: open_key() = 0 { hkey=0038 }` or `... = OBJECT_NAME_NOT_FOUND { ... }`,
//! - with `-d2`, a registry dump line right after the request, without thread prefix:
//!   `Set key REGISTRY\\User\\S-1-5-21-0-0-0-1000\\Software\\...\\Run value "x"="data"` (long
//!   `hex:` data continues on lines starting with two spaces),
//! - other lines (`*fd*`, `*wakeup*`, `wineserver: starting (pid=N)`).
//!
//! wineserver serves one request at a time, so an unprefixed dump line belongs to the request
//! printed just before it. Processes: `new_process` (by the parent, with image path and command
//! line) and `init_first_thread` (by the new process, with its Unix pid) give Windows pid → Unix
//! pid; `new_thread` replies map further threads. Key handles are per process: `open_key` and
//! `create_key` replies are recorded so that reads through a handle (`get_key_value`) know their
//! key; the changes themselves are taken from the dump lines, which carry full paths.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead};

use super::escape::unescape;
use super::fields::{field, group, hex, string};
use super::lines::{CappedLines, LINE_MAX};
use super::policy::{
    WINE_OWN_ACCESS, WINE_OWN_MUTEXES, WINE_OWN_VALUES, WINE_OWN_VALUES_SET, WINE_PROGRAMS,
};
use super::reg::{parse_value_line, RegValue};

/// Records kept from one trace; beyond this they are counted in [`Trace::dropped`].
pub const RECORDS_MAX: usize = 20_000;
/// Services remembered from services.exe's reads of its database.
pub const SERVICES_MAX: usize = 5_000;
/// Key handles remembered at once across all processes (a sample may leak handles).
const HANDLES_MAX: usize = 100_000;

/// Whose process it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A process started from Unix, before it loaded a program: Wine's launcher.
    Launcher,
    /// A program of Wine's own (services.exe, explorer.exe, ...).
    Wine,
    /// The sample or a process it started.
    Sample,
}

/// Identifies a process within one trace: its Windows pid in the low 32 bits and, in the high
/// bits, how many processes had that pid before (wineserver reuses the ids of ended processes
/// once 256 of them are free, so a busy sample can see a pid twice).
pub type ProcessKey = u64;

/// One Windows process seen in the trace.
#[derive(Debug, Clone, Default)]
pub struct WineProcess {
    pub key: ProcessKey,
    /// Windows process id (wineserver's).
    pub wpid: u32,
    pub unix_pid: Option<i32>,
    /// The process that created it.
    pub parent: Option<ProcessKey>,
    /// `C:\windows\system32\cmd.exe`.
    pub image: Option<String>,
    pub command_line: Option<String>,
    /// Started by a Unix command (`wine program.exe`), not by another Windows process: Wine's
    /// launcher until it has loaded a program.
    pub root: bool,
    /// The loader reported the program loaded (`init_process_done`).
    pub loaded: bool,
    /// Its parent was Wine's (launcher or Wine program) when it created this process: a process
    /// started from Unix starts wineboot and services before it becomes a 32-bit sample.
    pub spawned_by_wine: bool,
    /// The last executable the process opened before it was loaded (its image, for a process
    /// started from Unix, which has no `new_process` line).
    last_exe: Option<String>,
}

/// Something a process did that the report shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    KeyCreated {
        key: String,
    },
    KeyDeleted {
        key: String,
    },
    ValueSet {
        key: String,
        name: String,
        value: RegValue,
    },
    ValueDeleted {
        key: String,
        name: String,
        value: Option<RegValue>,
    },
    /// A read of Wine's own configuration key (`Software\Wine`): detail says what was read.
    WineKeyRead {
        key: String,
        detail: String,
    },
    MutexCreated {
        name: String,
    },
    /// A file opened for creation or overwrite: Windows path and Unix path.
    FileWritten {
        windows: String,
        unix: String,
    },
    /// A file opened with delete-on-close.
    FileDeleted {
        windows: String,
        unix: String,
    },
}

/// An [`Op`] and the process that did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub process: Option<ProcessKey>,
    pub op: Op,
}

/// What a trace says.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub processes: BTreeMap<ProcessKey, WineProcess>,
    /// Operations of the sample's processes (and service changes made for them by services.exe).
    pub records: Vec<Record>,
    /// Records left out over [`RECORDS_MAX`].
    pub dropped: u64,
    /// wineserver's own Unix pid, from its start line.
    pub wineserver_pid: Option<i32>,
    /// Windows thread id → its process.
    pub threads: HashMap<u32, ProcessKey>,
    /// Services as services.exe read them from the registry (its database, loaded at start):
    /// lower-case name → (name, `ImagePath`), at most [`SERVICES_MAX`].
    pub service_images: BTreeMap<String, (String, String)>,
    pub lines: u64,
    /// Lines (or continued values) longer than the reader keeps: a value on such a line is
    /// lost or cut.
    pub cut_lines: u64,
    /// The trace ends in the middle of a line (wineserver was killed while writing).
    pub ended_mid_line: bool,
}

impl Trace {
    /// The role of a process, from what the trace said up to now.
    pub fn role(&self, key: ProcessKey) -> Role {
        self.role_at(key, 0)
    }

    fn role_at(&self, key: ProcessKey, depth: usize) -> Role {
        let Some(p) = self.processes.get(&key) else {
            return Role::Sample;
        };
        if p.root && !p.loaded {
            return Role::Launcher;
        }
        let Some(image) = p.image.as_deref().filter(|i| is_wine_program(i)) else {
            return Role::Sample;
        };
        if base(image) == "conhost.exe" || is_desktop(p) {
            return Role::Wine;
        }
        // A Wine program is Wine's own when Wine started it (or nobody we know did).
        if p.spawned_by_wine {
            return Role::Wine;
        }
        match p.parent {
            Some(parent) if depth < 64 && self.processes.contains_key(&parent) => {
                match self.role_at(parent, depth + 1) {
                    Role::Sample => Role::Sample,
                    _ => Role::Wine,
                }
            }
            _ => Role::Wine,
        }
    }
}

/// `explorer.exe /desktop`: the desktop process user32 starts on demand, from whichever process
/// first needs a window (so often from a GUI sample).
fn is_desktop(p: &WineProcess) -> bool {
    let image = p.image.as_deref().map(base);
    let desktop = p
        .command_line
        .as_deref()
        .is_some_and(|c| c.to_ascii_lowercase().ends_with(" /desktop"));
    image.as_deref() == Some("explorer.exe") && desktop
}

fn base(path: &str) -> String {
    path.rsplit(['\\', '/'])
        .next()
        .unwrap_or(path)
        .to_lowercase()
}

/// True for Wine's own programs under the system directories.
pub fn is_wine_program(image: &str) -> bool {
    let lower = image.to_lowercase();
    let in_system = lower.starts_with("c:\\windows\\system32\\")
        || lower.starts_with("c:\\windows\\syswow64\\");
    in_system && WINE_PROGRAMS.contains(&base(&lower).as_str())
}

/// The request a thread is in, as much as later lines need.
#[derive(Debug, Clone)]
enum Pending {
    Key {
        path: Option<String>,
        access: u32,
    },
    NewProcess {
        image: Option<String>,
        cmdline: Option<String>,
    },
    NewThread {
        process: u32,
    },
    InitFirstThread {
        unix_pid: Option<i32>,
    },
    ValueOp {
        name: String,
    },
    Other,
}

/// Reads a whole trace.
pub fn read(reader: impl BufRead) -> io::Result<Trace> {
    let mut state = State::default();
    let mut lines = CappedLines::new(reader);
    while let Some(line) = lines.next_line()? {
        state.trace.lines += 1;
        state.line(&line);
    }
    state.flush_dump();
    state.trace.threads = std::mem::take(&mut state.threads);
    state.trace.cut_lines += lines.cut;
    state.trace.ended_mid_line = lines.ended_mid_line;
    Ok(state.trace)
}

#[derive(Default)]
struct State {
    trace: Trace,
    /// Thread id → its process.
    threads: HashMap<u32, ProcessKey>,
    /// Windows pid → the process that has it now.
    current: HashMap<u32, ProcessKey>,
    /// Request in progress per thread.
    pending: HashMap<u32, (String, Pending)>,
    /// (process, handle) → key path (`\Registry\...`).
    keys: HashMap<(ProcessKey, u32), String>,
    /// (process, handle) → the process the handle refers to.
    process_handles: HashMap<(ProcessKey, u32), ProcessKey>,
    /// Thread of the last prefixed line: the owner of the next dump line.
    last_tid: Option<u32>,
    /// A dump line whose `hex:` data continues on the next lines.
    dump: Option<String>,
}

impl State {
    fn line(&mut self, line: &str) {
        if let Some(dump) = self.dump.as_mut() {
            if let Some(more) = line.strip_prefix("  ") {
                // A huge value is kept up to the line bound; the rest of its bytes are lost.
                if dump.len() < LINE_MAX {
                    dump.push_str(more.trim_end_matches('\\'));
                }
                if !more.ends_with('\\') {
                    self.flush_dump();
                }
                return;
            }
            self.flush_dump();
        }
        match split_prefix(line) {
            Some((tid, rest)) => {
                self.last_tid = Some(tid);
                self.prefixed(tid, rest);
            }
            None => self.unprefixed(line),
        }
    }

    fn flush_dump(&mut self) {
        if let Some(dump) = self.dump.take() {
            if dump.len() >= LINE_MAX {
                self.trace.cut_lines += 1;
            }
            self.dump_line(&dump);
        }
    }

    fn unprefixed(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("wineserver: starting (pid=") {
            self.trace.wineserver_pid = rest.trim_end_matches(')').parse().ok();
            return;
        }
        if line.ends_with('\\') && line.contains("=hex") {
            self.dump = Some(line[..line.len() - 1].to_string());
            return;
        }
        self.dump_line(line);
    }

    fn prefixed(&mut self, tid: u32, rest: &str) {
        let Some((name, after)) = rest.split_once('(') else {
            return;
        };
        if let Some(reply) = after.strip_prefix(") = ") {
            let (status, fields) = match reply.split_once(" { ") {
                Some((s, f)) => (s, f.strip_suffix(" }").unwrap_or(f)),
                None => (reply, ""),
            };
            self.reply(tid, name, status, fields);
        } else {
            let args = after.trim_end().strip_suffix(')').unwrap_or(after).trim();
            self.request(tid, name, args);
        }
    }

    fn process_of(&self, tid: u32) -> Option<ProcessKey> {
        self.threads.get(&tid).copied()
    }

    /// A key for a process that gets Windows pid `wpid` now.
    fn new_key(&mut self, wpid: u32) -> ProcessKey {
        let generation = self.current.get(&wpid).map_or(0, |k| (k >> 32) + 1);
        let key = (generation << 32) | u64::from(wpid);
        self.current.insert(wpid, key);
        key
    }

    fn request(&mut self, tid: u32, name: &str, args: &str) {
        let wpid = self.process_of(tid);
        let pending = match name {
            "open_key" => Pending::Key {
                path: self.key_path(wpid, field(args, "parent"), field(args, "name")),
                access: field(args, "access").and_then(hex).unwrap_or(0),
            },
            "create_key" => {
                let objattr = field(args, "objattr").and_then(group).unwrap_or("");
                let path = self.key_path(wpid, field(objattr, "rootdir"), field(objattr, "name"));
                let access = field(args, "access").and_then(hex).unwrap_or(0);
                Pending::Key { path, access }
            }
            "get_key_value" | "enum_key" | "enum_key_value" | "query_key" => {
                self.key_read(wpid, name, args);
                Pending::Other
            }
            "set_key_value" | "delete_key_value" => Pending::ValueOp {
                name: field(args, "name").and_then(string).unwrap_or_default(),
            },
            "close_handle" => {
                if let (Some(w), Some(h)) = (wpid, field(args, "handle").and_then(hex)) {
                    self.keys.remove(&(w, h));
                }
                Pending::Other
            }
            "new_process" => {
                let info = field(args, "info").and_then(group).unwrap_or("");
                Pending::NewProcess {
                    image: field(info, "imagepath").and_then(string),
                    cmdline: field(info, "cmdline").and_then(string),
                }
            }
            "new_thread" => Pending::NewThread {
                process: field(args, "process").and_then(hex).unwrap_or(0),
            },
            "init_first_thread" => Pending::InitFirstThread {
                unix_pid: field(args, "unix_pid").and_then(|v| v.parse().ok()),
            },
            "init_process_done" => {
                self.loaded(wpid);
                Pending::Other
            }
            "create_mutex" => {
                self.mutex(wpid, args);
                Pending::Other
            }
            "create_file" => {
                self.file(wpid, args);
                Pending::Other
            }
            _ => Pending::Other,
        };
        self.pending.insert(tid, (name.to_string(), pending));
    }

    fn reply(&mut self, tid: u32, name: &str, status: &str, fields: &str) {
        let Some((req, pending)) = self.pending.remove(&tid) else {
            return;
        };
        if req != name {
            return;
        }
        let ok = status == "0" || status == "OBJECT_NAME_EXISTS";
        let wpid = self.process_of(tid);
        match pending {
            Pending::Key {
                path: Some(path),
                access,
            } if ok => {
                self.key_opened(wpid, &path, access);
                let handle = field(fields, "hkey").and_then(hex);
                if let (Some(w), Some(h)) = (wpid, handle) {
                    if self.keys.len() < HANDLES_MAX {
                        self.keys.insert((w, h), path);
                    }
                }
            }
            Pending::NewProcess { image, cmdline } if ok => {
                let child = field(fields, "pid").and_then(hex);
                let handle = field(fields, "handle").and_then(hex);
                if let Some(child) = child {
                    let key = self.new_key(child);
                    let by_wine = wpid.is_some_and(|w| self.trace.role(w) != Role::Sample);
                    let p = WineProcess {
                        key,
                        wpid: child,
                        parent: wpid,
                        image,
                        command_line: cmdline,
                        spawned_by_wine: by_wine,
                        ..WineProcess::default()
                    };
                    self.trace.processes.insert(key, p);
                    if let (Some(w), Some(h)) = (wpid, handle) {
                        self.process_handles.insert((w, h), key);
                    }
                }
            }
            Pending::NewThread { process } if ok => {
                let target = if process == 0xffff_ffff {
                    wpid
                } else {
                    wpid.and_then(|w| self.process_handles.get(&(w, process)).copied())
                };
                if let (Some(t), Some(p)) = (field(fields, "tid").and_then(hex), target) {
                    self.threads.insert(t, p);
                }
            }
            Pending::InitFirstThread { unix_pid } if ok => {
                let pid = field(fields, "pid").and_then(hex);
                let new_tid = field(fields, "tid").and_then(hex).unwrap_or(tid);
                if let Some(pid) = pid {
                    // A process nobody created with new_process was started from Unix.
                    let (key, root) = match self.current.get(&pid) {
                        Some(k) => (*k, false),
                        None => (self.new_key(pid), true),
                    };
                    self.threads.insert(new_tid, key);
                    let p = self.trace.processes.entry(key).or_default();
                    p.key = key;
                    p.wpid = pid;
                    p.unix_pid = unix_pid;
                    p.root = root;
                }
            }
            _ => {}
        }
    }

    /// The full path of `name` opened relative to handle `parent` (0: `name` is absolute).
    fn key_path(
        &self,
        wpid: Option<ProcessKey>,
        parent: Option<&str>,
        name: Option<&str>,
    ) -> Option<String> {
        let name = name.and_then(string)?;
        let parent = parent.and_then(hex).unwrap_or(0);
        if parent == 0 {
            return name.starts_with('\\').then_some(name);
        }
        let base = self.keys.get(&(wpid?, parent))?;
        if name.is_empty() {
            return Some(base.clone());
        }
        Some(format!("{base}\\{name}"))
    }

    fn loaded(&mut self, wpid: Option<ProcessKey>) {
        let Some(p) = wpid.and_then(|w| self.trace.processes.get_mut(&w)) else {
            return;
        };
        p.loaded = true;
        if p.image.is_none() {
            p.image = p.last_exe.clone();
        }
    }

    fn record(&mut self, wpid: Option<ProcessKey>, op: Op) {
        if is_wine_own(&op) {
            return;
        }
        if self.trace.records.len() >= RECORDS_MAX {
            self.trace.dropped += 1;
            return;
        }
        self.trace.records.push(Record { process: wpid, op });
    }

    fn is_sample(&self, wpid: Option<ProcessKey>) -> bool {
        wpid.is_some_and(|w| self.trace.role(w) == Role::Sample)
    }

    fn is_services(&self, wpid: Option<ProcessKey>) -> bool {
        let image = wpid.and_then(|w| self.trace.processes.get(&w)?.image.clone());
        image.is_some_and(|i| is_wine_program(&i) && base(&i) == "services.exe")
    }

    /// Wine's loader opens `Software\Wine` in every process with full access (0x000f003f); an
    /// open with another access mask by the loaded sample is the sample's own.
    fn key_opened(&mut self, wpid: Option<ProcessKey>, path: &str, access: u32) {
        if WINE_OWN_ACCESS.contains(&access) || !is_wine_config_key(path) {
            return;
        }
        if self.is_sample(wpid) && self.loaded_process(wpid) {
            let detail = format!("opened the key (access 0x{access:08x})");
            let key = path.to_string();
            self.record(wpid, Op::WineKeyRead { key, detail });
        }
    }

    fn key_read(&mut self, wpid: Option<ProcessKey>, request: &str, args: &str) {
        if !self.is_sample(wpid) || !self.loaded_process(wpid) {
            return;
        }
        let handle = field(args, "hkey").and_then(hex);
        let Some(key) = wpid.zip(handle).and_then(|k| self.keys.get(&k)) else {
            return;
        };
        if !is_wine_config_key(key) {
            return;
        }
        let key = key.clone();
        let detail = match request {
            "get_key_value" => {
                let name = field(args, "name").and_then(string).unwrap_or_default();
                if WINE_OWN_VALUES
                    .iter()
                    .any(|v| v.eq_ignore_ascii_case(&name))
                {
                    return;
                }
                format!("read value \"{name}\"")
            }
            "enum_key" => "listed subkeys".into(),
            "enum_key_value" => "listed values".into(),
            _ => "queried key".into(),
        };
        self.record(wpid, Op::WineKeyRead { key, detail });
    }

    fn loaded_process(&self, wpid: Option<ProcessKey>) -> bool {
        wpid.and_then(|w| self.trace.processes.get(&w))
            .is_some_and(|p| p.loaded)
    }

    fn mutex(&mut self, wpid: Option<ProcessKey>, args: &str) {
        let objattr = field(args, "objattr").and_then(group).unwrap_or("");
        let name = field(objattr, "name").and_then(string).unwrap_or_default();
        if !name.is_empty() && self.is_sample(wpid) {
            self.record(wpid, Op::MutexCreated { name });
        }
    }

    fn file(&mut self, wpid: Option<ProcessKey>, args: &str) {
        let objattr = field(args, "objattr").and_then(group).unwrap_or("");
        let nt = field(objattr, "name").and_then(string).unwrap_or_default();
        let unix = field(args, "filename").and_then(string).unwrap_or_default();
        let lower = nt.to_lowercase();
        if lower.ends_with(".exe") {
            if let Some(p) = wpid.and_then(|w| self.trace.processes.get_mut(&w)) {
                if !p.loaded {
                    p.last_exe = Some(super::paths::dos_path(&nt));
                }
            }
        }
        if !self.is_sample(wpid) || !self.loaded_process(wpid) {
            return;
        }
        let create = field(args, "create").and_then(|v| v.parse::<u32>().ok());
        let options = field(args, "options").and_then(hex).unwrap_or(0);
        let windows = super::paths::dos_path(&nt);
        if options & FILE_DELETE_ON_CLOSE != 0 {
            self.record(wpid, Op::FileDeleted { windows, unix });
        } else if create.is_some_and(|c| c != FILE_OPEN) && options & FILE_DIRECTORY_FILE == 0 {
            self.record(wpid, Op::FileWritten { windows, unix });
        }
    }

    fn dump_line(&mut self, line: &str) {
        let tid = self.last_tid;
        let wpid = tid.and_then(|t| self.process_of(t));
        let request = tid.and_then(|t| self.pending.get(&t)).cloned();
        let Some((req, pending)) = request else {
            return;
        };
        let wanted = self.is_sample(wpid);
        let services = self.is_services(wpid);
        if services && req == "get_key_value" {
            self.service_read(line, &pending);
            return;
        }
        let op = match req.as_str() {
            "create_key" => line
                .strip_prefix("Create key ")
                .map(|k| Op::KeyCreated { key: unescape(k) }),
            "delete_key" => line
                .strip_prefix("Delete key ")
                .map(|k| Op::KeyDeleted { key: unescape(k) }),
            "set_key_value" => line
                .strip_prefix("Set key ")
                // The sample wrote the value; Wine skipped storing it as it was unchanged.
                .or_else(|| line.strip_prefix("Skip setting key "))
                .and_then(|rest| split_value(rest, &pending))
                .map(|(key, name, value)| Op::ValueSet { key, name, value }),
            "delete_key_value" => line
                .strip_prefix("Delete key ")
                .and_then(|rest| split_value(rest, &pending))
                .map(|(key, name, value)| Op::ValueDeleted {
                    key,
                    name,
                    value: Some(value),
                }),
            _ => None,
        };
        let Some(op) = op else {
            return;
        };
        if wanted || (services && is_service_change(&op)) {
            self.record(wpid, op);
        }
    }
}

fn is_wine_own(op: &Op) -> bool {
    match op {
        Op::ValueSet { key, name, .. } => {
            let (key, name) = (key.to_lowercase(), name.to_lowercase());
            WINE_OWN_VALUES_SET
                .iter()
                .any(|(k, n)| *k == key && *n == name)
        }
        Op::MutexCreated { name } => WINE_OWN_MUTEXES.contains(&name.as_str()),
        _ => false,
    }
}
impl State {
    /// `Get key ...\\Services\\<name> value "ImagePath"=...` by services.exe.
    fn service_read(&mut self, line: &str, pending: &Pending) {
        let Some((key, name, value)) = line
            .strip_prefix("Get key ")
            .and_then(|rest| split_value(rest, pending))
        else {
            return;
        };
        let lower = key.to_lowercase();
        let Some(service) = lower.strip_prefix(SERVICES_PREFIX) else {
            return;
        };
        let images = &mut self.trace.service_images;
        let known = images.contains_key(service);
        if !name.eq_ignore_ascii_case("ImagePath") || service.contains('\\') {
            return;
        }
        if known || images.len() < SERVICES_MAX {
            let display = key[key.len() - service.len()..].to_string();
            images.insert(service.to_string(), (display, super::reg::render(&value)));
        }
    }
}

const SERVICES_PREFIX: &str = "registry\\machine\\system\\currentcontrolset\\services\\";

const FILE_OPEN: u32 = 1;
const FILE_DIRECTORY_FILE: u32 = 0x1;
const FILE_DELETE_ON_CLOSE: u32 = 0x1000;

/// `HKCU\Software\Wine`, `HKLM\Software\Wine` (and its WOW64 view), the key itself.
fn is_wine_config_key(path: &str) -> bool {
    let lower = path.to_lowercase();
    let Some(rest) = lower.strip_prefix("\\registry\\") else {
        return false;
    };
    let rest = match rest.strip_prefix("machine\\") {
        Some(r) => r,
        None => match rest.strip_prefix("user\\") {
            Some(r) => r.split_once('\\').map_or("", |(_, r)| r),
            None => return false,
        },
    };
    rest == "software\\wine" || rest == "software\\wow6432node\\wine"
}

/// Changes services.exe makes under `...\Services\<name>` (for a CreateService call).
fn is_service_change(op: &Op) -> bool {
    let key = match op {
        Op::KeyCreated { key } | Op::ValueSet { key, .. } | Op::KeyDeleted { key } => key,
        _ => return false,
    };
    key.to_lowercase().starts_with(SERVICES_PREFIX)
}

/// `KEY value "name"=data` → (key, name, value), using the request's value name to find where
/// the key ends (a key name may itself contain ` value `).
fn split_value(rest: &str, pending: &Pending) -> Option<(String, String, RegValue)> {
    let want = match pending {
        Pending::ValueOp { name } => Some(name.as_str()),
        _ => None,
    };
    let mut from = 0;
    while let Some(i) = rest[from..].find(" value ") {
        let at = from + i;
        if let Some((name, value)) = parse_value_line(&rest[at + 7..]) {
            if want.is_none_or(|w| w == name) {
                return Some((unescape(&rest[..at]), name, value));
            }
        }
        from = at + 7;
    }
    None
}

/// `00ec: rest` → (0xec, rest).
fn split_prefix(line: &str) -> Option<(u32, &str)> {
    let (tid, rest) = line.split_once(": ")?;
    if tid.is_empty() || tid.len() > 8 || !tid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((u32::from_str_radix(tid, 16).ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::windows::reg::{ValueData, REG_DWORD, REG_SZ};

    /// A trace captured from Wine 8.0 (`wineserver -f -d2`) running one of our benign test
    /// programs; cut to the process lines and the sample's threads (lines kept verbatim).
    fn fixture(name: &str) -> Trace {
        let path = format!("{}/tests/data/wine/{name}.log", env!("CARGO_MANIFEST_DIR"));
        let file = std::fs::File::open(&path).expect("fixture exists");
        read(io::BufReader::new(file)).expect("readable")
    }

    fn samples(t: &Trace) -> Vec<&WineProcess> {
        t.processes
            .values()
            .filter(|p| t.role(p.key) == Role::Sample)
            .collect()
    }

    fn ops(t: &Trace) -> Vec<&Op> {
        t.records.iter().map(|r| &r.op).collect()
    }

    const RUN: &str =
        "REGISTRY\\User\\S-1-5-21-0-0-0-1000\\Software\\Microsoft\\Windows\\CurrentVersion\\Run";

    fn text(ty: u32, s: &str) -> RegValue {
        RegValue {
            ty,
            data: ValueData::Text(s.into()),
        }
    }

    fn run_key_ops() -> Vec<Op> {
        vec![
            Op::ValueSet {
                key: RUN.into(),
                name: "AegisUpdater".into(),
                value: text(
                    REG_SZ,
                    "C:\\ProgramData\\AegisTest\\updater.exe /quiet \"x\"",
                ),
            },
            Op::ValueSet {
                key: RUN.into(),
                name: "AegisCount".into(),
                value: RegValue {
                    ty: REG_DWORD,
                    data: ValueData::Dword(42),
                },
            },
            Op::ValueSet {
                key: RUN.into(),
                name: "AegisTemp".into(),
                value: text(REG_SZ, "gone"),
            },
            Op::ValueDeleted {
                key: RUN.into(),
                name: "AegisTemp".into(),
                value: Some(text(REG_SZ, "gone")),
            },
        ]
    }

    #[test]
    fn run_key_set_by_a_64_bit_program() {
        let t = fixture("runkey64");
        let s = samples(&t);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].image.as_deref(), Some("C:\\samples\\runkey.exe"));
        assert_eq!(s[0].unix_pid, Some(11849));
        // The first process is Wine's start.exe (the 32-bit `wine` relaunching a 64-bit program).
        let first = t.processes.values().find(|p| p.root).expect("first");
        assert_eq!(
            first.image.as_deref(),
            Some("C:\\windows\\syswow64\\start.exe")
        );
        assert_eq!(t.role(first.key), Role::Wine);
        assert_eq!(s[0].parent, Some(first.key));
        let got: Vec<Op> = t.records.iter().map(|r| r.op.clone()).collect();
        assert_eq!(got, run_key_ops());
        assert!(t.records.iter().all(|r| r.process == Some(s[0].key)));
    }

    #[test]
    fn run_key_set_by_a_32_bit_program_that_is_the_first_process() {
        let t = fixture("runkey32");
        let s = samples(&t);
        assert_eq!(
            s.len(),
            1,
            "wineboot, services etc. started before it loaded are Wine's"
        );
        assert!(s[0].root);
        assert_eq!(s[0].image.as_deref(), Some("C:\\samples\\runkey32.exe"));
        let got: Vec<Op> = t.records.iter().map(|r| r.op.clone()).collect();
        assert_eq!(got, run_key_ops());
    }

    /// (image, role) of every process started from Unix or by the sample.
    fn roots_and_samples(t: &Trace) -> Vec<(&str, Role)> {
        t.processes
            .values()
            .filter(|p| p.root || t.role(p.key) == Role::Sample)
            .map(|p| (p.image.as_deref().unwrap_or(""), t.role(p.key)))
            .collect()
    }

    #[test]
    fn the_orchestrators_launch_a_bootstrap_then_the_sample_each_from_unix() {
        // wineserver -p1, `wine64 hostname.exe` to boot the session, then `wine64 runkey.exe`.
        let t = fixture("boot64");
        assert_eq!(
            roots_and_samples(&t),
            [
                ("C:\\windows\\system32\\hostname.exe", Role::Wine),
                ("C:\\samples\\runkey.exe", Role::Sample),
            ]
        );
        let got: Vec<Op> = t.records.iter().map(|r| r.op.clone()).collect();
        assert_eq!(got, run_key_ops());
        // The 64-bit loader hands a 32-bit program to start.exe, which is Wine's.
        let t = fixture("boot32");
        assert_eq!(
            roots_and_samples(&t),
            [
                ("C:\\windows\\system32\\hostname.exe", Role::Wine),
                ("C:\\windows\\system32\\start.exe", Role::Wine),
                ("C:\\samples\\runkey32.exe", Role::Sample),
            ]
        );
        let got: Vec<Op> = t.records.iter().map(|r| r.op.clone()).collect();
        assert_eq!(got, run_key_ops());
    }

    #[test]
    fn reg_add_and_reg_delete_from_cmd() {
        let t = fixture("regcmd");
        let cmdlines: Vec<&str> = samples(&t)
            .iter()
            .filter_map(|p| p.command_line.as_deref())
            .collect();
        assert_eq!(
            cmdlines,
            [
                "\"C:\\windows\\system32\\cmd.exe\" /c C:\\samples\\regcmd.cmd",
                "reg add \"HKCU\\Software\\AegisCmd\" /v Path /t REG_SZ /d \"C:\\ProgramData\\AegisTest\\tool.exe\" /f",
                "reg add \"HKCU\\Software\\AegisCmd\\Sub\" /v Flags /t REG_DWORD /d 7 /f",
                "reg delete \"HKCU\\Software\\AegisCmd\" /v Path /f",
                "reg delete \"HKCU\\Software\\AegisCmd\\Sub\" /f",
                "reg add \"HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\" /v AegisCmd /t REG_SZ /d \"C:\\ProgramData\\AegisTest\\run.bat\" /f",
            ]
        );
        // The fixture keeps the threads of the first `reg add` and of `reg delete ...\Sub`.
        let user = "REGISTRY\\User\\S-1-5-21-0-0-0-1000\\Software\\AegisCmd";
        assert_eq!(
            ops(&t),
            [
                &Op::KeyCreated { key: user.into() },
                &Op::ValueSet {
                    key: user.into(),
                    name: "Path".into(),
                    value: text(REG_SZ, "C:\\ProgramData\\AegisTest\\tool.exe"),
                },
                &Op::ValueDeleted {
                    key: format!("{user}\\Sub"),
                    name: "Flags".into(),
                    value: Some(RegValue {
                        ty: REG_DWORD,
                        data: ValueData::Dword(7),
                    }),
                },
                &Op::KeyDeleted {
                    key: format!("{user}\\Sub"),
                },
            ]
        );
    }

    #[test]
    fn named_mutexes_with_their_names_as_given() {
        let t = fixture("mutex");
        assert_eq!(
            ops(&t),
            [
                &Op::MutexCreated {
                    name: "Global\\AegisTestMutex_42".into()
                },
                &Op::MutexCreated {
                    name: "Local\\Aegis\u{e9}Mutex".into()
                },
            ]
        );
    }

    #[test]
    fn sc_create_is_written_by_services_exe_and_kept() {
        let t = fixture("sc");
        let s = samples(&t);
        assert_eq!(s.len(), 1);
        assert!(s[0]
            .command_line
            .as_deref()
            .is_some_and(|c| c.contains("create AegisSvc binPath= ")));
        let key = "REGISTRY\\Machine\\System\\CurrentControlSet\\Services\\AegisSvc";
        let services = t.records.iter().find_map(|r| r.process).expect("a writer");
        let image = t.processes[&services].image.as_deref();
        assert_eq!(image, Some("C:\\windows\\system32\\services.exe"));
        assert_eq!(t.records[0].op, Op::KeyCreated { key: key.into() });
        assert!(t.records.iter().any(|r| r.op
            == Op::ValueSet {
                key: key.into(),
                name: "ImagePath".into(),
                value: text(REG_SZ, "C:\\ProgramData\\AegisTest\\svc.exe --service"),
            }));
    }

    #[test]
    fn file_created_under_programdata_with_windows_and_unix_paths() {
        let t = fixture("dropfile");
        let dir = "/tmp/wintrace-MR0T/home/.wine/dosdevices/c:/ProgramData/AegisTest";
        assert_eq!(
            ops(&t),
            [
                &Op::FileWritten {
                    windows: "C:\\ProgramData\\AegisTest\\payload.bin".into(),
                    unix: format!("{dir}/payload.bin"),
                },
                &Op::FileWritten {
                    windows: "C:\\ProgramData\\AegisTest\\temp.txt".into(),
                    unix: format!("{dir}/temp.txt"),
                },
                &Op::FileDeleted {
                    windows: "C:\\ProgramData\\AegisTest\\temp.txt".into(),
                    unix: format!("{dir}/temp.txt"),
                },
            ]
        );
    }

    #[test]
    fn cmd_child_with_its_command_line() {
        let t = fixture("child");
        let s = samples(&t);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[1].image.as_deref(),
            Some("C:\\windows\\system32\\cmd.exe")
        );
        assert_eq!(
            s[1].command_line.as_deref(),
            Some("cmd.exe /c echo aegis-child > C:\\ProgramData\\child.txt")
        );
        assert_eq!(s[1].parent, Some(s[0].key));
        assert_eq!(s[1].unix_pid, Some(5913));
        // cmd's own user32/gdi32 work (keyboard layout, font mutex, Software\Wine) is Wine's.
        assert_eq!(
            ops(&t),
            [&Op::FileWritten {
                windows: "C:\\ProgramData\\child.txt".into(),
                unix: "/tmp/wintrace-MR0T/home/.wine/dosdevices/c:/ProgramData/child.txt".into(),
            }]
        );
    }

    #[test]
    fn a_gui_program_and_the_desktop_it_starts() {
        let t = fixture("gui");
        let roles: Vec<(&str, Role)> = t
            .processes
            .values()
            .filter(|p| {
                p.parent.is_some_and(|k| {
                    t.processes[&k].image.as_deref() == Some("C:\\samples\\gui.exe")
                }) || p.image.as_deref() == Some("C:\\samples\\gui.exe")
            })
            .map(|p| (p.command_line.as_deref().unwrap_or(""), t.role(p.key)))
            .collect();
        // user32 started explorer /desktop from the sample; it is still Wine's, and so are its
        // display-driver keys and the display mutex win32u creates in the sample's process.
        assert_eq!(
            roles,
            [
                ("\"C:\\samples\\gui.exe\" ", Role::Sample),
                (
                    "\"C:\\windows\\system32\\explorer.exe\" /desktop",
                    Role::Wine
                ),
            ]
        );
        assert_eq!(
            ops(&t),
            [&Op::MutexCreated {
                name: "AegisGuiMutex".into()
            }]
        );
    }

    #[test]
    fn software_wine_opened_by_the_sample_is_seen_and_wines_own_opens_are_not() {
        let t = fixture("winecheck");
        assert_eq!(
            ops(&t),
            [&Op::WineKeyRead {
                key: "\\Registry\\User\\S-1-5-21-0-0-0-1000\\Software\\Wine".into(),
                detail: "opened the key (access 0x00020019)".into(),
            }]
        );
        // A 32-bit program (the first process itself) doing the same is seen the same way.
        let t = fixture("winecheck32");
        assert_eq!(
            ops(&t),
            [&Op::WineKeyRead {
                key: "\\Registry\\User\\S-1-5-21-0-0-0-1000\\Software\\Wine".into(),
                detail: "opened the key (access 0x00020019)".into(),
            }]
        );
        // The same loader opens happen in every other fixture, where nothing is reported.
        for name in [
            "runkey64", "runkey32", "mutex", "dropfile", "escapes", "child",
        ] {
            let t = fixture(name);
            let reads = t
                .records
                .iter()
                .filter(|r| matches!(r.op, Op::WineKeyRead { .. }))
                .count();
            assert_eq!(reads, 0, "{name}");
        }
    }

    #[test]
    fn escaped_key_and_value_names_and_every_data_form() {
        let t = fixture("escapes");
        let key = "REGISTRY\\User\\S-1-5-21-0-0-0-1000\\Software\\AegisEsc\\caf\u{e9} \"q\" [x]";
        let set: Vec<(&str, &str, &RegValue)> = t
            .records
            .iter()
            .filter_map(|r| match &r.op {
                Op::ValueSet {
                    key: k,
                    name,
                    value,
                } if k == key => Some((k.as_str(), name.as_str(), value)),
                _ => None,
            })
            .collect();
        let names: Vec<&str> = set.iter().map(|s| s.1).collect();
        assert_eq!(
            names,
            [
                "Str\\Name",
                "Expand",
                "Multi",
                "Binary",
                "Qword",
                "",
                "Empty"
            ]
        );
        assert_eq!(
            set[0].2,
            &text(REG_SZ, "C:\\Path\\with \"quotes\" and caf\u{e9} \u{4e2d}")
        );
        assert_eq!(set[2].2, &text(7, "one\0two\0three\0"));
        // The 64-byte binary continues over three lines.
        let binary: Vec<u8> = (0..64u32).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(set[3].2.data, ValueData::Bytes(binary));
        assert_eq!(set[5].2.data, ValueData::Dword(0xdead_beef));
        let doomed = "REGISTRY\\Machine\\Software\\AegisEsc\\Doomed";
        assert!(t
            .records
            .iter()
            .any(|r| r.op == Op::KeyDeleted { key: doomed.into() }));
        assert!(t.records.iter().any(|r| r.op
            == Op::KeyCreated {
                key: key.to_string()
            }));
    }

    #[test]
    fn a_trace_cut_mid_line_is_flagged_and_read_up_to_there() {
        let text = "0024: init_first_thread( unix_pid=7, unix_tid=7, debug_level=0 )\n\
                    0024: init_first_thread() = 0 { pid=0020, tid=0024 }\n\
                    0024: create_mutex( access=001f0001, owned=1, objattr={rootdir=0038,attributes=00000080,sd={},name=L\"M";
        let t = read(io::BufReader::new(text.as_bytes())).expect("readable");
        assert!(t.ended_mid_line);
        assert_eq!(t.processes[&0x20].unix_pid, Some(7));
        assert!(t.records.is_empty());
    }

    #[test]
    fn a_reused_windows_pid_is_a_new_process() {
        // Line shapes from the real traces; wineserver handed out pid 0100 twice.
        let text = r#"0024: init_first_thread( unix_pid=7, unix_tid=7, debug_level=0 )
0024: init_first_thread() = 0 { pid=0020, tid=0024 }
0024: init_process_done( teb=1 )
0024: new_process( token=0000, info={imagepath=L"C:\\a.exe",cmdline=L"a.exe"}, env=L"" )
0024: new_process() = 0 { info=005c, pid=0100, handle=0060 }
0024: new_thread( process=0060, access=001fffff )
0024: new_thread() = 0 { tid=0104, handle=0064 }
0104: init_first_thread( unix_pid=8, unix_tid=8, debug_level=0 )
0104: init_first_thread() = 0 { pid=0100, tid=0104 }
0104: init_process_done( teb=1 )
0104: create_mutex( access=001f0001, owned=1, objattr={rootdir=0038,name=L"first"} )
0024: new_process( token=0000, info={imagepath=L"C:\\b.exe",cmdline=L"b.exe x"}, env=L"" )
0024: new_process() = 0 { info=005c, pid=0100, handle=0068 }
0024: new_thread( process=0068, access=001fffff )
0024: new_thread() = 0 { tid=0108, handle=006c }
0108: init_first_thread( unix_pid=9, unix_tid=9, debug_level=0 )
0108: init_first_thread() = 0 { pid=0100, tid=0108 }
0108: init_process_done( teb=1 )
0108: create_mutex( access=001f0001, owned=1, objattr={rootdir=0038,name=L"second"} )
"#;
        let t = read(io::BufReader::new(text.as_bytes())).expect("readable");
        let second: ProcessKey = (1 << 32) | 0x100;
        assert_eq!(t.processes[&0x100].unix_pid, Some(8));
        assert_eq!(t.processes[&second].unix_pid, Some(9));
        assert_eq!(
            t.processes[&second].command_line.as_deref(),
            Some("b.exe x")
        );
        let who: Vec<Option<ProcessKey>> = t.records.iter().map(|r| r.process).collect();
        assert_eq!(who, [Some(0x100), Some(second)]);
    }

    #[test]
    fn truncated_and_garbled_lines_never_panic() {
        // Every prefix of real lines of each kind: requests, replies, dump lines, continuations.
        let t = fixture("escapes");
        assert!(!t.records.is_empty());
        let path = format!("{}/tests/data/wine/escapes.log", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).expect("fixture");
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("AegisEsc") || l.starts_with("  ") || l.contains("new_process"))
            .take(15)
            .collect();
        for line in lines {
            for (cut, _) in line.char_indices() {
                let input = format!("{}\n{}", &line[..cut], line);
                read(io::BufReader::new(input.as_bytes())).expect("reads");
            }
        }
        let garbage = "ffff: ( ) = {\n: \nSet key \nSet key  value \"\n00\n0024: create_key() = 0 { hkey=zz }\n";
        read(io::BufReader::new(garbage.as_bytes())).expect("reads");
    }

    #[test]
    fn a_huge_continued_value_is_cut_and_counted() {
        let mut text = String::from(
            "0024: init_first_thread( unix_pid=7, unix_tid=7 )\n0024: init_first_thread() = 0 { pid=0020, tid=0024 }\n0024: init_process_done( teb=1 )\n0024: set_key_value( hkey=0038, type=3, namelen=2, name=L\"b\", data={} )\nSet key REGISTRY\\\\Machine\\\\X value \"b\"=hex:00,\\\n",
        );
        for _ in 0..LINE_MAX / 40 {
            text.push_str("  00,01,02,03,04,05,06,07,08,09,0a,0b,0c,0d,0e,0f,\\\n");
        }
        text.push_str("  ff\n0024: set_key_value() = 0\n");
        let t = read(io::BufReader::new(text.as_bytes())).expect("readable");
        assert_eq!(t.cut_lines, 1);
        let Some(Op::ValueSet { value, .. }) = t.records.first().map(|r| &r.op) else {
            panic!("the value is recorded: {:?}", t.records);
        };
        let ValueData::Bytes(b) = &value.data else {
            panic!("binary");
        };
        assert!(
            b.len() > LINE_MAX / 4 && b.len() < LINE_MAX / 2,
            "{}",
            b.len()
        );
    }

    #[test]
    fn records_are_capped() {
        let mut text = String::from(
            "0024: init_first_thread( unix_pid=7, unix_tid=7 )\n0024: init_first_thread() = 0 { pid=0020, tid=0024 }\n0024: init_process_done( teb=1 )\n",
        );
        for i in 0..RECORDS_MAX + 5 {
            text.push_str(&format!(
                "0024: create_mutex( access=1, owned=1, objattr={{rootdir=0000,name=L\"m{i}\"}} )\n"
            ));
        }
        let t = read(io::BufReader::new(text.as_bytes())).expect("readable");
        assert_eq!(t.records.len(), RECORDS_MAX);
        assert_eq!(t.dropped, 5);
    }
}
