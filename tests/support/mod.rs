//! Shared helpers of the integration tests: run the real `aegis` binary on fixtures built at
//! test time, read its report, and check that nothing of an analysis is left on the host.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aegis::report::Report;
use aegis::sandbox::cgroup::{Cgroup, Hierarchy};

/// Data directory shared by the test binaries, so the guest image is built once.
pub fn data_dir() -> PathBuf {
    std::env::var_os("AEGIS_TEST_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/aegis-test-data"))
}

/// A scratch directory for fixtures, removed when dropped.
pub fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("aegis-fixture-")
        .tempdir()
        .expect("tempdir")
}

/// `aegis` with the shared data directory and no config file.
pub fn aegis() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aegis"));
    cmd.arg("--data-dir").arg(data_dir());
    cmd.current_dir(std::env::temp_dir());
    cmd
}

/// `aegis` as [`aegis`] makes it, run in a network namespace of its own that has nothing but
/// an unconfigured loopback: whatever a sample (or a bug) sends, no packet of the analysis can
/// reach a real network. The guest `image` is built first, outside, because building needs
/// the package mirror.
pub fn offline_aegis(image: &str) -> Command {
    let data = aegis::paths::DataDir::new(data_dir());
    aegis::image::ImageStore::new(&data)
        .ensure(image, &mut |_| {})
        .unwrap_or_else(|e| panic!("guest image {image}: {e}"));
    let mut cmd = Command::new("unshare");
    cmd.arg("--net").arg("--").arg(env!("CARGO_BIN_EXE_aegis"));
    cmd.arg("--data-dir").arg(data_dir());
    cmd.current_dir(std::env::temp_dir());
    cmd
}

/// Compiles a C fixture from tests/fixtures with gcc.
pub fn gcc(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.c"));
    let out = dir.join(name);
    let status = Command::new("gcc")
        .arg("-O1")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .args(extra)
        .status()
        .expect("gcc runs");
    assert!(status.success(), "gcc failed for {name}");
    out
}

/// Writes a file into `dir`.
pub fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write fixture");
    path
}

/// Runs `aegis analyze --json` and parses the report; panics with stderr on failure.
pub fn analyze(sample: &Path, args: &[&str]) -> Report {
    let out = analyze_raw(sample, args);
    assert!(
        out.status.success(),
        "aegis analyze failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not a report ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_no_leftovers(&report.analysis_id);
    report
}

pub fn analyze_raw(sample: &Path, args: &[&str]) -> Output {
    offline_aegis("linux")
        .arg("analyze")
        .arg(sample)
        .arg("--json")
        .args(backend_args())
        .args(args)
        .output()
        .expect("aegis runs")
}

/// The backend the behaviour fixtures run on, by test binary: `tests/sandbox.rs` runs them on
/// the native backend, `tests/docker.rs` (which includes the same cases) on the docker
/// backend with the engine's default runtime, `tests/gvisor.rs` with runsc.
pub fn backend_args() -> &'static [&'static str] {
    match env!("CARGO_CRATE_NAME") {
        "docker" => &["--backend", "docker"],
        "gvisor" => &["--backend", "docker", "--runtime", "runsc"],
        _ => &[],
    }
}

/// Whether this test binary runs its analyses in containers.
pub fn on_docker() -> bool {
    !backend_args().is_empty()
}

/// Names of the engine's labelled containers that belong to `analysis_id`.
pub fn containers_of(analysis_id: &str) -> Vec<String> {
    let engine = aegis::docker::Engine::connect(aegis::config::DEFAULT_DOCKER_SOCKET)
        .expect("docker engine reachable");
    engine
        .labelled_containers()
        .expect("list containers")
        .into_iter()
        .filter(|(_, id)| id == analysis_id)
        .map(|(name, _)| name)
        .collect()
}

/// Nothing of the analysis remains: cgroup, run directory, mounts in any namespace.
pub fn assert_no_leftovers(analysis_id: &str) {
    let hierarchy = Hierarchy::detect().expect("cgroups");
    assert!(
        !Cgroup::open(&hierarchy, analysis_id).exists(),
        "cgroup of {analysis_id} is left"
    );
    if on_docker() {
        let left = containers_of(analysis_id);
        assert!(
            left.is_empty(),
            "containers of {analysis_id} are left: {left:?}"
        );
    }
    let run = data_dir().join("runs").join(analysis_id);
    assert!(!run.exists(), "run directory {} is left", run.display());
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let info = std::fs::read_to_string(entry.path().join("mountinfo")).unwrap_or_default();
        assert!(
            !info.contains(analysis_id),
            "a mount of {analysis_id} is left in pid {:?}",
            entry.file_name()
        );
    }
}

/// sha256 of bytes, hex.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn end_reason(r: &Report) -> String {
    serde_json::to_value(r.execution.end_reason)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}
