//! The service across its own death and restarts: `kill -9` mid-analysis, SIGTERM, retention.

mod common;

use std::path::Path;
use std::time::Duration;

use common::Sandbox;
use serde_json::json;

fn transitions(sandbox: &Sandbox, id: &str) -> Vec<(String, Option<String>)> {
    let db = sandbox.db();
    let mut stmt = db
        .prepare("SELECT status, detail FROM transitions WHERE analysis_id = ?1 ORDER BY rowid")
        .unwrap();
    stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn statuses(sandbox: &Sandbox, id: &str) -> Vec<String> {
    transitions(sandbox, id).into_iter().map(|t| t.0).collect()
}

fn runs_left(sandbox: &Sandbox) -> usize {
    std::fs::read_dir(sandbox.data().join("runs")).map_or(0, |d| d.count())
}

/// Processes whose command line names this data directory (a supervisor is started as
/// `aegis sandbox-exec --spec <data-dir>/runs/<id>/spec.json`).
fn processes_using(data: &Path) -> Vec<String> {
    let needle = format!("{}/runs/", data.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle))
        .collect()
}

/// Whether a cgroup of this analysis still exists in any hierarchy.
fn cgroup_exists(id: &str) -> bool {
    [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/unified",
    ]
    .iter()
    .any(|root| Path::new(root).join("aegis").join(id).exists())
}

#[test]
fn kill_9_mid_analysis_requeues_once_then_fails_interrupted() {
    let sandbox = Sandbox::new();

    // First death: the job is re-queued and, this time, completes.
    let server = sandbox.serve(json!({}), 1);
    let once = server.submit("#!/bin/sh\nsleep 2\necho survived\n", "once.sh", json!({}));
    server.wait_for(&once, &["running"], Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    server.kill9();
    assert_eq!(statuses(&sandbox, &once), ["queued", "running"]);
    // The supervisor dies with the service (it is started with a parent-death signal).
    let started = std::time::Instant::now();
    while !processes_using(&sandbox.data()).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            processes_using(&sandbox.data())
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let server = sandbox.serve(json!({}), 1);
    let r = server.wait_terminal(&once);
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["report"]["output"]["stdout"]["text"], "survived\n");
    let item = &server.get("/analyses").json()["analyses"][0];
    assert_eq!(item["attempts"], 2);
    let t = transitions(&sandbox, &once);
    assert_eq!(
        t.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
        ["queued", "running", "queued", "running", "completed"]
    );
    assert_eq!(
        t[2].1.as_deref(),
        Some("the service stopped while it was running")
    );

    // Twice killed: failed as interrupted, never left running.
    let twice = server.submit(
        "#!/bin/sh\nsleep 30\n",
        "twice.sh",
        json!({"analysis_timeout": 60}),
    );
    server.wait_for(&twice, &["running"], Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    server.kill9();
    let server = sandbox.serve(json!({}), 1);
    server.wait_for(&twice, &["running"], Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    server.kill9();
    let server = sandbox.serve(json!({}), 1);
    let r = server.result(&twice);
    assert_eq!(r["status"], "failed", "{r}");
    assert!(
        r["error"].as_str().unwrap().starts_with("interrupted"),
        "{r}"
    );
    assert!(r["ended_at"].is_string());
    assert_eq!(
        statuses(&sandbox, &twice),
        ["queued", "running", "queued", "running", "failed"]
    );

    // Orphaned sandboxes were cleaned before new work; a new submission works.
    assert_eq!(runs_left(&sandbox), 0);
    assert!(!cgroup_exists(&twice));
    assert_eq!(processes_using(&sandbox.data()), Vec::<String>::new());
    assert!(sandbox
        .log()
        .contains("removed leftovers of an interrupted run"));
    let fresh = server.submit("#!/bin/sh\necho fresh\n", "fresh.sh", json!({}));
    assert_eq!(server.wait_terminal(&fresh)["status"], "completed");
    let h = server.get("/health").json();
    assert_eq!(
        (
            h["queue"]["queued"].as_u64(),
            h["queue"]["running"].as_u64()
        ),
        (Some(0), Some(0))
    );
}

#[test]
fn sigterm_refuses_new_work_lets_running_finish_and_exits_zero() {
    let sandbox = Sandbox::new();
    let server = sandbox.serve(json!({"service": {"shutdown_grace": 30}}), 1);
    let running = server.submit("#!/bin/sh\nsleep 1\necho finished\n", "r.sh", json!({}));
    let waiting = server.submit("#!/bin/sh\necho later\n", "w.sh", json!({}));
    server.wait_for(&running, &["running"], Duration::from_secs(60));
    server.sigterm();
    std::thread::sleep(Duration::from_millis(100));
    let message = server
        .post_json("/analyze", &json!({"file_data": "aGk="}))
        .assert_error(503, "shutting_down");
    assert!(message.contains("shutting down"), "{message}");
    let h = server.get("/health");
    assert_eq!(h.status, 503);
    assert_eq!(
        h.json()["reasons"][0],
        "shutting down: no new analyses are accepted"
    );
    let (status, took) = server.wait_exit(Duration::from_secs(40));
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(10), "{took:?}");

    let db = sandbox.db();
    let state = |id: &str| -> (String, i64) {
        db.query_row(
            "SELECT status, attempts FROM analyses WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    assert_eq!(state(&running), ("completed".to_string(), 1));
    assert_eq!(state(&waiting), ("queued".to_string(), 0));
    assert_eq!(runs_left(&sandbox), 0);
}

#[test]
fn sigterm_cancels_what_outlives_the_grace_period_cleanly() {
    let sandbox = Sandbox::new();
    let server = sandbox.serve(json!({"service": {"shutdown_grace": 1}}), 1);
    let long = server.submit(
        "#!/bin/sh\nsleep 60\n",
        "long.sh",
        json!({"analysis_timeout": 120}),
    );
    server.wait_for(&long, &["running"], Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    server.sigterm();
    let (status, took) = server.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Torn down, recorded as interrupted once: queued again for the next start.
    assert_eq!(statuses(&sandbox, &long), ["queued", "running", "queued"]);
    assert_eq!(runs_left(&sandbox), 0);
    assert!(!cgroup_exists(&long));
}

#[test]
fn retention_removes_expired_rows_and_files_together() {
    let sandbox = Sandbox::new();
    let server = sandbox.serve(json!({"service": {"retention_days": 30}}), 1);
    let old = server.submit("#!/bin/sh\necho old > /tmp/old.txt\n", "old.sh", json!({}));
    let recent = server.submit("#!/bin/sh\necho new\n", "new.sh", json!({}));
    server.wait_terminal(&old);
    server.wait_terminal(&recent);
    server.sigterm();
    server.wait_exit(Duration::from_secs(40));

    let long_ago = "2000-01-01T00:00:00.000Z";
    sandbox
        .db()
        .execute(
            "UPDATE analyses SET ended_at = ?2 WHERE id = ?1",
            [&old, long_ago],
        )
        .unwrap();
    let server = sandbox.serve(json!({"service": {"retention_days": 30}}), 1);
    let started = std::time::Instant::now();
    while server.get(&format!("/results/{old}")).status != 404 {
        assert!(started.elapsed() < Duration::from_secs(10), "not expired");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!sandbox.data().join("analyses").join(&old).exists());
    assert!(!sandbox.data().join("samples").join(&old).exists());
    assert_eq!(statuses(&sandbox, &old), Vec::<String>::new());
    assert_eq!(server.result(&recent)["status"], "completed");
    assert!(sandbox
        .data()
        .join("analyses")
        .join(&recent)
        .join("report.json")
        .is_file());
}
