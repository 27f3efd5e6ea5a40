//! An interrupted or killed `aegis analyze` leaves nothing behind, or the next start removes it.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use aegis::sandbox::cgroup::{Cgroup, Hierarchy};
use support::*;

/// Waits until the run of the `aegis` process `owner` is under way and returns its id. The run
/// is found by its owner record, so tests running side by side never take each other's run.
fn wait_for_run(owner: u32) -> String {
    let runs = data_dir().join("runs");
    let start = Instant::now();
    loop {
        for entry in std::fs::read_dir(&runs).into_iter().flatten().flatten() {
            let owned = std::fs::read_to_string(entry.path().join("owner"))
                .is_ok_and(|o| o.split_whitespace().next() == Some(owner.to_string().as_str()));
            if owned && entry.path().join("events.jsonl").exists() {
                return entry.file_name().to_string_lossy().into_owned();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no run directory appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sandbox_pids(id: &str) -> Vec<i32> {
    let h = Hierarchy::detect().unwrap();
    Cgroup::open(&h, id).pids()
}

fn spinner(dir: &Path) -> std::path::PathBuf {
    write(
        dir,
        "spin.sh",
        b"#!/bin/sh\n(setsid sh -c 'while :; do :; done' &)\nwhile :; do sleep 1; done\n",
    )
}

/// Starts `aegis analyze` of a sample that never ends and waits until its sandbox runs.
fn start_spinning_analysis(dir: &Path) -> (std::process::Child, String) {
    // Make sure the image exists first, so the run starts at once.
    analyze(&write(dir, "t.sh", b"#!/bin/sh\ntrue\n"), &[]);
    let child = aegis()
        .arg("analyze")
        .arg(spinner(dir))
        .args(["--timeout", "60"])
        .spawn()
        .unwrap();
    let id = wait_for_run(child.id());
    std::thread::sleep(Duration::from_millis(500));
    assert!(!sandbox_pids(&id).is_empty(), "the sandbox is running");
    (child, id)
}

#[test]
fn ctrl_c_tears_the_sandbox_down_and_exits_130() {
    let dir = workdir();
    let (mut child, id) = start_spinning_analysis(dir.path());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_no_leftovers(&id);
}

#[test]
fn kill_9_of_aegis_kills_the_sandbox_and_the_next_start_cleans_up() {
    let dir = workdir();
    let (mut child, id) = start_spinning_analysis(dir.path());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // The sandbox dies with its orchestrator (parent-death signals, pid namespace).
    let start = Instant::now();
    while !sandbox_pids(&id).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "sandbox processes outlived aegis"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // What a killed run leaves (its run directory, its empty cgroup) goes at the next start.
    analyze(&write(dir.path(), "next.sh", b"#!/bin/sh\ntrue\n"), &[]);
    assert_no_leftovers(&id);
}
