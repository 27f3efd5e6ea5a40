//! Resource limits and whole-sandbox kills through cgroups, v2 or v1, detected at run time.
//!
//! Every process of an analysis lives in one cgroup (`aegis/<analysis-id>`), so limits hold for
//! the whole tree and a kill reaches double-forked, `setsid` daemons too: membership is
//! inherited across fork and unchanged by setsid.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::Limits;

/// Name of the parent cgroup of every analysis.
pub const PARENT: &str = "aegis";

/// How long a killed cgroup may stay busy before its removal is an error.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

const V1_CONTROLLERS: &[&str] = &["memory", "pids", "cpu", "freezer"];
const V2_CONTROLLERS: &[&str] = &["memory", "pids", "cpu"];

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no usable cgroup hierarchy: need cgroup v2 with the memory, pids and cpu controllers, \
         or cgroup v1 with memory, pids, cpu and freezer ({detail})"
    )]
    Unavailable { detail: String },
    #[error("cgroup {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroup {path} still has processes after being killed")]
    NotEmpty { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Which hierarchy is in use and where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// The unified hierarchy's mount point.
    V2(PathBuf),
    /// One mount point per controller: memory, pids, cpu, freezer, and cpuacct when present.
    V1(Vec<(String, PathBuf)>),
}

impl Hierarchy {
    /// Detects the hierarchy from `/proc/self/mountinfo`, preferring v2 when it is usable.
    pub fn detect() -> Result<Hierarchy, CgroupError> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(io(Path::new("/proc/self/mountinfo")))?;
        Self::from_mountinfo(&mountinfo, |p| fs::read_to_string(p).ok())
    }

    /// Detection from a mountinfo text; `read` gives a file's content (for cgroup.controllers).
    pub fn from_mountinfo(
        mountinfo: &str,
        read: impl Fn(&Path) -> Option<String>,
    ) -> Result<Hierarchy, CgroupError> {
        let mut v2 = None;
        let mut v1 = Vec::new();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = left.split(' ').nth(4).unwrap_or_default();
            let mut fields = right.split(' ');
            let fstype = fields.next().unwrap_or_default();
            let options = fields.nth(1).unwrap_or_default();
            match fstype {
                "cgroup2" => v2 = Some(PathBuf::from(mount_point)),
                "cgroup" => {
                    for opt in options.split(',') {
                        if V1_CONTROLLERS.contains(&opt) || opt == "cpuacct" {
                            v1.push((opt.to_string(), PathBuf::from(mount_point)));
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(root) = &v2 {
            let controllers = read(&root.join("cgroup.controllers")).unwrap_or_default();
            let have: Vec<&str> = controllers.split_whitespace().collect();
            if V2_CONTROLLERS.iter().all(|c| have.contains(c)) {
                return Ok(Hierarchy::V2(root.clone()));
            }
        }
        if V1_CONTROLLERS
            .iter()
            .all(|c| v1.iter().any(|(name, _)| name == c))
        {
            return Ok(Hierarchy::V1(v1));
        }
        Err(CgroupError::Unavailable {
            detail: format!(
                "cgroup2 at {}, v1 controllers found: {}",
                v2.map(|p| p.display().to_string()).unwrap_or("none".into()),
                v1.iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        })
    }

    pub fn version(&self) -> &'static str {
        match self {
            Hierarchy::V2(_) => "v2",
            Hierarchy::V1(_) => "v1",
        }
    }

    /// The directories of cgroup `aegis/<name>` (one for v2, one per controller for v1).
    fn dirs(&self, name: &str) -> Vec<(String, PathBuf)> {
        match self {
            Hierarchy::V2(root) => vec![("unified".into(), root.join(PARENT).join(name))],
            Hierarchy::V1(mounts) => mounts
                .iter()
                .map(|(c, m)| (c.clone(), m.join(PARENT).join(name)))
                .collect(),
        }
    }
}

/// What the cgroup saw during the run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CgroupStats {
    pub oom_kills: u64,
    pub pids_limit_hits: u64,
    pub memory_peak_bytes: Option<u64>,
    pub cpu_time_ns: Option<u64>,
}

/// The cgroup of one analysis.
#[derive(Debug)]
pub struct Cgroup {
    hierarchy: Hierarchy,
    dirs: Vec<(String, PathBuf)>,
}

impl Cgroup {
    /// Creates `aegis/<name>` and applies the limits.
    pub fn create(
        hierarchy: &Hierarchy,
        name: &str,
        limits: &Limits,
    ) -> Result<Cgroup, CgroupError> {
        if let Hierarchy::V2(root) = hierarchy {
            enable_v2_controllers(root)?;
        }
        let cgroup = Cgroup {
            hierarchy: hierarchy.clone(),
            dirs: hierarchy.dirs(name),
        };
        for (_, dir) in &cgroup.dirs {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
        cgroup.apply(limits)?;
        Ok(cgroup)
    }

    /// The cgroup of a named analysis, whether or not it exists.
    pub fn open(hierarchy: &Hierarchy, name: &str) -> Cgroup {
        Cgroup {
            hierarchy: hierarchy.clone(),
            dirs: hierarchy.dirs(name),
        }
    }

    pub fn exists(&self) -> bool {
        self.dirs.iter().any(|(_, d)| d.exists())
    }

    fn dir(&self, controller: &str) -> &Path {
        self.dirs
            .iter()
            .find(|(c, _)| c == controller || c == "unified")
            .map(|(_, d)| d.as_path())
            .unwrap_or(Path::new("/nonexistent"))
    }

    fn write(&self, controller: &str, file: &str, value: &str) -> Result<(), CgroupError> {
        let path = self.dir(controller).join(file);
        fs::write(&path, value).map_err(io(&path))
    }

    fn read(&self, controller: &str, file: &str) -> Option<String> {
        fs::read_to_string(self.dir(controller).join(file)).ok()
    }

    fn apply(&self, limits: &Limits) -> Result<(), CgroupError> {
        let period: u64 = 100_000;
        // cpus is validated to 0.01..=1024, so the product is positive and far below u64::MAX.
        #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
        let quota = ((limits.cpus * period as f64).round() as u64).max(1000);
        match &self.hierarchy {
            Hierarchy::V2(_) => {
                self.write("memory", "memory.max", &limits.memory_bytes.to_string())?;
                // No swap, so the memory limit is the real limit; absent when swap is off.
                let _ = self.write("memory", "memory.swap.max", "0");
                self.write("pids", "pids.max", &limits.pids.to_string())?;
                self.write("cpu", "cpu.max", &format!("{quota} {period}"))?;
            }
            Hierarchy::V1(_) => {
                let mem = limits.memory_bytes.to_string();
                self.write("memory", "memory.limit_in_bytes", &mem)?;
                let _ = self.write("memory", "memory.memsw.limit_in_bytes", &mem);
                self.write("pids", "pids.max", &limits.pids.to_string())?;
                self.write("cpu", "cpu.cfs_period_us", &period.to_string())?;
                self.write("cpu", "cpu.cfs_quota_us", &quota.to_string())?;
            }
        }
        Ok(())
    }

    /// Moves a process (and so all its future children) into the cgroup.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        for (_, dir) in &self.dirs {
            let path = dir.join("cgroup.procs");
            fs::write(&path, pid.to_string()).map_err(io(&path))?;
        }
        Ok(())
    }

    /// On v1, the `tasks` files through which a single-threaded process moves *itself* into
    /// the cgroup. Moving the current, single thread skips the global lock that moving another
    /// process takes (and its wait for an RCU grace period, ~10 ms); v2 has no such file, so
    /// this is empty there and the caller uses [`Cgroup::add`].
    pub fn self_join_files(&self) -> Result<Vec<std::fs::File>, CgroupError> {
        if matches!(self.hierarchy, Hierarchy::V2(_)) {
            return Ok(Vec::new());
        }
        self.dirs
            .iter()
            .map(|(_, dir)| {
                let path = dir.join("tasks");
                fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))
            })
            .collect()
    }

    /// pids still in the cgroup (host view).
    pub fn pids(&self) -> Vec<i32> {
        let controller = match self.hierarchy {
            Hierarchy::V2(_) => "unified",
            Hierarchy::V1(_) => "freezer",
        };
        self.read(controller, "cgroup.procs")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Kills every process in the cgroup and waits until it is empty.
    ///
    /// v2 uses `cgroup.kill` (5.14+). v1 freezes the cgroup first, so nothing can fork while
    /// the members are signalled, then thaws it so the signals are delivered.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        if !self.exists() {
            return Ok(());
        }
        match &self.hierarchy {
            Hierarchy::V2(_) if self.dir("unified").join("cgroup.kill").exists() => {
                self.write("unified", "cgroup.kill", "1")?;
            }
            Hierarchy::V2(_) => {
                self.write("unified", "cgroup.freeze", "1")?;
                self.signal_members();
                self.write("unified", "cgroup.freeze", "0")?;
            }
            Hierarchy::V1(_) => {
                self.write("freezer", "freezer.state", "FROZEN")?;
                self.signal_members();
                self.write("freezer", "freezer.state", "THAWED")?;
            }
        }
        self.wait_empty(Duration::from_secs(10))
    }

    fn signal_members(&self) {
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    fn wait_empty(&self, limit: Duration) -> Result<(), CgroupError> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.pids().is_empty() {
                return Ok(());
            }
            self.signal_members();
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(CgroupError::NotEmpty {
            path: self.dir("freezer").to_path_buf(),
        })
    }

    /// Reads the counters that tell which limit was reached.
    pub fn stats(&self) -> CgroupStats {
        let field = |text: Option<String>, key: &str| -> Option<u64> {
            text?.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok()).flatten()
            })
        };
        let number = |text: Option<String>| text.and_then(|t| t.trim().parse::<u64>().ok());
        match &self.hierarchy {
            Hierarchy::V2(_) => CgroupStats {
                oom_kills: field(self.read("memory", "memory.events"), "oom_kill").unwrap_or(0),
                pids_limit_hits: field(self.read("pids", "pids.events"), "max").unwrap_or(0),
                memory_peak_bytes: number(self.read("memory", "memory.peak")),
                cpu_time_ns: field(self.read("cpu", "cpu.stat"), "usage_usec").map(|u| u * 1000),
            },
            Hierarchy::V1(_) => CgroupStats {
                oom_kills: field(self.read("memory", "memory.oom_control"), "oom_kill")
                    .unwrap_or(0),
                pids_limit_hits: field(self.read("pids", "pids.events"), "max").unwrap_or(0),
                memory_peak_bytes: number(self.read("memory", "memory.max_usage_in_bytes")),
                cpu_time_ns: number(self.read("cpuacct", "cpuacct.usage")),
            },
        }
    }

    /// Whether the pids limit has been reached at least once.
    pub fn pids_limit_reached(&self) -> bool {
        self.stats().pids_limit_hits > 0
    }

    /// Kills what is left and removes the cgroup directories.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        self.kill_all()?;
        for (_, dir) in &self.dirs {
            remove_when_released(dir)?;
        }
        Ok(())
    }
}

/// Removes a cgroup directory. Killed tasks are gone from `cgroup.procs` a moment before the
/// kernel lets go of the cgroup (rmdir answers EBUSY meanwhile), so retry for a while.
fn remove_when_released(dir: &Path) -> Result<(), CgroupError> {
    let start = Instant::now();
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < RELEASE_WAIT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(io(dir)(e)),
        }
    }
}

/// v2 needs the controllers enabled in the root's and `aegis`'s subtree_control.
fn enable_v2_controllers(root: &Path) -> Result<(), CgroupError> {
    let parent = root.join(PARENT);
    fs::create_dir_all(&parent).map_err(io(&parent))?;
    for dir in [root, parent.as_path()] {
        let path = dir.join("cgroup.subtree_control");
        let current = fs::read_to_string(&path).unwrap_or_default();
        for c in V2_CONTROLLERS {
            if !current.split_whitespace().any(|x| x == *c) {
                fs::write(&path, format!("+{c}")).map_err(io(&path))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_HOST: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";

    const V2_HOST: &str = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate";

    #[test]
    fn v1_is_chosen_when_v2_has_no_controllers() {
        let h = Hierarchy::from_mountinfo(V1_HOST, |_| Some("hugetlb\n".into())).unwrap();
        let Hierarchy::V1(mounts) = &h else {
            panic!("{h:?}")
        };
        assert!(mounts.contains(&("memory".into(), "/sys/fs/cgroup/memory".into())));
        assert!(mounts.contains(&("cpuacct".into(), "/sys/fs/cgroup/cpuacct".into())));
        assert_eq!(h.version(), "v1");
    }

    #[test]
    fn v2_is_preferred_when_usable() {
        let h = Hierarchy::from_mountinfo(V2_HOST, |_| Some("cpuset cpu io memory pids\n".into()))
            .unwrap();
        assert_eq!(h, Hierarchy::V2("/sys/fs/cgroup".into()));
        assert_eq!(
            h.dirs("abc"),
            vec![(
                "unified".to_string(),
                PathBuf::from("/sys/fs/cgroup/aegis/abc")
            )]
        );
    }

    #[test]
    fn missing_controllers_are_named() {
        let err = Hierarchy::from_mountinfo(V2_HOST, |_| Some("cpu\n".into())).unwrap_err();
        assert!(err.to_string().contains("memory, pids and cpu"), "{err}");
    }
}
