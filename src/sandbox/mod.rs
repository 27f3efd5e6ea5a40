//! The native sandbox: host-side privileged set-up and the supervisor process that owns one
//! sandbox from its first mount to its last file collected.
//!
//! The orchestrator writes a [`SandboxSpec`] into the run directory and starts
//! `aegis sandbox-exec --spec <file>` (the supervisor). The supervisor works in a private mount
//! namespace, so every mount it makes disappears with it, even when it is killed; it writes a
//! [`SandboxOutcome`] next to the spec and exits.

pub mod cgroup;
pub mod collect;
pub mod guest_view;
pub mod kernel;
pub mod seccomp;
mod supervisor;
mod wine;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Limits;
use crate::netsim::NetworkSpec;
pub use cgroup::CgroupStats;
pub use collect::{CollectedFile, FileState};
pub use supervisor::supervise;

/// Everything the supervisor needs, written by the orchestrator as `spec.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub analysis_id: String,
    pub run_dir: PathBuf,
    /// The guest image's root file system (read-only lower layer).
    pub rootfs: PathBuf,
    pub limits: Limits,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub hostname: String,
    /// Where the sample goes inside the guest.
    pub sample_guest_path: String,
    pub artifact_max_bytes: u64,
    /// How much of stdout and stderr is kept (each).
    pub output_keep_bytes: u64,
    /// Loopback only, or the simulated internet.
    pub network: NetworkSpec,
    /// Set for a Windows sample run under Wine.
    #[serde(default)]
    pub wine: Option<WineSandbox>,
}

/// What the supervisor does differently for a run under Wine (see [`crate::windows`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WineSandbox {
    /// Guest path of the launcher, placed like the sample, and its text.
    pub launcher_path: String,
    pub launcher_script: String,
    /// Guest path of the prefix whose registry hives are copied out after the run.
    pub prefix: String,
    /// The hive file names.
    pub hives: Vec<String>,
    /// At the timeout the launcher gets SIGTERM and this long to stop the Windows processes
    /// and let wineserver save the registry; then everything left is killed.
    pub stop_grace_s: u64,
    /// Most bytes of wineserver's trace kept in `wine/server.log`.
    pub log_keep_bytes: u64,
}

/// What the supervisor saw, written as `outcome.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SandboxOutcome {
    /// Monotonic ns when the sample was released.
    pub started_ns: u64,
    pub ended_ns: u64,
    pub timed_out: bool,
    /// The run was stopped because the pids limit was reached.
    pub pids_stopped: bool,
    pub monitor_exit_code: Option<i32>,
    pub monitor_signal: Option<String>,
    /// Set-up inside the sandbox failed before the sample started.
    pub setup_error: Option<String>,
    pub cgroup_version: String,
    pub cgroup: CgroupStats,
    pub disk_full: bool,
    pub stdout: Captured,
    pub stderr: Captured,
    pub files: Vec<CollectedFile>,
    /// Entries of the writable layer left out past the collection cap.
    pub files_dropped: u64,
    /// Problems while collecting (the report lists them as incomplete).
    pub collection_errors: Vec<String>,
    /// Add to the times above to get the orchestrator's monotonic clock: 0 where the sandbox
    /// shares the host's kernel; a user-space kernel (gVisor) keeps its own clock.
    #[serde(default)]
    pub clock_offset_ns: i64,
    /// wineserver's trace (Windows runs only).
    #[serde(default)]
    pub wine_log: Option<Captured>,
    /// The hives the run changed, copied from the writable layer (Windows runs only).
    #[serde(default)]
    pub wine_hives: Vec<String>,
}

impl SandboxOutcome {
    /// The run was ended from outside the sample: at the timeout, at the pids limit, or by
    /// the memory limit's OOM kill (which, under gVisor, takes the whole sandbox and the
    /// monitor with it). Processes without a recorded end were killed then.
    pub fn ended_by_force(&self) -> bool {
        self.timed_out || self.pids_stopped || self.cgroup.oom_kills > 0
    }
}

/// One output stream: how much was written, how much was kept in `<name>.bin`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Captured {
    pub bytes: u64,
    pub kept: u64,
}

/// Files of a run directory.
#[derive(Debug, Clone)]
pub struct RunLayout {
    pub dir: PathBuf,
}

impl RunLayout {
    pub fn new(dir: &Path) -> Self {
        RunLayout {
            dir: dir.to_path_buf(),
        }
    }
    pub fn spec(&self) -> PathBuf {
        self.dir.join("spec.json")
    }
    pub fn outcome(&self) -> PathBuf {
        self.dir.join("outcome.json")
    }
    pub fn events(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }
    pub fn sample(&self) -> PathBuf {
        self.dir.join("sample.bin")
    }
    pub fn owner(&self) -> PathBuf {
        self.dir.join("owner")
    }
    pub fn artifacts(&self) -> PathBuf {
        self.dir.join("artifacts")
    }
    pub fn dropped(&self) -> PathBuf {
        self.artifacts().join("dropped")
    }
    /// The packet capture of the simulated internet.
    pub fn pcap(&self) -> PathBuf {
        self.artifacts().join(crate::netsim::PCAP_NAME)
    }
    /// What the simulated internet recorded.
    pub fn network_records(&self) -> PathBuf {
        self.dir.join(crate::netsim::RECORDS_NAME)
    }
    pub fn stream(&self, name: &str) -> PathBuf {
        self.artifacts().join(format!("{name}.bin"))
    }
    /// Mount point of the size-limited tmpfs (writable layer, /tmp, /run).
    pub fn scratch(&self) -> PathBuf {
        self.dir.join("scratch")
    }
    /// Mount point of the overlay: the guest's root.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
    /// wineserver's trace and the saved hives of a Windows run.
    pub fn wine(&self) -> PathBuf {
        self.dir.join("wine")
    }
}

/// Errors of the supervisor.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot read sandbox spec {path}: {detail}")]
    Spec { path: PathBuf, detail: String },
    #[error("{step}: {source}")]
    Kernel {
        step: &'static str,
        source: nix::Error,
    },
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error(transparent)]
    Network(#[from] crate::netsim::NetsimError),
}
