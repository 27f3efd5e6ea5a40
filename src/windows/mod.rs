//! Windows samples under Wine.
//!
//! Running them ([`launch`], [`run`]): a Windows sample runs in the `windows` guest image (the
//! Linux image plus Debian's Wine and a prefix prepared at build time). The monitor starts
//! [`LAUNCHER`], which starts wineserver with its request trace on a pipe the supervisor
//! drains into `<run_dir>/wine/server.log`, then the sample through Wine's loader; at the end
//! it stops every Windows process so that wineserver exits by itself and saves the registry
//! hives, which the supervisor copies to `<run_dir>/wine/hives/`.
//!
//! Reading what they did (the other modules): what wineserver's request trace and the
//! prefix's registry hives say, turned into the report's Windows sections (registry, mutexes,
//! services, Windows paths and process names, Wine detection). The orchestrator gathers, per
//! run, what [`WineRun`] names, then calls [`apply_with_relay`] on the report the Linux
//! monitor's events produced:
//! 1. wineserver started first, in the sandbox, as `wineserver -f -d2` with the sample's
//!    `WINEPREFIX` and its stderr in a file (Wine drops debug output sent to `/dev/null`): the
//!    `-d2` registry dump lines carry full key paths and values, `-d1` alone is not enough.
//! 2. At the end, wineserver saves the registry when it exits by itself or on SIGTERM, not on
//!    SIGKILL: `changed_hives` then holds `system.reg`, `user.reg` and `userdef.reg` as they
//!    ended, and `server_exited` says it happened. `original_hives` holds the image's.
//! 3. With `RelayInclude` = `kernel32.GetProcAddress;kernelbase.GetProcAddress` under
//!    `HKCU\Software\Wine\Debug` in the image's prefix and `WINEDEBUG=+relay` for the sample,
//!    its stderr carries the lookups of `wine_*` exports ([`relay`]); that file goes to
//!    [`apply_with_relay`], and [`relay::strip_debug_lines`] gives the sample's own stderr back.
//!
//! Nothing in the reading fails: a missing or damaged input becomes an `incomplete[]` entry.

pub mod activity;
pub mod escape;
pub mod fields;
pub mod hives;
mod ids;
pub mod launch;
pub mod lines;
pub mod paths;
pub mod policy;
pub mod reg;
pub mod registry;
pub mod relay;
pub mod run;
pub mod trace;

use std::path::PathBuf;

pub use activity::{apply, apply_with_relay};
pub use launch::*;

/// Where one Windows run's evidence lies, for the code that builds the report's registry,
/// mutex, service and Windows-path sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WineRun {
    /// The prefix inside the guest (`/root/.wine`): guest paths below it are `C:\` and the
    /// registry files.
    pub prefix: String,
    /// Host directory holding the image's hives as built (the overlay's lower layer).
    pub original_hives: PathBuf,
    /// Host directory holding the hives as the run ended (all three: the ones the run did not
    /// change are the image's; when `server_exited` is false they are not the final state).
    pub changed_hives: PathBuf,
    /// wineserver's request trace (`wineserver -f -d2`), host path.
    pub server_log: PathBuf,
    /// wineserver exited by itself (so it saved the registry) before the sandbox ended.
    pub server_exited: bool,
}
