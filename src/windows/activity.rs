//! Putting what the trace and the hives say into the report.
//!
//! The rule: the trace says what the sample's processes did, live and in order (a value set and
//! then deleted appears in both lists); the saved hives say what remained (`exists_at_end`).
//! When the trace is missing or incomplete, changes found only by diffing the hives are added
//! without a process (minus the keys Wine itself rewrites on every start).

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use super::hives::Hives;
use super::ids::{incomplete, ProcessIds};
use super::paths::{hkey_path, windows_path};
use super::registry::{registry, services, Unique};
use super::relay;
use super::trace::{self, Op, Role, Trace};
use super::WineRun;
use crate::report::{
    EventOfNote, FileEntry, Mutex, Process, RegistryValue, Report, WindowsProcess,
};

/// Adds the Windows sections to `report`. Missing or damaged inputs become `incomplete` entries.
pub fn apply(report: &mut Report, run: &WineRun) {
    apply_with_relay(report, run, None);
}

/// [`apply`], and the lookups of `wine_*` exports in Wine's relay trace (`relay_log`: the
/// stderr of the sample's processes, see [`relay`]).
pub fn apply_with_relay(report: &mut Report, run: &WineRun, relay_log: Option<&Path>) {
    // The evidence; what is missing is said in `incomplete`.
    let trace = read_trace(report, run);
    let before = Hives::read(&run.original_hives);
    let after = read_final_hives(report, run);
    let sid = after
        .as_ref()
        .map_or_else(|| before.user_sid(), Hives::user_sid);

    // Processes first: everything else names them by report id.
    let ids = ProcessIds::new(report, trace.as_ref());
    if let Some(t) = &trace {
        label_processes(report, t, &ids);
    }
    label_wineserver(report, trace.as_ref());
    windows_tree(report);

    report.registry = registry(report, trace.as_ref(), &ids, &sid, &before, after.as_ref());
    report.services = services(trace.as_ref(), &ids, &sid);
    if let Some(t) = &trace {
        report.mutexes = mutexes(t, &ids);
        wine_detection(report, t, &ids, &sid);
        if let Some(path) = relay_log {
            wine_exports(report, path, t, &ids);
        }
        attribute_files(report, t, &ids, &run.prefix);
    }
    windows_paths(report, &run.prefix);
    summarize(report);
}

/// The hives saved at the end, or `None` (with an `incomplete` entry) when they were not.
fn read_final_hives(report: &mut Report, run: &WineRun) -> Option<Hives> {
    if !run.server_exited {
        let reason = "wineserver did not exit by itself before the sandbox ended, so the \
                      registry it held in memory was not saved: final values are unknown";
        incomplete(report, "registry", reason.into(), None);
        return None;
    }
    let after = Hives::read(&run.changed_hives);
    if after.problems.is_empty() {
        return Some(after);
    }
    let files: Vec<String> = after
        .problems
        .iter()
        .map(|(f, e)| format!("{f}: {e}"))
        .collect();
    let reason = format!(
        "the prefix's registry was not saved at the end (wineserver killed?), so final values \
         are unknown: {}",
        files.join("; ")
    );
    incomplete(report, "registry", reason, None);
    None
}

fn read_trace(report: &mut Report, run: &WineRun) -> Option<Trace> {
    let path = &run.server_log;
    let parsed = File::open(path).and_then(|f| trace::read(BufReader::new(f)));
    let t = match parsed {
        Ok(t) => t,
        Err(e) => {
            let reason = format!(
                "wineserver's trace {} could not be read: {e}",
                path.display()
            );
            incomplete(report, "windows", reason, None);
            return None;
        }
    };
    if t.lines == 0 {
        incomplete(
            report,
            "windows",
            format!("wineserver's trace {} is empty", path.display()),
            None,
        );
    }
    if t.ended_mid_line {
        let reason = "wineserver's trace ends mid-line: wineserver was killed while writing".into();
        incomplete(report, "windows", reason, None);
    }
    if t.dropped > 0 {
        let reason = format!(
            "more than {} Windows operations in the trace",
            trace::RECORDS_MAX
        );
        incomplete(report, "windows", reason, Some(t.dropped));
    }
    if t.cut_lines > 0 {
        let reason =
            "trace lines longer than the reader keeps were cut (large request data)".into();
        incomplete(report, "windows", reason, Some(t.cut_lines));
    }
    Some(t)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Sample => "sample",
        Role::Wine => "wine",
        Role::Launcher => "wine_launcher",
    }
}

fn label_processes(report: &mut Report, t: &Trace, ids: &ProcessIds) {
    for wp in t.processes.values() {
        let Some(id) = ids.get(Some(wp.key)) else {
            continue;
        };
        let view = WindowsProcess {
            pid: Some(wp.wpid),
            image: wp.image.clone(),
            command_line: wp.command_line.clone(),
            parent_id: ids.get(wp.parent),
            role: role_name(t.role(wp.key)).into(),
        };
        if let Some(p) = report.processes.iter_mut().find(|p| p.id == id) {
            p.windows = Some(view);
        }
    }
}

/// The process tree along CreateProcess: Wine starts a program through a double fork, so on
/// Linux the sample's children hang off the sandbox's init; their Windows parent is known.
fn windows_tree(report: &mut Report) {
    let mut view = report.processes.clone();
    for p in &mut view {
        let parent = p.windows.as_ref().and_then(|w| w.parent_id);
        // A parent is older than its child; anything else would be a loop.
        if let Some(parent) = parent.filter(|&id| id < p.id) {
            p.parent_id = Some(parent);
        }
    }
    report.process_tree = crate::analysis::build::process_tree(&view);
}

/// wineserver is no Windows process, but the report says what it is.
fn label_wineserver(report: &mut Report, t: Option<&Trace>) {
    let traced = t.and_then(|t| t.wineserver_pid);
    for p in &mut report.processes {
        let base = p.image.rsplit('/').next().unwrap_or("");
        let is_server = traced == Some(p.pid) || base.starts_with("wineserver");
        if is_server && p.windows.is_none() {
            p.windows = Some(WindowsProcess {
                pid: None,
                image: None,
                command_line: None,
                parent_id: None,
                role: "wineserver".into(),
            });
        }
    }
}

fn mutexes(t: &Trace, ids: &ProcessIds) -> Vec<Mutex> {
    let mut out = Unique::new();
    for rec in &t.records {
        if let Op::MutexCreated { name } = &rec.op {
            out.push(Mutex {
                name: name.clone(),
                process_id: ids.get(rec.process),
            });
        }
    }
    out.items
}

fn wine_detection(report: &mut Report, t: &Trace, ids: &ProcessIds, sid: &str) {
    let mut seen = BTreeSet::new();
    for rec in &t.records {
        let Op::WineKeyRead { key, detail } = &rec.op else {
            continue;
        };
        let process_id = ids.get(rec.process);
        let detail = format!("{}: {detail}", hkey_path(key, sid));
        if !seen.insert((process_id, detail.clone())) {
            continue;
        }
        let time = process_id
            .and_then(|id| report.processes.iter().find(|p| p.id == id))
            .map_or(0.0, |p| p.started_at);
        report.events_of_note.push(EventOfNote {
            kind: "wine_detection".into(),
            process_id,
            time,
            detail,
        });
    }
}

/// `GetProcAddress(..., "wine_...")` by the sample, from the relay trace on its stderr.
fn wine_exports(report: &mut Report, path: &Path, t: &Trace, ids: &ProcessIds) {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            let reason = format!(
                "Wine's relay trace {} could not be read: {e}",
                path.display()
            );
            incomplete(report, "events_of_note", reason, None);
            return;
        }
    };
    let mut seen = BTreeSet::new();
    for lookup in relay::export_lookups(&text) {
        let wpid = t.threads.get(&lookup.tid).copied();
        let is_wine_export = lookup.name.to_ascii_lowercase().starts_with("wine_");
        if !is_wine_export || !wpid.is_some_and(|w| t.role(w) == Role::Sample) {
            continue;
        }
        let process_id = ids.get(wpid);
        let detail = format!(
            "looked up the Wine export {} ({})",
            lookup.name, lookup.function
        );
        if seen.insert((process_id, detail.clone())) {
            let time = process_id
                .and_then(|id| report.processes.iter().find(|p| p.id == id))
                .map_or(0.0, |p| p.started_at);
            report.events_of_note.push(EventOfNote {
                kind: "wine_detection".into(),
                process_id,
                time,
                detail,
            });
        }
    }
}

/// wineserver opens and deletes files for its clients, so the monitor sees wineserver do it;
/// the trace says which Windows process asked.
fn attribute_files(report: &mut Report, t: &Trace, ids: &ProcessIds, prefix: &str) {
    let server_ids: BTreeSet<u32> = report
        .processes
        .iter()
        .filter(|p| p.windows.as_ref().is_some_and(|w| w.role == "wineserver"))
        .map(|p| p.id)
        .collect();
    let mut asked: HashMap<String, Option<u32>> = HashMap::new();
    for rec in &t.records {
        if let Op::FileWritten { windows, .. } | Op::FileDeleted { windows, .. } = &rec.op {
            asked
                .entry(windows.to_lowercase())
                .or_insert(ids.get(rec.process));
        }
    }
    let fix = |e: &mut FileEntry| {
        let from_server = e.process_id.is_none_or(|id| server_ids.contains(&id));
        let win = windows_path(&e.path, prefix).map(|w| w.to_lowercase());
        if let (true, Some(Some(id))) = (from_server, win.and_then(|w| asked.get(&w))) {
            e.process_id = Some(*id);
        }
    };
    let f = &mut report.files;
    for list in [
        &mut f.created,
        &mut f.modified,
        &mut f.deleted,
        &mut f.made_executable,
    ] {
        list.iter_mut().for_each(fix);
    }
}

fn windows_paths(report: &mut Report, prefix: &str) {
    let f = &mut report.files;
    for list in [
        &mut f.created,
        &mut f.modified,
        &mut f.deleted,
        &mut f.made_executable,
        &mut f.timestamps_changed,
    ] {
        for e in list.iter_mut() {
            e.windows_path = windows_path(&e.path, prefix);
        }
    }
    let s = &mut report.summary;
    for list in [
        &mut s.files_written,
        &mut s.files_deleted,
        &mut s.files_dropped,
    ] {
        for p in list.iter_mut() {
            if let Some(w) = windows_path(p, prefix) {
                *p = w;
            }
        }
    }
}

fn summarize(report: &mut Report) {
    let r = &report.registry;
    let joined = |v: &RegistryValue| {
        if v.name.is_empty() {
            v.key.clone()
        } else {
            format!("{}\\{}", v.key, v.name)
        }
    };
    let mut set: Vec<String> = r.values_set.iter().map(joined).collect();
    let mut deleted: Vec<String> = r.keys_deleted.iter().map(|k| k.key.clone()).collect();
    deleted.extend(r.values_deleted.iter().map(joined));
    dedup(&mut set);
    dedup(&mut deleted);
    let s = &mut report.summary;
    s.registry_keys_set = set;
    s.registry_keys_deleted = deleted;
    s.mutexes_created = report.mutexes.iter().map(|m| m.name.clone()).collect();
    dedup(&mut s.mutexes_created);
    s.services_created = report
        .services
        .iter()
        .filter(|x| x.operation == "created")
        .map(|x| x.name.clone())
        .collect();
    dedup(&mut s.services_created);
    summarize_processes(&report.processes, s);
    let c = &mut s.counts;
    c.registry_keys_created = r.keys_created.len();
    c.registry_keys_deleted = r.keys_deleted.len();
    c.registry_values_set = r.values_set.len();
    c.registry_values_deleted = r.values_deleted.len();
    c.mutexes = report.mutexes.len();
    c.services = report.services.len();
    c.events_of_note = report.events_of_note.len();
}

/// Processes as Windows names them: a process that ran under Wine counts with its Windows
/// image and command line when it is the sample's, and not at all when it is Wine's; other
/// processes keep their Linux image.
fn summarize_processes(processes: &[Process], s: &mut crate::report::Summary) {
    if processes.iter().all(|p| p.windows.is_none()) {
        return;
    }
    let name = |p: &Process| -> Option<String> {
        match &p.windows {
            None => Some(p.image.clone()),
            Some(w) if w.role == "sample" => w.image.clone(),
            Some(_) => None,
        }
    };
    let first_sample = processes
        .iter()
        .find(|p| p.windows.as_ref().is_some_and(|w| w.role == "sample"))
        .map(|p| p.id);
    // Neither the first process (Wine's launcher) nor the sample's own process was created by
    // the sample.
    s.processes_created = processes
        .iter()
        .skip(1)
        .filter(|p| Some(p.id) != first_sample)
        .filter_map(name)
        .collect();
    dedup(&mut s.processes_created);
    s.processes_terminated = processes
        .iter()
        .filter(|p| p.ended_at.is_some())
        .filter_map(name)
        .collect();
    dedup(&mut s.processes_terminated);
    let windows_commands = processes
        .iter()
        .filter_map(|p| p.windows.as_ref())
        .filter(|w| w.role == "sample")
        .filter_map(|w| w.command_line.clone());
    s.command_executions.extend(windows_commands);
    dedup(&mut s.command_executions);
}

fn dedup(list: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    list.retain(|x| seen.insert(x.clone()));
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::config::Limits;
    use crate::report::{
        EndReason, Environment, Execution, Files, Network, Output, ReportStatus, SampleInfo,
        Summary,
    };
    use crate::report::{Registry, RegistryKey, Service};
    use crate::windows::hives::HIVE_FILES;
    use crate::windows::registry::ENTRIES_MAX;

    /// The prefix the fixtures were captured with.
    const PREFIX: &str = "/tmp/wintrace-MR0T/home/.wine";

    fn data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/wine")
            .join(name)
    }

    fn process(id: u32, pid: i32, image: &str) -> Process {
        Process {
            id,
            pid,
            ppid: 1,
            parent_id: None,
            image: image.into(),
            image_sha256: None,
            argv: vec![image.into()],
            cwd: "/".into(),
            uid: Some(1000),
            started_at: f64::from(id) / 10.0,
            ended_at: None,
            exit_code: None,
            signal: None,
            reparented: false,
            threads: 1,
            execs: 1,
            windows: None,
        }
    }

    fn report(processes: Vec<Process>, files: Files) -> Report {
        Report {
            analysis_id: "test".into(),
            status: ReportStatus::Completed,
            report_version: crate::report::REPORT_VERSION.into(),
            sample: SampleInfo {
                file_name: "x.exe".into(),
                sandbox_path: "x.exe".into(),
                size: 0,
                md5: String::new(),
                sha1: String::new(),
                sha256: String::new(),
                file_type: String::new(),
                platform: "windows".into(),
                arch: "x86_64".into(),
            },
            environment: Environment {
                backend: "native".into(),
                runtime: None,
                image: "windows".into(),
                image_digest: String::new(),
                network: "none".into(),
                limits: Limits {
                    timeout_s: 30,
                    memory_bytes: 1 << 30,
                    cpus: 1.0,
                    pids: 256,
                    disk_bytes: 1 << 30,
                },
                hostname: "h".into(),
                cgroup_version: "v2".into(),
                aegis_version: "0".into(),
            },
            execution: Execution {
                command: Vec::new(),
                cwd: "/".into(),
                started_at: String::new(),
                ended_at: String::new(),
                duration_s: 1.0,
                exit_code: Some(0),
                signal: None,
                end_reason: EndReason::Exited,
                limits_hit: Vec::new(),
                memory_peak_bytes: None,
                cpu_time_s: None,
                error: None,
            },
            processes,
            process_tree: Vec::new(),
            files,
            network: Network::default(),
            events_of_note: Vec::new(),
            registry: Registry::default(),
            mutexes: Vec::new(),
            services: Vec::new(),
            output: Output::default(),
            summary: Summary::default(),
            incomplete: Vec::new(),
        }
    }

    /// A run directory with the given hive files (fixture names) as system/user/userdef.reg.
    fn hives(dir: &Path, name: &str, files: [&str; 3]) -> PathBuf {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        for (target, source) in HIVE_FILES.iter().zip(files) {
            std::fs::copy(data(source), d.join(target)).expect("copy");
        }
        d
    }

    fn run(log: &str, before: PathBuf, after: PathBuf) -> WineRun {
        WineRun {
            prefix: PREFIX.into(),
            original_hives: before,
            changed_hives: after,
            server_log: data(log),
            server_exited: true,
        }
    }

    /// A run with unchanged hives (the changes come from the trace).
    fn trace_only(dir: &Path, log: &str) -> WineRun {
        let same = [
            "sc-before-system.reg",
            "runkey64-after-user.reg",
            "userdef.reg",
        ];
        let h = hives(dir, "hives", same);
        run(log, h.clone(), h)
    }

    const RUN: &str = "HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Run";

    fn value(name: &str, ty: &str, data: &str, at_end: bool) -> RegistryValue {
        RegistryValue {
            key: RUN.into(),
            name: name.into(),
            value_type: ty.into(),
            data: data.into(),
            process_id: Some(2),
            exists_at_end: Some(at_end),
        }
    }

    #[test]
    fn run_key_values_with_data_and_final_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let before = hives(
            dir.path(),
            "before",
            [
                "sc-before-system.reg",
                "runkey64-before-user.reg",
                "userdef.reg",
            ],
        );
        let after = hives(
            dir.path(),
            "after",
            [
                "sc-before-system.reg",
                "runkey64-after-user.reg",
                "userdef.reg",
            ],
        );
        let procs = vec![
            process(1, 99, "/usr/lib/wine/wineserver64"),
            process(2, 11849, "/usr/lib/wine/wine64-preloader"),
        ];
        let mut r = report(procs, Files::default());
        apply(&mut r, &run("runkey64.log", before, after));

        assert!(r.incomplete.is_empty(), "{:?}", r.incomplete);
        let updater = "C:\\ProgramData\\AegisTest\\updater.exe /quiet \"x\"";
        assert_eq!(
            r.registry.values_set,
            [
                value("AegisUpdater", "REG_SZ", updater, true),
                value("AegisCount", "REG_DWORD", "0x0000002a (42)", true),
                value("AegisTemp", "REG_SZ", "gone", false),
            ]
        );
        assert_eq!(
            r.registry.values_deleted,
            [value("AegisTemp", "REG_SZ", "gone", false)]
        );
        assert!(r.registry.keys_created.is_empty());
        assert_eq!(
            r.summary.registry_keys_set,
            [
                format!("{RUN}\\AegisUpdater"),
                format!("{RUN}\\AegisCount"),
                format!("{RUN}\\AegisTemp")
            ]
        );
        assert_eq!(
            r.summary.registry_keys_deleted,
            [format!("{RUN}\\AegisTemp")]
        );
        assert_eq!(r.summary.counts.registry_values_set, 3);
        assert_eq!(r.summary.counts.registry_values_deleted, 1);

        let sample = r.processes[1].windows.clone().expect("windows view");
        assert_eq!(
            sample,
            WindowsProcess {
                pid: Some(0xd0),
                image: Some("C:\\samples\\runkey.exe".into()),
                command_line: Some("\"C:\\samples\\runkey.exe\" ".into()),
                parent_id: None,
                role: "sample".into(),
            }
        );
        let server = r.processes[0].windows.as_ref().map(|w| w.role.as_str());
        assert_eq!(server, Some("wineserver"));
    }

    #[test]
    fn the_32_bit_run_key_program_is_the_first_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let procs = vec![
            process(1, 6698, "/usr/lib/wine/wine"),
            process(2, 6700, "/usr/lib/wine/wine64"),
        ];
        let mut r = report(procs, Files::default());
        apply(&mut r, &trace_only(dir.path(), "runkey32.log"));
        let names: Vec<&str> = r
            .registry
            .values_set
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(names, ["AegisUpdater", "AegisCount", "AegisTemp"]);
        assert!(r
            .registry
            .values_set
            .iter()
            .all(|v| v.process_id == Some(1)));
        let roles: Vec<&str> = r
            .processes
            .iter()
            .map(|p| p.windows.as_ref().map_or("", |w| w.role.as_str()))
            .collect();
        assert_eq!(
            roles,
            ["sample", "wine"],
            "pid 6700 is wineboot, started by Wine"
        );
    }

    #[test]
    fn service_created_with_sc_create() {
        let dir = tempfile::tempdir().expect("tempdir");
        let before = hives(
            dir.path(),
            "before",
            [
                "sc-before-system.reg",
                "runkey64-after-user.reg",
                "userdef.reg",
            ],
        );
        let after = hives(
            dir.path(),
            "after",
            [
                "sc-after-system.reg",
                "runkey64-after-user.reg",
                "userdef.reg",
            ],
        );
        let procs = vec![
            process(1, 12604, "/usr/lib/wine/wine64-preloader"),
            process(2, 12647, "/usr/lib/wine/wine"),
        ];
        let mut r = report(procs, Files::default());
        apply(&mut r, &run("sc.log", before, after));
        assert_eq!(
            r.services,
            [Service {
                name: "AegisSvc".into(),
                operation: "created".into(),
                binary_path: Some("C:\\ProgramData\\AegisTest\\svc.exe --service".into()),
                display_name: Some("Aegis Test Service".into()),
                start_type: Some("auto".into()),
                process_id: Some(1),
            }]
        );
        assert_eq!(r.summary.services_created, ["AegisSvc"]);
        let key = "HKEY_LOCAL_MACHINE\\System\\CurrentControlSet\\Services\\AegisSvc";
        assert_eq!(
            r.registry.keys_created,
            [RegistryKey {
                key: key.into(),
                process_id: Some(1)
            }]
        );
        assert!(r
            .registry
            .values_set
            .iter()
            .all(|v| v.exists_at_end == Some(true)));
        let sc = r.processes[1].windows.as_ref().expect("sc.exe");
        assert_eq!(sc.image.as_deref(), Some("C:\\windows\\syswow64\\sc.exe"));
        assert_eq!(
            r.processes[0].windows.as_ref().map(|w| w.role.as_str()),
            Some("wine")
        );
    }

    #[test]
    fn service_started_with_sc_start() {
        // `sc create AegisStart binPath= C:\samples\mutex.exe` earlier, then `sc start`.
        let dir = tempfile::tempdir().expect("tempdir");
        let procs = vec![
            process(1, 28501, "/usr/lib/wine/wine"),
            process(2, 28514, "/usr/lib/wine/wine64"),
        ];
        let mut r = report(procs, Files::default());
        apply(&mut r, &trace_only(dir.path(), "scstart.log"));
        assert_eq!(
            r.services,
            [Service {
                name: "AegisStart".into(),
                operation: "started".into(),
                binary_path: Some("C:\\samples\\mutex.exe".into()),
                display_name: None,
                start_type: None,
                process_id: Some(2),
            }]
        );
        assert!(r.summary.services_created.is_empty());
        // The started program is the sample's: its mutexes are reported.
        assert_eq!(r.mutexes.len(), 2);
        assert!(r.mutexes.iter().all(|m| m.process_id == Some(2)));
    }

    #[test]
    fn file_dropped_under_programdata_is_named_and_attributed_to_the_sample() {
        let dir = tempfile::tempdir().expect("tempdir");
        let unix = format!("{PREFIX}/dosdevices/c:/ProgramData/AegisTest/payload.bin");
        let files = Files {
            created: vec![FileEntry {
                path: unix.clone(),
                process_id: Some(1),
                exists_at_end: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        let procs = vec![
            process(1, 99, "/usr/lib/wine/wineserver64"),
            process(2, 5857, "/usr/lib/wine/wine64"),
        ];
        let mut r = report(procs, files);
        r.summary.files_written = vec![unix];
        apply(&mut r, &trace_only(dir.path(), "dropfile.log"));
        let f = &r.files.created[0];
        assert_eq!(
            f.windows_path.as_deref(),
            Some("C:\\ProgramData\\AegisTest\\payload.bin")
        );
        assert_eq!(
            f.process_id,
            Some(2),
            "wineserver opened it for dropfile.exe"
        );
        assert_eq!(
            r.summary.files_written,
            ["C:\\ProgramData\\AegisTest\\payload.bin"]
        );
    }

    #[test]
    fn cmd_child_and_mutexes_and_wine_detection() {
        let dir = tempfile::tempdir().expect("tempdir");
        let procs = vec![
            process(1, 5911, "/usr/lib/wine/wine64"),
            process(2, 5913, "/usr/lib/wine/wine64"),
        ];
        let mut r = report(procs, Files::default());
        apply(&mut r, &trace_only(dir.path(), "child.log"));
        let cmd = r.processes[1].windows.as_ref().expect("cmd");
        assert_eq!(cmd.parent_id, Some(1));
        // On Linux both hang off init; the tree follows CreateProcess.
        assert_eq!(r.process_tree.len(), 1);
        assert_eq!(r.process_tree[0].id, 1);
        assert_eq!(r.process_tree[0].children.len(), 1);
        assert_eq!(r.process_tree[0].children[0].id, 2);
        let line = "cmd.exe /c echo aegis-child > C:\\ProgramData\\child.txt";
        assert_eq!(cmd.command_line.as_deref(), Some(line));
        assert!(r.summary.command_executions.iter().any(|c| c == line));
        assert_eq!(
            r.summary.processes_created,
            ["C:\\windows\\system32\\cmd.exe"]
        );
        assert!(r.mutexes.is_empty() && r.events_of_note.is_empty());

        let procs = vec![process(1, 5733, "/usr/lib/wine/wine64")];
        let mut r = report(procs, Files::default());
        apply(&mut r, &trace_only(dir.path(), "mutex.log"));
        let m = |name: &str| Mutex {
            name: name.into(),
            process_id: Some(1),
        };
        assert_eq!(
            r.mutexes,
            [m("Global\\AegisTestMutex_42"), m("Local\\Aegis\u{e9}Mutex")]
        );
        assert_eq!(r.summary.mutexes_created.len(), 2);

        let procs = vec![process(1, 5985, "/usr/lib/wine/wine64")];
        let mut r = report(procs, Files::default());
        apply(&mut r, &trace_only(dir.path(), "winecheck.log"));
        assert_eq!(r.events_of_note.len(), 1);
        let e = &r.events_of_note[0];
        assert_eq!(e.kind, "wine_detection");
        assert_eq!(e.process_id, Some(1));
        assert_eq!(
            e.detail,
            "HKEY_CURRENT_USER\\Software\\Wine: opened the key (access 0x00020019)"
        );
        assert_eq!(r.summary.counts.events_of_note, 1);
    }

    #[test]
    fn wine_get_version_looked_up_by_the_sample() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = trace_only(dir.path(), "winecheck-relay.log");
        let relay = data("winecheck-relay.stderr");
        // winecheck.exe's Unix pid in that capture.
        let mut r = report(
            vec![process(1, 4923, "/usr/lib/wine/wine64")],
            Files::default(),
        );
        apply_with_relay(&mut r, &run, Some(&relay));
        let details: Vec<&str> = r.events_of_note.iter().map(|e| e.detail.as_str()).collect();
        assert_eq!(
            details,
            [
                "HKEY_CURRENT_USER\\Software\\Wine: opened the key (access 0x00020019)",
                "looked up the Wine export wine_get_version (KERNEL32.GetProcAddress)",
            ]
        );
        assert!(r.events_of_note.iter().all(|e| e.process_id == Some(1)));
    }

    #[test]
    fn registry_lists_are_capped_and_the_rest_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = String::from(
            "0024: init_first_thread( unix_pid=7, unix_tid=7 )\n0024: init_first_thread() = 0 { pid=0020, tid=0024 }\n0024: init_process_done( teb=1 )\n",
        );
        for i in 0..ENTRIES_MAX + 3 {
            text.push_str(&format!(
                "0024: set_key_value( hkey=0038, type=4, namelen=2, name=L\"v{i}\", data={{01,00,00,00}} )\n\
                 Set key REGISTRY\\\\Machine\\\\Software\\\\X value \"v{i}\"=dword:00000001\n\
                 0024: set_key_value() = 0\n"
            ));
        }
        let log = dir.path().join("server.log");
        std::fs::write(&log, text).expect("write");
        let mut run = trace_only(dir.path(), "runkey64.log");
        run.server_log = log;
        let mut r = report(vec![process(1, 7, "/usr/lib/wine/wine")], Files::default());
        apply(&mut r, &run);
        assert_eq!(r.registry.values_set.len(), ENTRIES_MAX);
        assert_eq!(
            r.registry.values_set[0].key,
            "HKEY_LOCAL_MACHINE\\Software\\X"
        );
        let cap = r
            .incomplete
            .iter()
            .find(|i| i.section == "registry")
            .expect("cap noted");
        assert_eq!(cap.dropped, Some(3));
        assert_eq!(r.summary.counts.registry_values_set, ENTRIES_MAX);
    }

    #[test]
    fn without_a_graceful_wineserver_exit_the_final_state_is_unknown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut run = trace_only(dir.path(), "runkey64.log");
        run.server_exited = false;
        let mut r = report(
            vec![process(1, 11849, "/usr/lib/wine/wine64")],
            Files::default(),
        );
        apply(&mut r, &run);
        assert_eq!(r.registry.values_set.len(), 3);
        assert!(r
            .registry
            .values_set
            .iter()
            .all(|v| v.exists_at_end.is_none()));
        assert_eq!(r.incomplete.len(), 1);
        assert!(r.incomplete[0]
            .reason
            .starts_with("wineserver did not exit by itself"));
    }

    #[test]
    fn missing_inputs_are_reported_as_incomplete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nothing");
        let mut r = report(
            vec![process(1, 10, "/usr/lib/wine/wine64")],
            Files::default(),
        );
        apply(&mut r, &run("no-such.log", missing.clone(), missing));
        let sections: Vec<&str> = r.incomplete.iter().map(|i| i.section.as_str()).collect();
        assert_eq!(sections, ["windows", "registry", "registry"]);
        assert!(r.incomplete[0].reason.contains("no-such.log"));
        assert!(r.registry.values_set.is_empty() && r.mutexes.is_empty());
        assert_eq!(r.processes[0].windows, None);
    }

    #[test]
    fn without_a_trace_the_hive_diff_is_used_without_wines_own_churn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let before = hives(
            dir.path(),
            "before",
            [
                "sc-before-system.reg",
                "runkey64-before-user.reg",
                "userdef.reg",
            ],
        );
        let after = hives(
            dir.path(),
            "after",
            [
                "sc-after-system.reg",
                "runkey64-after-user.reg",
                "userdef.reg",
            ],
        );
        let mut r = report(Vec::new(), Files::default());
        apply(&mut r, &run("no-such.log", before, after));
        let keys: BTreeSet<&str> = r
            .registry
            .values_set
            .iter()
            .map(|v| v.key.as_str())
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Explorer\\Shell Folders",
                RUN,
                "HKEY_LOCAL_MACHINE\\System\\CurrentControlSet\\Services\\AegisSvc",
            ])
        );
        assert!(r.registry.values_set.iter().all(|v| v.process_id.is_none()));
        assert_eq!(r.incomplete.len(), 1);
    }
}
