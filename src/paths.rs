//! Where the product keeps its files under the data directory.
//!
//! ```text
//! <data-dir>/images/<name>/rootfs      read-only guest root file system (overlay lower layer)
//! <data-dir>/images/<name>/image.json  name, digest, build time
//! <data-dir>/runs/<analysis-id>/       scratch of a running analysis (removed at its end)
//! <data-dir>/analyses/<analysis-id>/   report.json and artifacts of a finished analysis
//! ```

use std::path::{Path, PathBuf};

/// The data directory and the layout below it.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    /// `--data-dir`, else `AEGIS_DATA_DIR` (clap fills it in), else the default for this user.
    pub fn default_root() -> PathBuf {
        if nix::unistd::geteuid().is_root() {
            return PathBuf::from("/var/lib/aegis");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        home.join(".local/share/aegis")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }

    pub fn run(&self, analysis_id: &str) -> PathBuf {
        self.runs().join(analysis_id)
    }

    pub fn analyses(&self) -> PathBuf {
        self.root.join("analyses")
    }

    pub fn analysis(&self, analysis_id: &str) -> PathBuf {
        self.analyses().join(analysis_id)
    }

    /// Where the service keeps the submitted bytes of an analysis until it ends.
    pub fn submitted_sample(&self, analysis_id: &str) -> PathBuf {
        self.root.join("samples").join(analysis_id)
    }
}
