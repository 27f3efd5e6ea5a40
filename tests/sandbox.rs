//! End-to-end behaviour of the native sandbox and the monitor, through `aegis analyze`.
//! Needs root (namespaces, cgroups, overlay); CI runs as root.

mod support;

use aegis::report::{EndReason, ReportStatus};
use support::*;

fn created<'a>(r: &'a aegis::report::Report, path: &str) -> Option<&'a aegis::report::FileEntry> {
    r.files.created.iter().find(|f| f.path == path)
}

#[test]
fn double_fork_daemon_is_killed_at_timeout() {
    let dir = workdir();
    let bin = gcc(dir.path(), "daemon", &[]);
    let r = analyze(&bin, &["--timeout", "3"]);
    assert_eq!(r.status, ReportStatus::Completed);
    assert_eq!(r.execution.end_reason, EndReason::Timeout);
    assert!(
        r.execution.duration_s >= 3.0 && r.execution.duration_s < 4.5,
        "{}",
        r.execution.duration_s
    );
    assert_eq!(
        r.execution.exit_code,
        Some(0),
        "the first process exits at once"
    );
    assert_eq!(r.processes.len(), 3, "{:#?}", r.processes);
    let daemon = &r.processes[2];
    assert_eq!(daemon.parent_id, Some(2));
    assert!(daemon.reparented, "its parent exited first");
    assert_eq!(daemon.signal.as_deref(), Some("SIGKILL"));
    assert!(r.processes.iter().all(|p| p.ended_at.is_some()));
    let f = created(&r, "/tmp/daemon.txt").expect("daemon's file");
    assert_eq!(
        f.sha256.as_deref(),
        Some(sha256(b"daemon alive\n").as_str())
    );
    assert_eq!(f.process_id, Some(3));
    assert_eq!(r.process_tree.len(), 1);
    assert_eq!(r.process_tree[0].children[0].children[0].id, 3);
}

#[test]
fn fork_bomb_is_stopped_by_the_pids_limit() {
    let dir = workdir();
    let s = write(dir.path(), "bomb.sh", b"#!/bin/bash\nb(){ b | b & }; b\n");
    let r = analyze(&s, &["--timeout", "20"]);
    assert_eq!(r.execution.end_reason, EndReason::PidsLimit);
    assert!(r.execution.limits_hit.contains(&"pids".to_string()));
    assert!(
        r.execution.duration_s < 10.0,
        "stopped well before the timeout"
    );
    assert!(r.processes.len() > 100, "{} processes", r.processes.len());
}

#[test]
fn memory_hog_ends_with_memory_limit() {
    let dir = workdir();
    let bin = gcc(dir.path(), "memhog", &[]);
    let r = analyze(&bin, &["--timeout", "20", "--memory", "128m"]);
    assert_eq!(r.execution.end_reason, EndReason::MemoryLimit);
    assert_eq!(r.execution.signal.as_deref(), Some("SIGKILL"));
    assert_eq!(r.environment.limits.memory_bytes, 128 << 20);
    assert!(r.execution.duration_s < 10.0);
}

#[test]
fn disk_filler_is_stopped_by_the_quota() {
    let dir = workdir();
    let s = write(
        dir.path(),
        "fill.sh",
        b"#!/bin/sh\ndd if=/dev/zero of=/tmp/fill bs=1M count=4096\necho dd=$?\n",
    );
    let r = analyze(&s, &["--timeout", "30", "--memory", "256m"]);
    assert_eq!(r.execution.end_reason, EndReason::DiskLimit);
    assert_eq!(r.environment.limits.disk_bytes, 128 << 20);
    assert_eq!(r.output.stdout.text, "dd=1\n");
    assert!(r.output.stderr.text.contains("No space left on device"));
    let fill = created(&r, "/tmp/fill").expect("the fill file");
    assert!(fill.size.unwrap() > 120 << 20 && fill.size.unwrap() <= 128 << 20);
    assert!(fill.artifact.is_none(), "over the artifact cap");
    assert!(fill.artifact_note.as_deref().unwrap().contains("over the"));
}

#[test]
fn endless_loop_ends_with_timeout_within_grace() {
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

#[test]
fn anti_debug_check_runs_its_payload_and_is_flagged() {
    let dir = workdir();
    let bin = gcc(dir.path(), "antidebug", &[]);
    let r = analyze(&bin, &["--timeout", "10"]);
    assert_eq!(r.execution.exit_code, Some(0));
    assert_eq!(r.output.stdout.text, "no debugger, payload written\n");
    let payload = created(&r, "/tmp/payload.bin").expect("payload");
    assert_eq!(
        payload.sha256.as_deref(),
        Some(sha256(b"payload ran\n").as_str())
    );
    let kinds: Vec<&str> = r.events_of_note.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"ptrace_traceme"), "{kinds:?}");
    assert!(kinds.contains(&"tracerpid_check"), "{kinds:?}");
}

#[test]
fn self_deleting_dropper_is_recorded_with_its_persistence() {
    let dir = workdir();
    let script = b"#!/bin/bash\n\
cp \"$0\" /tmp/.cache-update\n\
chmod +x /tmp/.cache-update\n\
echo '*/5 * * * * root /tmp/.cache-update' >> /etc/crontab\n\
echo '/tmp/.cache-update &' >> ~/.bashrc\n\
rm -f \"$0\"\n";
    let s = write(dir.path(), "dropper.sh", script);
    let r = analyze(&s, &["--timeout", "10"]);
    let digest = sha256(script);
    assert_eq!(r.sample.sha256, digest);
    let copy = created(&r, "/tmp/.cache-update").expect("the copy");
    assert_eq!(copy.sha256.as_deref(), Some(digest.as_str()));
    assert_eq!(
        copy.artifact.as_deref(),
        Some(format!("dropped/{digest}").as_str())
    );
    let modified: Vec<&str> = r.files.modified.iter().map(|f| f.path.as_str()).collect();
    assert!(modified.contains(&"/etc/crontab"), "{modified:?}");
    assert!(modified.contains(&"/root/.bashrc"), "{modified:?}");
    let gone = r
        .files
        .deleted
        .iter()
        .find(|f| f.path == "/root/dropper.sh")
        .expect("self-delete");
    assert_eq!(gone.sha256.as_deref(), Some(digest.as_str()));
    assert!(!gone.exists_at_end);
    // The deleted file's content is kept too, read just before the deletion.
    assert_eq!(
        gone.artifact.as_deref(),
        Some(format!("dropped/{digest}").as_str())
    );
    assert!(r
        .files
        .made_executable
        .iter()
        .any(|f| f.path == "/tmp/.cache-update"));
    let artifact = std::fs::read(
        data_dir()
            .join("analyses")
            .join(&r.analysis_id)
            .join("artifacts")
            .join(copy.artifact.as_ref().unwrap()),
    )
    .unwrap();
    assert_eq!(artifact, script);
}

#[test]
fn thirty_two_threads_each_write_a_file() {
    let dir = workdir();
    let bin = gcc(dir.path(), "threads", &["-pthread"]);
    let r = analyze(&bin, &["--timeout", "10"]);
    assert_eq!(r.processes.len(), 1);
    assert_eq!(r.processes[0].threads, 33);
    let mut files: Vec<&str> = r.files.created.iter().map(|f| f.path.as_str()).collect();
    files.sort();
    let expected: Vec<String> = (0..32).map(|i| format!("/tmp/thread-{i:02}.txt")).collect();
    assert_eq!(
        files,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(r.files.created.iter().all(|f| f.process_id == Some(1)));
}

#[test]
fn non_utf8_and_100_mb_of_stdout_are_kept_exactly_and_bounded() {
    let dir = workdir();
    let s = write(
        dir.path(),
        "noisy.sh",
        b"#!/bin/sh\nprintf 'a\\377\\376b\\\\'\nhead -c 104857600 /dev/zero\nprintf 'err\\n' >&2\n",
    );
    let r = analyze(&s, &["--timeout", "30"]);
    let out = &r.output.stdout;
    assert_eq!(out.bytes, 5 + 104_857_600);
    assert!(out.truncated);
    assert_eq!(out.encoding, "escaped");
    assert!(
        out.text.starts_with("a\\xff\\xfeb\\\\\0\0"),
        "{:?}",
        &out.text[..20]
    );
    assert_eq!(
        aegis::report::text::unescape(&out.text)[..5],
        *b"a\xff\xfeb\\"
    );
    assert_eq!(r.output.stderr.text, "err\n");
    assert_eq!(r.output.stderr.encoding, "utf-8");
    let json = serde_json::to_string(&r).unwrap();
    assert!(
        json.len() < 8 << 20,
        "the report stays bounded: {} bytes",
        json.len()
    );
}

#[test]
fn escape_attempts_all_fail() {
    let dir = workdir();
    let bin = gcc(dir.path(), "escape", &[]);
    let secret = write(dir.path(), "host-only-secret", b"host secret\n");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let mut bystander = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();

    let r = analyze(
        &bin,
        &["--timeout", "10", "--", secret.to_str().unwrap(), &port],
    );
    let out = &r.output.stdout.text;
    assert!(out.contains("read-host-file=blocked"), "{out}");
    assert!(out.contains("connect-host-loopback=blocked"), "{out}");
    assert!(out.contains("mount-proc=blocked"), "{out}");
    assert!(out.contains("write-usr=inside-guest"), "{out}");
    assert!(!out.contains("ESCAPED"), "{out}");
    assert!(
        out.contains("survived kill -1"),
        "kill(-1) spares the caller, as on any Linux"
    );
    assert!(
        listener.accept().is_err(),
        "nothing reached the host's listener"
    );
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "a host process survived kill -9 -1"
    );
    let _ = bystander.kill();
    let _ = bystander.wait();
    assert!(!std::path::Path::new("/usr/aegis-escape-marker").exists());
    assert!(
        created(&r, "/usr/aegis-escape-marker").is_some(),
        "the write stayed in the guest"
    );
    let kinds: Vec<&str> = r.events_of_note.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"mount_attempt"), "{kinds:?}");
    assert!(kinds.contains(&"kill_other_process"), "{kinds:?}");
    let c = &r.network.connections;
    assert!(
        c.iter().any(|c| c.dst_ip.as_deref() == Some("127.0.0.1")
            && c.dst_port.map(|p| p.to_string()) == Some(port.clone())
            && c.outcome == "refused"),
        "{c:#?}"
    );
}

#[test]
fn elf_program_report_has_exact_process_file_and_network_facts() {
    let dir = workdir();
    let bin = gcc(dir.path(), "hello", &[]);
    let bytes = std::fs::read(&bin).unwrap();
    let r = analyze(&bin, &["--timeout", "10", "--", "one", "two"]);
    assert_eq!(r.sample.sha256, sha256(&bytes));
    assert_eq!(r.sample.arch, "x86_64");
    assert!(
        r.sample.file_type.contains("dynamically linked"),
        "{}",
        r.sample.file_type
    );
    assert_eq!(r.execution.command, vec!["/root/hello", "one", "two"]);
    assert_eq!(r.execution.end_reason, EndReason::Exited);
    assert_eq!(r.execution.exit_code, Some(3));
    assert_eq!(r.output.stdout.text, "hello from /root/hello with 2 args\n");
    let p = &r.processes[0];
    // The engine's runtime uses a few pids of a container's namespace before its init runs;
    // in either sandbox the sample is the first child of the monitor, which is pid 1.
    let first_pid = if on_docker() { p.pid } else { 2 };
    assert_eq!((p.pid, p.ppid, p.uid), (first_pid, 1, Some(0)));
    assert_eq!(p.image, "/root/hello");
    assert_eq!(p.image_sha256.as_deref(), Some(sha256(&bytes).as_str()));
    assert_eq!(p.cwd, "/root");
    let f = created(&r, "/tmp/hello.txt").unwrap();
    assert_eq!((f.size, f.process_id), (Some(6), Some(1)));
    let c = &r.network.connections[0];
    assert_eq!(
        (c.protocol.as_str(), c.dst_ip.as_deref(), c.dst_port),
        ("tcp", Some("127.0.0.1"), Some(9))
    );
    assert_eq!(c.outcome, "refused");
    assert_eq!(r.summary.ip_traffic.len(), 1);
    assert_eq!(r.environment.hostname, "web-prod-03");
    assert!(r.environment.image_digest.starts_with("sha256:"));
    assert!(r.incomplete.is_empty(), "{:?}", r.incomplete);
}

#[test]
fn static_elf_python_perl_and_shebangless_scripts_run() {
    let dir = workdir();
    let st = gcc(dir.path(), "hello", &["-static"]);
    let r = analyze(&st, &["--timeout", "10"]);
    assert!(
        r.sample.file_type.contains("statically linked"),
        "{}",
        r.sample.file_type
    );
    assert_eq!(r.execution.exit_code, Some(3));

    let py = write(
        dir.path(),
        "probe.py",
        b"import os\nprint('py', os.getuid(), os.uname().nodename)\n",
    );
    let r = analyze(&py, &[]);
    assert_eq!(
        r.execution.command,
        vec!["/usr/bin/python3", "/root/probe.py"]
    );
    assert_eq!(r.output.stdout.text, "py 0 web-prod-03\n");

    let pl = write(dir.path(), "probe.pl", b"print \"perl $<\\n\";\n");
    assert_eq!(analyze(&pl, &[]).output.stdout.text, "perl 0\n");

    let sh = write(dir.path(), "noshebang", b"echo plain $HOME $USER\n");
    let r = analyze(&sh, &[]);
    assert_eq!(r.execution.command, vec!["/bin/sh", "/root/noshebang"]);
    assert_eq!(r.output.stdout.text, "plain /root root\n");
}

#[test]
fn environment_of_the_host_does_not_reach_the_sample() {
    let dir = workdir();
    let s = write(dir.path(), "env.sh", b"#!/bin/sh\nenv | sort\n");
    let out = aegis()
        .arg("analyze")
        .arg(&s)
        .arg("--json")
        .env("AEGIS_HOST_SECRET", "do-not-leak")
        .output()
        .unwrap();
    let r: aegis::report::Report = serde_json::from_slice(&out.stdout).unwrap();
    let env = &r.output.stdout.text;
    assert!(!env.contains("do-not-leak"), "{env}");
    assert!(
        env.contains("HOME=/root\n") && env.contains("HOSTNAME=web-prod-03\n"),
        "{env}"
    );
}

#[test]
fn unrunnable_samples_are_not_executed_with_a_reason() {
    let dir = workdir();
    let empty = write(dir.path(), "empty.bin", b"");
    let r = analyze(&empty, &[]);
    assert_eq!(r.execution.end_reason, EndReason::NotExecuted);
    assert!(r.execution.error.as_deref().unwrap().contains("empty"));

    let junk = write(dir.path(), "junk.dat", &[0u8, 1, 2, 0xff, 0, 7, 0]);
    let r = analyze(&junk, &[]);
    assert_eq!(r.execution.end_reason, EndReason::NotExecuted);
    assert!(r
        .execution
        .error
        .as_deref()
        .unwrap()
        .contains("unsupported file type"));

    let elf = std::fs::read(gcc(dir.path(), "hello", &[])).unwrap();
    let truncated = write(dir.path(), "cut.elf", &elf[..elf.len() / 3]);
    let r = analyze(&truncated, &[]);
    assert_eq!(r.execution.end_reason, EndReason::NotExecuted);
    assert!(
        r.execution.error.as_deref().unwrap().contains("truncated"),
        "{:?}",
        r.execution.error
    );

    let mut arm = elf.clone();
    arm[18..20].copy_from_slice(&183u16.to_le_bytes()); // e_machine = EM_AARCH64
    let foreign = write(dir.path(), "arm.elf", &arm);
    let r = analyze(&foreign, &[]);
    assert_eq!(r.execution.end_reason, EndReason::NotExecuted);
    assert_eq!(r.sample.arch, "aarch64");
    assert!(r.execution.error.as_deref().unwrap().contains("aarch64"));

    let missing = write(dir.path(), "weird.sh", b"#!/usr/bin/no-such-interpreter\n");
    let r = analyze(&missing, &[]);
    assert_eq!(r.execution.end_reason, EndReason::NotExecuted);
    assert!(
        r.execution.error.as_deref().unwrap().contains("ENOENT"),
        "{:?}",
        r.execution.error
    );
}

#[test]
fn submitted_name_is_sanitised_inside_and_kept_verbatim_in_the_report() {
    let dir = workdir();
    let s = write(dir.path(), "x.sh", b"#!/bin/sh\necho \"$0\"\n");
    let name = "../../etc/evil\u{202e}hs.sh";
    let out = aegis()
        .args(["analyze", "--json", "--name", name])
        .arg(&s)
        .output()
        .unwrap();
    let r: aegis::report::Report = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r.sample.file_name, name);
    assert_eq!(r.sample.sandbox_path, "/root/evil_hs.sh");
    assert_eq!(r.output.stdout.text, "/root/evil_hs.sh\n");
}

#[test]
fn json_mode_prints_only_the_report_and_bad_input_fails_with_one_line() {
    let dir = workdir();
    let s = write(dir.path(), "ok.sh", b"#!/bin/sh\ntrue\n");
    let out = analyze_raw(&s, &[]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("only JSON on stdout");
    assert_eq!(v["report_version"], "1.1");

    let out = aegis()
        .args(["analyze", "/nonexistent/sample"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot read sample /nonexistent/sample"),
        "{err}"
    );

    let out = aegis().args(["analyze", "/dev/zero"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "aegis: error: sample /dev/zero is not a regular file"
    );

    let out = aegis()
        .arg("analyze")
        .arg(&s)
        .args(["--memory", "1k"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap rejects the flag");
    assert!(String::from_utf8_lossy(&out.stderr).contains("below the minimum of 16m"));

    let cfg = write(
        dir.path(),
        "config.json",
        br#"{"sandbox": {"memory_limit": "huge"}}"#,
    );
    let out = aegis()
        .arg("--config")
        .arg(&cfg)
        .arg("analyze")
        .arg(&s)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config key `sandbox.memory_limit`"), "{err}");
    assert!(err.contains("\"512m\""), "{err}");
}

#[test]
fn sparse_files_beyond_the_quota_are_not_hashed_and_do_not_stall_the_analysis() {
    let dir = workdir();
    let s = write(
        dir.path(),
        "sparse.sh",
        b"#!/bin/sh\ntruncate -s 50G /tmp/huge\nrm /tmp/huge\ntruncate -s 50G /tmp/kept\n",
    );
    let r = analyze(&s, &["--timeout", "20"]);
    assert_eq!(r.execution.end_reason, EndReason::Exited);
    assert!(r.execution.duration_s < 5.0);
    let gone = r
        .files
        .deleted
        .iter()
        .find(|f| f.path == "/tmp/huge")
        .expect("deleted");
    assert_eq!(gone.size, Some(50 << 30));
    assert!(gone.sha256.is_none());
    assert!(gone.artifact_note.as_deref().unwrap().contains("sparse"));
    let kept = created(&r, "/tmp/kept").expect("created");
    assert_eq!(kept.size, Some(50 << 30));
    assert!(kept.sha256.is_none());
    assert!(kept.artifact_note.as_deref().unwrap().contains("sparse"));
}

#[test]
fn a_file_dropped_then_deleted_keeps_its_content() {
    let dir = workdir();
    let s = write(
        dir.path(),
        "dd.sh",
        b"#!/bin/sh\necho payload > /tmp/drop.bin\nrm /tmp/drop.bin\n",
    );
    let r = analyze(&s, &[]);
    let digest = sha256(b"payload\n");
    let gone = r
        .files
        .deleted
        .iter()
        .find(|f| f.path == "/tmp/drop.bin")
        .expect("deleted");
    assert_eq!(
        gone.artifact.as_deref(),
        Some(format!("dropped/{digest}").as_str())
    );
    let made = created(&r, "/tmp/drop.bin").expect("created");
    assert_eq!(made.sha256.as_deref(), Some(digest.as_str()));
    assert_eq!(made.artifact, gone.artifact);
    assert!(!made.exists_at_end);
    let kept = data_dir()
        .join("analyses")
        .join(&r.analysis_id)
        .join("artifacts")
        .join(gone.artifact.as_ref().unwrap());
    assert_eq!(std::fs::read(kept).unwrap(), b"payload\n");
}
