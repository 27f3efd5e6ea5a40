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
//!    client) or on SIGTERM, not on SIGKILL: `hives_after` then holds `system.reg`, `user.reg`
//!    and `userdef.reg` as they ended (an overlay's upper dir holds only the changed ones: fill
//!    in the others from the image). `hives_before` holds the image's.
//! 3. Optional: with `RelayInclude` = `kernel32.GetProcAddress;kernelbase.GetProcAddress` under
//!    `HKCU\Software\Wine\Debug` in the image's prefix and `WINEDEBUG=+relay` for the sample,
//!    its stderr carries the lookups of `wine_*` exports ([`relay`]); pass that file as
//!    `relay_log`, and [`relay::strip_debug_lines`] gives the sample's own stderr back.
//!
//! Nothing here fails: a missing or damaged input becomes an `incomplete[]` entry.

pub mod activity;
pub mod escape;
pub mod fields;
pub mod hives;
pub mod lines;
pub mod paths;
pub mod reg;
pub mod relay;
pub mod trace;

use std::path::PathBuf;

pub use activity::apply;

/// Where one run's Wine evidence is, as the orchestrator collected it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WineRun {
    /// The prefix as the sandbox saw it, e.g. `/home/analyst/.wine` (maps guest paths to `C:\`).
    pub prefix_guest_path: String,
    /// wineserver's request trace (`wineserver -f -d2` stderr), on the host:
    /// `<run_dir>/wine/server.log`.
    pub server_log: PathBuf,
    /// Host directory with the image's original `system.reg`, `user.reg`, `userdef.reg`.
    pub hives_before: PathBuf,
    /// Host directory with the hives as wineserver saved them at the end of the run.
    pub hives_after: PathBuf,
    /// The stderr of the sample's Wine processes when run with `WINEDEBUG=+relay` and the
    /// prefix's `RelayInclude` (see [`relay`]); `None` when relay tracing was not on.
    pub relay_log: Option<PathBuf>,
}
