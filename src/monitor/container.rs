//! The monitor as the init (pid 1) of a container started by a container engine (the docker
//! backend): `aegis container-init`. Nothing outside the container can stop the sample
//! without stopping the monitor too, so the monitor enforces the timeout and the pids limit
//! itself, and collects what the sample left in the container's tmpfs mounts (`/tmp`, `/run`)
//! before they vanish with the container.
//!
//! In the container, by the backend, before the start:
//! - `/.aegis/aegis`: this binary; `/.aegis/spec.json`: a [`ContainerSpec`];
//! - `/.aegis/out`: owned by an unprivileged uid, mode 0700. Only the monitor reaches it
//!   (`CAP_DAC_OVERRIDE`, which the sample never has); it holds the event stream, the copies
//!   of dropped files and `outcome.json` (a [`SandboxOutcome`]) for the backend to collect.
//!
//! The sample's stdout and stderr are the container's: the backend reads them from the engine.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{now_ns, MonitorSetup, StopPolicy};
use crate::sandbox::collect::{collect_fresh, WalkSettings};
use crate::sandbox::{seccomp, SandboxOutcome};

/// Where the backend puts the spec.
pub const SPEC_PATH: &str = "/.aegis/spec.json";
/// Where the monitor writes what the backend collects.
pub const OUT_DIR: &str = "/.aegis/out";
/// The directory of this binary and the spec inside the container.
pub const AEGIS_DIR: &str = "/.aegis";
/// Owner of [`OUT_DIR`]: the sample (uid 0 without capabilities) cannot enter it.
pub const OUT_OWNER: u32 = 65534;
/// The tmpfs mounts of the container that start empty; the monitor collects them.
pub const FRESH_DIRS: [&str; 2] = ["/tmp", "/run"];

/// What the monitor inside a container needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub timeout_ms: u64,
    /// The pids limit of the container: the monitor stops the sample when it is reached.
    pub pids: u64,
    pub artifact_max_bytes: u64,
    /// The disk limit (size of each tmpfs): larger files can only be sparse.
    pub disk_bytes: u64,
    pub sample_guest_path: String,
}

/// Runs inside the container as its init. Returns the exit status.
pub fn init() -> i32 {
    if nix::unistd::getpid().as_raw() != 1 {
        eprintln!("aegis: error: container-init runs only as the init (pid 1) of a container");
        return 2;
    }
    let out = Path::new(OUT_DIR);
    let mut outcome = SandboxOutcome::default();
    match run(out, &mut outcome) {
        Ok(()) => {}
        Err(e) => outcome.setup_error = Some(e),
    }
    let text = serde_json::to_vec_pretty(&outcome).unwrap_or_default();
    match fs::write(out.join("outcome.json"), text) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("aegis: error: write {OUT_DIR}/outcome.json: {e}");
            1
        }
    }
}

fn run(out: &Path, outcome: &mut SandboxOutcome) -> Result<(), String> {
    let spec = read_spec()?;
    let started = now_ns();
    let setup = monitor_setup(&spec, out, started)?;

    outcome.started_ns = started;
    let end = super::run(setup);
    outcome.ended_ns = now_ns();
    outcome.monitor_exit_code = Some(end.code);
    outcome.timed_out = end.timed_out;
    outcome.pids_stopped = end.pids_stopped;

    outcome.disk_full = FRESH_DIRS.iter().any(|d| nearly_full(Path::new(d)));
    let settings = WalkSettings {
        rootfs: None,
        artifact_max_bytes: spec.artifact_max_bytes,
        disk_bytes: spec.disk_bytes,
        sample_guest_path: spec.sample_guest_path.clone(),
        placed_sample: out.join("no-sample-here"),
        dropped_dir: out.join("dropped"),
    };
    let dirs: Vec<(&Path, String)> = FRESH_DIRS
        .iter()
        .map(|d| (Path::new(*d), format!("{d}/")))
        .collect();
    let dirs: Vec<(&Path, &str)> = dirs.iter().map(|(p, s)| (*p, s.as_str())).collect();
    collect_fresh(settings, &dirs, outcome);
    Ok(())
}

fn read_spec() -> Result<ContainerSpec, String> {
    let text = fs::read(SPEC_PATH).map_err(|e| format!("read {SPEC_PATH}: {e}"))?;
    // The sample has no business reading its own analysis's settings.
    let _ = fs::remove_file(SPEC_PATH);
    serde_json::from_slice(&text).map_err(|e| format!("parse {SPEC_PATH}: {e}"))
}

fn monitor_setup(spec: &ContainerSpec, out: &Path, started: u64) -> Result<MonitorSetup, String> {
    let events = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(out.join("events.jsonl"))
        .map_err(|e| format!("open {OUT_DIR}/events.jsonl: {e}"))?;
    let dropped = out.join("dropped");
    fs::create_dir_all(&dropped).map_err(|e| format!("mkdir {}: {e}", dropped.display()))?;
    let artifacts: OwnedFd = File::open(&dropped)
        .map_err(|e| format!("open {}: {e}", dropped.display()))?
        .into();
    let null: OwnedFd = File::open("/dev/null")
        .map_err(|e| format!("open /dev/null: {e}"))?
        .into();
    let stdout = nix::unistd::dup(1).map_err(|e| format!("dup stdout: {e}"))?;
    let stderr = nix::unistd::dup(2).map_err(|e| format!("dup stderr: {e}"))?;
    // SAFETY: dup returned fresh descriptors that nothing else owns.
    let (stdout, stderr) = unsafe {
        use std::os::fd::FromRawFd;
        (OwnedFd::from_raw_fd(stdout), OwnedFd::from_raw_fd(stderr))
    };
    Ok(MonitorSetup {
        argv: cstrings(&spec.argv)?,
        env: cstrings(&spec.env)?,
        cwd: CString::new(spec.cwd.clone()).map_err(|e| e.to_string())?,
        stdio: [null, stdout, stderr],
        events,
        artifacts,
        artifact_max_bytes: spec.artifact_max_bytes,
        hash_max_bytes: spec.disk_bytes,
        filter: seccomp::compile(),
        stop: StopPolicy {
            deadline_ns: Some(started.saturating_add(spec.timeout_ms.saturating_mul(1_000_000))),
            max_tasks: Some(spec.pids),
        },
        drop_capabilities: true,
        trace: None,
    })
}

fn cstrings(items: &[String]) -> Result<Vec<CString>, String> {
    items
        .iter()
        .map(|s| CString::new(s.as_str()).map_err(|_| format!("NUL byte in {s:?}")))
        .collect()
}

/// The quota was reached when (almost) nothing is left on the tmpfs.
fn nearly_full(dir: &Path) -> bool {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => s.blocks_available().saturating_mul(s.fragment_size()) < (1 << 20),
        Err(_) => false,
    }
}
