//! One Windows run's evidence on the host: where the supervisor put it, and what is missing.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{WineRun, PREFIX};

impl WineRun {
    /// The paths of a run in `run_dir` over the image whose root file system is `rootfs`.
    pub fn new(rootfs: &Path, run_dir: &Path) -> WineRun {
        let log = server_log(run_dir);
        WineRun {
            prefix: PREFIX.to_string(),
            original_hives: rootfs.join(PREFIX.trim_start_matches('/')),
            changed_hives: hives_dir(run_dir),
            server_exited: ends_with_server_exit(&log),
            server_log: log,
        }
    }
}

/// wineserver's last words on a graceful exit (`-d` traces print them).
const SERVER_EXIT_LINE: &str = "wineserver: exiting";

/// The trace ends with wineserver's exit line.
fn ends_with_server_exit(log: &Path) -> bool {
    let Ok(mut file) = fs::File::open(log) else {
        return false;
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let mut tail = Vec::new();
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(4096)));
    let _ = file.read_to_end(&mut tail);
    String::from_utf8_lossy(&tail)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.starts_with(SERVER_EXIT_LINE))
}

/// `<run_dir>/wine/server.log`.
pub fn server_log(run_dir: &Path) -> PathBuf {
    run_dir.join("wine").join("server.log")
}

/// `<run_dir>/wine/hives`.
pub fn hives_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("wine").join("hives")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_paths_are_below_the_run_directory_and_the_image() {
        let run = WineRun::new(Path::new("/img/rootfs"), Path::new("/runs/a"));
        assert_eq!(run.original_hives, Path::new("/img/rootfs/root/.wine"));
        assert_eq!(run.changed_hives, Path::new("/runs/a/wine/hives"));
        assert_eq!(run.server_log, Path::new("/runs/a/wine/server.log"));
        assert!(!run.server_exited);
    }

    #[test]
    fn graceful_exit_is_read_from_the_end_of_the_trace() {
        let dir = tempfile::tempdir().unwrap();
        let log = server_log(dir.path());
        fs::create_dir_all(log.parent().unwrap()).unwrap();
        let body = "0024: create_mutex() = 0\n".repeat(500);
        fs::write(&log, format!("{body}wineserver: exiting (pid=5)\n")).unwrap();
        let run = WineRun::new(Path::new("/img"), dir.path());
        assert!(run.server_exited);
        fs::write(&log, format!("wineserver: exiting (pid=5)\n{body}")).unwrap();
        assert!(!WineRun::new(Path::new("/img"), dir.path()).server_exited);
    }
}
