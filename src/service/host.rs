//! What the host offers the service: free disk, how many sandboxes it can hold, whether the
//! native backend can run at all. Each reading is taken by a small function; judging the
//! readings is pure, so it is tested on made-up values.

use std::path::Path;

use crate::config::{Backend, SandboxConfig};
use crate::image::ImageStore;
use crate::paths::DataDir;
use crate::sandbox::cgroup::Hierarchy;

/// The guest image every analysis needs.
const IMAGE: &str = crate::analysis::LINUX_IMAGE;

/// Share of the memory available at start that sandboxes may take together.
const MEMORY_SHARE: f64 = 0.8;

/// Free bytes for an unprivileged user on the file system holding `path`.
pub fn free_disk_bytes(path: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    #[allow(clippy::unnecessary_cast)]
    Some(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}

/// A byte count for people: `70.5 GiB`, `1000 TiB`, `512 B`.
#[allow(clippy::cast_precision_loss)]
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The default concurrency: as many sandboxes as the CPUs and the memory hold at their
/// configured limits, at least one.
pub fn default_concurrency(sandbox: &SandboxConfig) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    fit(cpus, available_memory(), sandbox)
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn fit(cpus: usize, memory: Option<u64>, sandbox: &SandboxConfig) -> usize {
    let by_cpu = (cpus as f64 / sandbox.cpu_limit.max(0.01)).floor() as usize;
    let by_memory = memory.map_or(usize::MAX, |m| {
        (m as f64 * MEMORY_SHARE / sandbox.memory_limit.max(1) as f64).floor() as usize
    });
    by_cpu.min(by_memory).clamp(1, 1024)
}

/// What the health check reads from the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub root: bool,
    /// The cgroup version, or why none is usable.
    pub cgroup: Result<&'static str, String>,
    /// Whether the guest image is built (or why it cannot be read).
    pub image: Result<bool, String>,
    pub free_disk: Option<u64>,
    pub min_free_disk: u64,
    /// With `sandbox.backend: "docker"`: the engine's version, or why it cannot be used.
    pub docker: Option<Result<String, String>>,
}

impl Probe {
    /// Reads the host now.
    pub fn take(data: &DataDir, min_free_disk: u64, sandbox: &SandboxConfig) -> Probe {
        let docker = (sandbox.backend == Backend::Docker).then(|| {
            crate::docker::Engine::connect(&sandbox.docker_socket)
                .and_then(|e| e.info())
                .map(|i| i.version)
                .map_err(|e| e.to_string())
        });
        Probe {
            docker,
            root: nix::unistd::geteuid().is_root(),
            cgroup: Hierarchy::detect()
                .map(|h| h.version())
                .map_err(|e| e.to_string()),
            image: ImageStore::new(data)
                .get(IMAGE)
                .map(|i| i.is_some())
                .map_err(|e| e.to_string()),
            free_disk: free_disk_bytes(data.root()),
            min_free_disk,
        }
    }

    /// Whether the configured backend can run sandboxes here.
    pub fn backend_available(&self) -> bool {
        match &self.docker {
            Some(engine) => engine.is_ok(),
            None => self.native_available(),
        }
    }

    /// Whether the native backend can run sandboxes here.
    pub fn native_available(&self) -> bool {
        self.root && self.cgroup.is_ok()
    }

    /// Whether new submissions would run short of disk.
    pub fn disk_low(&self) -> bool {
        self.free_disk.is_some_and(|f| f < self.min_free_disk)
    }

    /// Why the service cannot analyse now; empty when it can.
    pub fn reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        match &self.docker {
            Some(Err(e)) => reasons.push(format!("backend unavailable: {e}")),
            Some(Ok(_)) => {}
            None => {
                if !self.root {
                    reasons.push("backend unavailable: the native sandbox needs root".to_string());
                }
                if let Err(e) = &self.cgroup {
                    reasons.push(format!("backend unavailable: {e}"));
                }
            }
        }
        match &self.image {
            Ok(true) => {}
            Ok(false) => reasons.push(format!(
                "image missing: guest image `{IMAGE}` is not built; build it with \
                 `aegis image build {IMAGE}` (the first analysis would build it, ~1 min)"
            )),
            Err(e) => reasons.push(format!("image missing: {e}")),
        }
        if self.disk_low() {
            reasons.push(format!(
                "disk low: {} free in the data directory, below service.min_free_disk ({})",
                human_bytes(self.free_disk.unwrap_or(0)),
                human_bytes(self.min_free_disk)
            ));
        }
        reasons
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Probe {
        Probe {
            root: true,
            cgroup: Ok("v2"),
            image: Ok(true),
            free_disk: Some(10 << 30),
            min_free_disk: 1 << 30,
            docker: None,
        }
    }

    #[test]
    fn a_healthy_host_has_no_reasons() {
        assert_eq!(healthy().reasons(), Vec::<String>::new());
        assert!(healthy().backend_available());
    }

    #[test]
    fn each_problem_is_named_with_its_category() {
        let table: Vec<(Probe, &str)> = vec![
            (
                Probe {
                    root: false,
                    ..healthy()
                },
                "backend unavailable: the native sandbox needs root",
            ),
            (
                Probe {
                    cgroup: Err("no cgroup".into()),
                    ..healthy()
                },
                "backend unavailable: no cgroup",
            ),
            (
                Probe {
                    image: Ok(false),
                    ..healthy()
                },
                "image missing: guest image `linux` is not built",
            ),
            (
                Probe {
                    free_disk: Some(1 << 20),
                    ..healthy()
                },
                "disk low: 1 MiB free in the data directory, below service.min_free_disk (1 GiB)",
            ),
        ];
        for (probe, reason) in table {
            let reasons = probe.reasons();
            assert_eq!(reasons.len(), 1, "{reasons:?}");
            assert!(reasons[0].starts_with(reason), "{reasons:?}");
        }
        assert!(!Probe {
            root: false,
            ..healthy()
        }
        .backend_available());
    }

    #[test]
    fn concurrency_is_what_cpus_and_memory_hold_at_least_one() {
        let s = SandboxConfig::default();
        assert_eq!(fit(2, Some(22 << 30), &s), 4);
        assert_eq!(fit(8, Some(4 << 30), &s), 3);
        assert_eq!(fit(1, Some(100 << 20), &s), 1);
        assert_eq!(fit(2, None, &s), 4);
    }

    #[test]
    fn byte_counts_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1 << 30), "1 GiB");
        assert_eq!(human_bytes(1000 << 40), "1000 TiB");
        assert_eq!(human_bytes(75_660_000_000), "70.5 GiB");
    }

    #[test]
    fn meminfo_available_is_read_in_bytes() {
        let text = "MemTotal: 100 kB\nMemFree: 5 kB\nMemAvailable:   2048 kB\n";
        assert_eq!(parse_mem_available(text), Some(2 << 20));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
    }
}
