//! Windows samples under Wine: the guest's Windows identity, how each kind of Windows sample
//! is started ([`launch`]), and where one run's Wine evidence lies ([`WineRun`], [`run`]).
//!
//! A Windows sample runs in the `windows` guest image (the Linux image plus Debian's Wine and
//! a prefix prepared at build time). The monitor starts [`LAUNCHER`], which starts
//! wineserver with its request trace on a pipe the supervisor drains into
//! `<run_dir>/wine/server.log`, then the sample through Wine's loader; at the end it stops
//! every Windows process so that wineserver exits by itself and saves the registry hives,
//! which the supervisor copies to `<run_dir>/wine/hives/`.

pub mod launch;
pub mod run;

use std::path::PathBuf;

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
