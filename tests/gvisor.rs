//! A smaller set of behaviour fixtures on the docker backend with gVisor (`--runtime runsc`):
//! the facts that must match the native backend's, and the places where gVisor's own kernel
//! makes them differ, each named (docs/backends.md). Needs a reachable Docker Engine with
//! runsc registered (`scripts/start-docker.sh`) and root.

mod support;

use aegis::report::{EndReason, ReportStatus};
use support::*;

fn created<'a>(r: &'a aegis::report::Report, path: &str) -> Option<&'a aegis::report::FileEntry> {
    r.files.created.iter().find(|f| f.path == path)
}

#[test]
fn runsc_reports_processes_files_and_connections_like_native() {
    let dir = workdir();
    let bin = gcc(dir.path(), "hello", &[]);
    let bytes = std::fs::read(&bin).unwrap();
    let r = analyze(&bin, &["--timeout", "20", "--", "one", "two"]);
    assert_eq!(r.environment.backend, "docker");
    assert_eq!(r.environment.runtime.as_deref(), Some("runsc"));
    assert_eq!(r.execution.end_reason, EndReason::Exited);
    assert_eq!(r.execution.exit_code, Some(3));
    assert_eq!(r.output.stdout.text, "hello from /root/hello with 2 args\n");
    let p = &r.processes[0];
    assert_eq!(
        (p.pid, p.ppid, p.uid),
        (2, 1, Some(0)),
        "gVisor starts pids at 1"
    );
    assert_eq!(p.image, "/root/hello");
    assert_eq!(p.image_sha256.as_deref(), Some(sha256(&bytes).as_str()));
    let f = created(&r, "/tmp/hello.txt").unwrap();
    assert_eq!((f.size, f.process_id), (Some(6), Some(1)));
    let c = &r.network.connections[0];
    assert_eq!(
        (c.protocol.as_str(), c.dst_ip.as_deref(), c.dst_port),
        ("tcp", Some("127.0.0.1"), Some(9))
    );
    assert_eq!(c.outcome, "refused");
    assert!(r.incomplete.is_empty(), "{:?}", r.incomplete);
    // The report's clock is the host's, whatever clock gVisor keeps inside.
    let started = chrono::DateTime::parse_from_rfc3339(&r.execution.started_at).unwrap();
    let age = chrono::Utc::now().signed_duration_since(started);
    assert!(age.num_seconds().abs() < 120, "started_at {started}");
}

#[test]
fn runsc_dropper_persistence_and_self_delete_are_recorded() {
    let dir = workdir();
    let script = b"#!/bin/bash\n\
cp \"$0\" /tmp/.cache-update\n\
echo '*/5 * * * * root /tmp/.cache-update' >> /etc/crontab\n\
rm -f \"$0\"\n";
    let s = write(dir.path(), "dropper.sh", script);
    let r = analyze(&s, &["--timeout", "20"]);
    let digest = sha256(script);
    let copy = created(&r, "/tmp/.cache-update").expect("the copy");
    assert_eq!(copy.sha256.as_deref(), Some(digest.as_str()));
    let modified: Vec<&str> = r.files.modified.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(modified, vec!["/etc/crontab"]);
    let gone = r
        .files
        .deleted
        .iter()
        .find(|f| f.path == "/root/dropper.sh");
    assert_eq!(
        gone.and_then(|g| g.sha256.as_deref()),
        Some(digest.as_str())
    );
}

#[test]
fn runsc_endless_loop_ends_with_timeout() {
    let dir = workdir();
    let s = write(dir.path(), "loop.sh", b"#!/bin/sh\nwhile :; do :; done\n");
    let r = analyze(&s, &["--timeout", "2"]);
    assert_eq!(r.execution.end_reason, EndReason::Timeout);
    assert_eq!(r.execution.limits_hit, vec!["timeout".to_string()]);
    assert!(
        r.execution.duration_s >= 2.0 && r.execution.duration_s < 3.0,
        "{}",
        r.execution.duration_s
    );
    assert_eq!(r.processes[0].signal.as_deref(), Some("SIGKILL"));
}

/// gVisor has no OOM killer of its own: the engine's memory limit kills the whole sandbox,
/// monitor included. The report still says memory_limit, and the sample's end is a SIGKILL.
#[test]
fn runsc_memory_hog_ends_with_memory_limit() {
    let dir = workdir();
    let bin = gcc(dir.path(), "memhog", &[]);
    let r = analyze(&bin, &["--timeout", "20", "--memory", "128m"]);
    assert_eq!(r.status, ReportStatus::Completed);
    assert_eq!(r.execution.end_reason, EndReason::MemoryLimit);
    assert_eq!(r.execution.signal.as_deref(), Some("SIGKILL"));
    assert!(r.execution.duration_s < 10.0);
}

/// The monitor enforces the pids limit itself under gVisor (the engine's limit would count
/// gVisor's own host threads); a fork bomb is slower to grow there than on the host kernel.
#[test]
fn runsc_fork_bomb_is_stopped_by_the_pids_limit() {
    let dir = workdir();
    let s = write(dir.path(), "bomb.sh", b"#!/bin/bash\nb(){ b | b & }; b\n");
    let r = analyze(&s, &["--timeout", "40"]);
    assert_eq!(r.execution.end_reason, EndReason::PidsLimit);
    assert!(r.execution.limits_hit.contains(&"pids".to_string()));
    assert!(r.execution.duration_s < 30.0, "{}", r.execution.duration_s);
    assert!(r.processes.len() > 100, "{} processes", r.processes.len());
}

#[test]
fn runsc_anti_debug_check_runs_its_payload_and_is_flagged() {
    let dir = workdir();
    let bin = gcc(dir.path(), "antidebug", &[]);
    let r = analyze(&bin, &["--timeout", "20"]);
    assert_eq!(r.execution.exit_code, Some(0));
    assert_eq!(r.output.stdout.text, "no debugger, payload written\n");
    let kinds: Vec<&str> = r.events_of_note.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"ptrace_traceme"), "{kinds:?}");
    assert!(kinds.contains(&"tracerpid_check"), "{kinds:?}");
}
