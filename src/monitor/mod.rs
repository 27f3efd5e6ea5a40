//! The behaviour monitor. It runs *inside* the sandbox as its init process (pid 1), starts
//! the sample under ptrace and records what the sample does.
//!
//! Only the calls the seccomp policy marks `Trace` stop the sample (`SECCOMP_RET_TRACE` with
//! `PTRACE_O_TRACESECCOMP`); fork, clone and exec are followed through ptrace options; every
//! other call runs at native speed. The monitor needs nothing from the host but the fds it is
//! handed, so the same code can run as the init of a container started by another backend.

pub mod events;
pub mod files;
pub mod sink;
pub mod syscalls;
pub mod tracee;
mod tracer;

use std::ffi::CString;
use std::fs::File;
use std::os::fd::OwnedFd;

pub mod container;

pub use tracer::{run, MonitorEnd};

/// What the monitor needs to start and watch the sample.
pub struct MonitorSetup {
    /// argv of the sample; `argv[0]` is the path executed.
    pub argv: Vec<CString>,
    /// The sample's whole environment (nothing of the host's).
    pub env: Vec<CString>,
    pub cwd: CString,
    /// stdin, stdout, stderr of the sample.
    pub stdio: [OwnedFd; 3],
    /// Where the event stream goes (outside the sandbox's view).
    pub events: File,
    /// Directory for dropped-file artifacts of deleted files (outside the sandbox's view).
    pub artifacts: OwnedFd,
    pub artifact_max_bytes: u64,
    /// Files larger than this are not hashed (they can only be sparse: the disk quota).
    pub hash_max_bytes: u64,
    /// The compiled seccomp program for the sample.
    pub filter: Vec<libc::sock_filter>,
    /// When the monitor itself ends the run (a container backend, where nothing outside the
    /// sandbox can stop the sample without also stopping the monitor).
    pub stop: StopPolicy,
    /// Empty the sample's capability sets before its exec (the monitor keeps its own).
    pub drop_capabilities: bool,
    /// Handed to the first process as fd 4 (a Windows run's launcher gives it to
    /// wineserver for its trace); `None` leaves fd 4 closed.
    pub trace: Option<OwnedFd>,
}

/// Limits the monitor enforces itself: past the deadline, or when the sample holds
/// `max_tasks` tasks (the monitor counted in), every process of the sample is killed.
#[derive(Debug, Clone, Copy, Default)]
pub struct StopPolicy {
    /// Monotonic ns after which the sample is killed.
    pub deadline_ns: Option<u64>,
    pub max_tasks: Option<u64>,
}

/// Monotonic nanoseconds, the clock shared by monitor and host.
pub fn now_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec().unsigned_abs() * 1_000_000_000 + t.tv_nsec().unsigned_abs());
    ts.unwrap_or(0)
}
