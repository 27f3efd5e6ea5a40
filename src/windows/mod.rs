//! Windows samples under Wine: what wineserver's request trace and the prefix's registry hives
//! say, turned into the report's Windows sections (registry, mutexes, services, Windows paths and
//! process names, Wine detection).
//!
//! The orchestrator gathers, per run, what [`WineRun`] names, then calls [`apply`] on the report
//! the Linux monitor's events produced:
//! 1. wineserver started first, in the sandbox, as `wineserver -f -d2` with the sample's
//!    `WINEPREFIX` and its stderr in a file (Wine drops debug output sent to `/dev/null`): the
//!    `-d2` registry dump lines carry full key paths and values, `-d1` alone is not enough.
//! 2. At the end, wineserver saves the registry when it exits by itself (3 s after its last
//!    client) or on SIGTERM, not on SIGKILL: `changed_hives` then holds `system.reg`,
//!    `user.reg` and `userdef.reg` as they ended (an overlay's upper dir holds only the changed
//!    ones: fill in the others from the image), and `server_exited` says it happened.
//!    `original_hives` holds the image's.
//! 3. Optional: with `RelayInclude` = `kernel32.GetProcAddress;kernelbase.GetProcAddress` under
//!    `HKCU\Software\Wine\Debug` in the image's prefix and `WINEDEBUG=+relay` for the sample,
//!    its stderr carries the lookups of `wine_*` exports ([`relay`]); pass that file to
//!    [`apply_with_relay`], and [`relay::strip_debug_lines`] gives the sample's own stderr back.
//!
//! Nothing here fails: a missing or damaged input becomes an `incomplete[]` entry.

pub mod activity;
pub mod escape;
pub mod fields;
pub mod hives;
pub mod lines;
pub mod paths;
pub mod policy;
pub mod reg;
pub mod registry;
pub mod relay;
pub mod trace;

use std::path::PathBuf;

pub use activity::{apply, apply_with_relay};

/// Where one Windows run's evidence lies, for the code that builds the report's registry,
/// mutex, service and Windows-path sections. (The same type as on the `issue-wine` branch.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WineRun {
    /// The prefix inside the guest (`/root/.wine`): guest paths below it are `C:\` and the
    /// registry files.
    pub prefix: String,
    /// Host directory holding the image's hives as built (the overlay's lower layer).
    pub original_hives: PathBuf,
    /// Host directory holding the hives wineserver saved at the end of the run (all three).
    pub changed_hives: PathBuf,
    /// wineserver's request trace (`wineserver -f -d2`), host path.
    pub server_log: PathBuf,
    /// wineserver exited by itself (so it saved the registry) before the sandbox ended.
    pub server_exited: bool,
}
