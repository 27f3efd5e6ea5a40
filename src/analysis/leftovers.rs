//! Leftovers of runs whose orchestrator was killed: found by their owner record, removed at
//! the next start. Only run directories of this data directory, and the cgroups named after
//! them, are ever touched.

use std::fs;
use std::path::Path;

use crate::paths::DataDir;
use crate::sandbox::cgroup::{Cgroup, Hierarchy};
use crate::sandbox::RunLayout;

/// Start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat), which
/// together with the pid identifies it even after pid reuse.
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Records which process owns a run directory.
pub fn write_owner(run: &RunLayout) -> std::io::Result<()> {
    let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let start = start_time(pid).unwrap_or(0);
    fs::write(run.owner(), format!("{pid} {start}\n"))
}

/// A run directory without an owner record yet may be one being created this instant.
const OWNERLESS_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

fn owner_alive(run_dir: &Path) -> bool {
    let Ok(text) = fs::read_to_string(run_dir.join("owner")) else {
        // Written right after the directory: only an old directory without one is left over.
        let age = fs::metadata(run_dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        return age.is_none_or(|a| a < OWNERLESS_GRACE);
    };
    let mut parts = text.split_whitespace();
    let pid: Option<i32> = parts.next().and_then(|p| p.parse().ok());
    let start: Option<u64> = parts.next().and_then(|s| s.parse().ok());
    match (pid, start) {
        (Some(pid), Some(start)) => start_time(pid) == Some(start),
        _ => false,
    }
}

/// Whether anything is mounted at or below `dir` in our mount namespace.
fn has_mounts_below(dir: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return true;
    };
    let prefix = dir.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m == prefix || m.starts_with(&format!("{prefix}/")))
}

/// Removes a run directory, refusing if something is still mounted inside it.
pub fn remove_run_dir(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if has_mounts_below(dir) {
        return Err(std::io::Error::other(format!(
            "{} still has mounts below it; not removed",
            dir.display()
        )));
    }
    fs::remove_dir_all(dir)
}

/// What a sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub runs: Vec<String>,
}

/// Removes the run directories and cgroups of runs whose owner is gone.
pub fn sweep(data: &DataDir) -> Swept {
    let mut swept = Swept::default();
    let Ok(entries) = fs::read_dir(data.runs()) else {
        return swept;
    };
    let hierarchy = Hierarchy::detect().ok();
    for entry in entries.flatten() {
        let dir = entry.path();
        if owner_alive(&dir) {
            continue;
        }
        let id = entry.file_name().to_string_lossy().into_owned();
        if let Some(h) = &hierarchy {
            if let Err(e) = Cgroup::open(h, &id).destroy() {
                tracing::warn!(analysis_id = %id, error = %e, "cannot remove leftover cgroup");
                continue;
            }
        }
        match remove_run_dir(&dir) {
            Ok(()) => {
                tracing::info!(analysis_id = %id, "removed leftovers of an interrupted run");
                swept.runs.push(id);
            }
            Err(e) => tracing::warn!(analysis_id = %id, error = %e, "cannot remove run dir"),
        }
    }
    swept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_live_owners_stay_and_dead_ones_go() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path());
        let live = RunLayout::new(&data.run("live"));
        let dead = RunLayout::new(&data.run("dead"));
        fs::create_dir_all(&live.dir).unwrap();
        fs::create_dir_all(dead.dir.join("scratch/upper")).unwrap();
        write_owner(&live).unwrap();
        fs::write(dead.owner(), "999999999 12345\n").unwrap();
        let swept = sweep(&data);
        assert_eq!(swept.runs, vec!["dead".to_string()]);
        assert!(live.dir.exists());
        assert!(!dead.dir.exists());
    }

    #[test]
    fn a_run_being_created_has_no_owner_yet_and_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path());
        let fresh = RunLayout::new(&data.run("fresh"));
        fs::create_dir_all(&fresh.dir).unwrap();
        assert!(sweep(&data).runs.is_empty());
        assert!(fresh.dir.exists());
    }

    #[test]
    fn start_time_reads_our_own_stat() {
        assert!(start_time(i32::try_from(std::process::id()).unwrap()).is_some());
        assert_eq!(start_time(-5), None);
    }
}
