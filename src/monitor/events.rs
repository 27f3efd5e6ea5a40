//! What the monitor writes: one JSON object per line, in the order things happened.
//!
//! Times (`t`) are CLOCK_MONOTONIC nanoseconds, which the host shares with the sandbox. pids
//! are as the sample sees them (inside the sandbox's pid namespace).

use serde::{Deserialize, Serialize};

/// One record of the monitor's stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// The first process of the sample exists (before its first exec).
    Start { t: u64, pid: i32 },
    /// A new process (`fork`, `vfork`, `clone` without CLONE_THREAD).
    Fork { t: u64, pid: i32, ppid: i32 },
    /// A new thread in an existing process.
    Thread { t: u64, pid: i32, tid: i32 },
    /// A successful exec.
    Exec {
        t: u64,
        pid: i32,
        image: String,
        argv: Vec<String>,
        cwd: String,
        uid: Option<u32>,
        image_sha256: Option<String>,
    },
    /// An exec that failed, with the errno name.
    ExecFailed {
        t: u64,
        pid: i32,
        path: String,
        errno: String,
    },
    /// A process ended.
    Exit {
        t: u64,
        pid: i32,
        code: Option<i32>,
        signal: Option<String>,
    },
    /// A file was opened for writing; `created` when it did not exist before.
    FileWrite {
        t: u64,
        pid: i32,
        path: String,
        created: bool,
    },
    /// A file was deleted; its content as it was just before, when it could be read.
    FileDelete {
        t: u64,
        pid: i32,
        path: String,
        size: Option<u64>,
        sha256: Option<String>,
        artifact: Option<String>,
        note: Option<String>,
    },
    FileRename {
        t: u64,
        pid: i32,
        from: String,
        to: String,
    },
    /// chmod that set an execute bit.
    FileExecutable {
        t: u64,
        pid: i32,
        path: String,
        mode: u32,
    },
    /// utime/utimes/utimensat on a file.
    FileTimes { t: u64, pid: i32, path: String },
    /// A network system call.
    Net {
        t: u64,
        pid: i32,
        op: String,
        protocol: String,
        ip: Option<String>,
        port: Option<u16>,
        path: Option<String>,
        outcome: String,
    },
    /// Something of note (anti-debugging, mounts, privilege changes, ...).
    Note {
        t: u64,
        pid: i32,
        kind: String,
        detail: String,
    },
    /// Records of a category left out because its cap was reached (a running total).
    Dropped { category: String, count: u64 },
    /// The monitor saw the last process end.
    Done { t: u64 },
}

/// Reads an event stream, skipping a torn last line (the monitor may be killed mid-write).
pub fn parse_stream(text: &str) -> (Vec<Event>, usize) {
    let mut events = Vec::new();
    let mut bad = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str(line) {
            Ok(ev) => events.push(ev),
            Err(_) => bad += 1,
        }
    }
    (events, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_round_trips_and_tolerates_a_torn_line() {
        let evs = [
            Event::Start { t: 1, pid: 1 },
            Event::Exec {
                t: 2,
                pid: 2,
                image: "/bin/sh".into(),
                argv: vec!["sh".into(), "-c".into(), "x".into()],
                cwd: "/root".into(),
                uid: Some(0),
                image_sha256: None,
            },
        ];
        let mut text: String = evs
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect();
        assert!(text.contains(r#""ev":"exec""#));
        text.push_str(r#"{"ev":"exit","t":3,"pi"#);
        let (parsed, bad) = parse_stream(&text);
        assert_eq!(parsed, evs.to_vec());
        assert_eq!(bad, 1);
    }
}
