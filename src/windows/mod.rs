//! Windows samples under Wine: what wineserver's request trace and the prefix's registry hives
//! say, turned into the report's Windows sections (registry, mutexes, services, Windows paths and
//! process names, Wine detection).

pub mod apply;
pub mod escape;
pub mod fields;
pub mod hives;
pub mod lines;
pub mod paths;
pub mod reg;
pub mod relay;
pub mod trace;

use std::path::PathBuf;

pub use apply::apply;

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
