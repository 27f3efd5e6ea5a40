//! One analysis from submitted bytes to a stored report: identify the sample, make sure the
//! guest image exists, run the supervisor, build the report, keep the artifacts, clean up.

pub mod build;

pub(crate) mod leftovers;
mod network;
mod report;

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::{Backend, Config, Limits, Placement};
use crate::image::{ImageError, ImageInfo, ImageStore};
use crate::paths::DataDir;
use crate::report::Report;
use crate::sample::{Kind, Sample};
use crate::sandbox::cgroup::{Cgroup, Hierarchy};
use crate::sandbox::{RunLayout, SandboxOutcome, SandboxSpec};

pub use leftovers::sweep;

/// The guest image every Linux sample runs in.
pub const LINUX_IMAGE: &str = "linux";

/// Extra time the supervisor gets beyond the timeout for set-up and collection.
const SUPERVISOR_GRACE: Duration = Duration::from_secs(120);

/// What to analyse.
#[derive(Debug, Clone)]
pub struct AnalysisRequest {
    /// The name as submitted (kept verbatim in the report).
    pub file_name: String,
    pub bytes: Vec<u8>,
    /// argv for the sample after its own path.
    pub arguments: Vec<String>,
    pub limits: Limits,
    /// Loopback only or the simulated internet, and how names resolve.
    pub network: crate::netsim::NetworkSpec,
    /// Which backend (and container runtime) runs it.
    pub placement: Placement,
}

/// Why an analysis could not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("guest image: {0}")]
    Image(#[from] ImageError),
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sandbox failed: {0}")]
    Sandbox(String),
    #[error(transparent)]
    Docker(crate::docker::DockerError),
    #[error("interrupted; the sandbox was torn down")]
    Interrupted,
}

fn io<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> AnalysisError + 'a {
    move |source| AnalysisError::Io {
        step,
        path: path.to_path_buf(),
        source,
    }
}

/// A finished analysis: its report and the directory holding `report.json` and artifacts.
#[derive(Debug)]
pub struct Finished {
    pub report: Report,
    pub dir: PathBuf,
}

/// Runs analyses with the native backend.
#[derive(Debug, Clone)]
pub struct Engine {
    pub data: DataDir,
    pub config: Config,
    start: SupervisorStart,
}

/// How the supervisor of a sandbox is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SupervisorStart {
    /// A fresh `aegis sandbox-exec` process: safe from any process, threads or not.
    Exec,
    /// A fork of this process that calls the supervisor directly: a millisecond sooner, but
    /// only sound while this process has a single thread (the command line).
    Fork,
}

impl Engine {
    pub fn new(data: DataDir, config: Config) -> Self {
        Engine {
            data,
            config,
            start: SupervisorStart::Exec,
        }
    }

    /// For a caller that runs one analysis at a time on its only thread (`aegis analyze`):
    /// the supervisor is forked, not executed anew.
    pub fn single_threaded(mut self) -> Self {
        self.start = SupervisorStart::Fork;
        self
    }

    /// Runs one analysis to its end. Blocking; `cancel` tears the sandbox down early.
    pub fn analyze(
        &self,
        analysis_id: &str,
        request: &AnalysisRequest,
        progress: &mut dyn FnMut(&str),
        cancel: &AtomicBool,
    ) -> Result<Finished, AnalysisError> {
        let mut sample = Sample::classify(&request.file_name, &request.bytes);
        let dir = self.data.analysis(analysis_id);
        fs::create_dir_all(dir.join("artifacts")).map_err(io("mkdir", &dir))?;
        let started = chrono::Utc::now();

        let command = match sample.command(&request.arguments) {
            Ok(c) => c,
            Err(reason) => {
                sample.info.set_digests(&request.bytes);
                let report =
                    report::not_executed(analysis_id, &sample, request, None, reason, started);
                return self.store(dir, report);
            }
        };
        if request.placement.backend == Backend::Docker && sample.is_windows() {
            let reason = crate::config::WINDOWS_ON_DOCKER.to_string();
            return Err(AnalysisError::Docker(crate::docker::DockerError::Local(
                reason,
            )));
        }
        let image = ImageStore::new(&self.data).ensure(sample.image(), progress)?;
        progress(&format!("running {} in the sandbox", sample.info.file_name));

        let run = RunLayout::new(&self.data.run(analysis_id));
        let outcome = match request.placement.backend {
            Backend::Native => self.run_sandbox(
                analysis_id,
                request,
                &sample,
                &command,
                &image,
                &run,
                cancel,
            ),
            Backend::Docker => {
                let started = ContainerStart {
                    analysis_id,
                    request,
                    sample: &sample,
                    command: &command,
                    image: &image,
                    run: &run,
                    cancel,
                };
                self.run_container(started, progress)
            }
        };
        // Hashing a large sample takes milliseconds: after the run, not before its start.
        sample.info.set_digests(&request.bytes);
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                self.discard_run(analysis_id, &run);
                return Err(e);
            }
        };
        let report = report::from_run(
            analysis_id,
            &sample,
            request,
            &image,
            &command,
            &run,
            &outcome,
            &self.config,
            started,
        );
        keep_artifacts(&run, &dir)?;
        self.discard_run(analysis_id, &run);
        self.store(dir, report)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_sandbox(
        &self,
        analysis_id: &str,
        request: &AnalysisRequest,
        sample: &Sample,
        command: &[String],
        image: &ImageInfo,
        run: &RunLayout,
        cancel: &AtomicBool,
    ) -> Result<SandboxOutcome, AnalysisError> {
        fs::create_dir_all(&run.dir).map_err(io("mkdir", &run.dir))?;
        check_traversable(&run.dir)?;
        leftovers::write_owner(run).map_err(io("write", &run.owner()))?;
        fs::write(run.sample(), &request.bytes).map_err(io("write", &run.sample()))?;
        let windows = matches!(sample.kind, Kind::Windows { .. });
        let spec = SandboxSpec {
            analysis_id: analysis_id.to_string(),
            run_dir: run.dir.clone(),
            rootfs: image.rootfs.clone(),
            limits: request.limits,
            argv: command.to_vec(),
            env: match &sample.kind {
                Kind::Windows { launch } => crate::windows::environment(launch),
                _ => guest_environment(),
            },
            cwd: sample.cwd(),
            hostname: hostname(&image.name).to_string(),
            sample_guest_path: sample.info.sandbox_path.clone(),
            artifact_max_bytes: self.config.sandbox.artifact_max_bytes,
            output_keep_bytes: self
                .config
                .sandbox
                .artifact_max_bytes
                .max(self.config.sandbox.output_max_bytes),
            network: request.network,
            wine: windows.then(crate::windows::sandbox),
        };
        let text = serde_json::to_vec_pretty(&spec).unwrap_or_default();
        fs::write(run.spec(), text).map_err(io("write", &run.spec()))?;
        let limit = Duration::from_secs(request.limits.timeout_s) + SUPERVISOR_GRACE;
        match self.start {
            SupervisorStart::Exec => run_supervisor(run, limit, cancel)?,
            SupervisorStart::Fork => fork_supervisor(run, limit, cancel)?,
        }
        let text = fs::read(run.outcome()).map_err(io("read", &run.outcome()))?;
        serde_json::from_slice(&text)
            .map_err(|e| AnalysisError::Sandbox(format!("unreadable outcome.json: {e}")))
    }

    /// Runs the sample in a container of the Docker Engine (the docker backend).
    fn run_container(
        &self,
        s: ContainerStart<'_>,
        progress: &mut dyn FnMut(&str),
    ) -> Result<SandboxOutcome, AnalysisError> {
        if s.request.network.mode != crate::netsim::NetworkMode::None {
            let reason = crate::config::DOCKER_HAS_NO_NETWORK.to_string();
            return Err(AnalysisError::Docker(crate::docker::DockerError::Local(
                reason,
            )));
        }
        let run = s.run;
        fs::create_dir_all(&run.dir).map_err(io("mkdir", &run.dir))?;
        leftovers::write_owner(run).map_err(io("write", &run.owner()))?;
        let engine = crate::docker::Engine::connect(&self.config.sandbox.docker_socket)
            .map_err(AnalysisError::Docker)?;
        let request = crate::docker::ContainerRequest {
            analysis_id: s.analysis_id,
            image: s.image,
            runtime: s.request.placement.runtime,
            limits: s.request.limits,
            argv: s.command.to_vec(),
            env: guest_environment(),
            cwd: s.sample.cwd(),
            hostname: crate::guest::HOSTNAME.to_string(),
            sample_guest_path: s.sample.info.sandbox_path.clone(),
            sample: &s.request.bytes,
            artifact_max_bytes: self.config.sandbox.artifact_max_bytes,
            output_keep_bytes: self
                .config
                .sandbox
                .artifact_max_bytes
                .max(self.config.sandbox.output_max_bytes),
            run,
            cancel: s.cancel,
            image_lock: self.data.root().join(".docker-import.lock"),
        };
        crate::docker::run(&engine, &request, progress).map_err(|e| match e {
            crate::docker::DockerError::Interrupted => AnalysisError::Interrupted,
            other => AnalysisError::Docker(other),
        })
    }

    /// Removes the run directory and the cgroup of an analysis, whatever state they are in.
    fn discard_run(&self, analysis_id: &str, run: &RunLayout) {
        if let Ok(h) = Hierarchy::detect() {
            let _ = Cgroup::open(&h, analysis_id).destroy();
        }
        let _ = leftovers::remove_run_dir(&run.dir);
    }

    fn store(&self, dir: PathBuf, report: Report) -> Result<Finished, AnalysisError> {
        let path = dir.join("report.json");
        let text = serde_json::to_vec_pretty(&report).unwrap_or_default();
        let tmp = dir.join(".report.json.tmp");
        fs::write(&tmp, text).map_err(io("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(io("rename", &path))?;
        Ok(Finished { report, dir })
    }
}

/// The host name of the guest built from `image`.
pub fn hostname(image: &str) -> &'static str {
    if image == crate::windows::IMAGE {
        crate::windows::COMPUTER_NAME
    } else {
        crate::guest::HOSTNAME
    }
}

/// The sample's whole environment: what a root login on an ordinary server has.
pub fn guest_environment() -> Vec<String> {
    let host = crate::guest::HOSTNAME;
    [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/root",
        "USER=root",
        "LOGNAME=root",
        "SHELL=/bin/bash",
        "TERM=xterm",
        "LANG=C.UTF-8",
        "PWD=/root",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("HOSTNAME={host}")])
    .collect()
}

/// Starts `aegis sandbox-exec` and waits for it, honouring `cancel` and a watchdog.
fn run_supervisor(
    run: &RunLayout,
    limit: Duration,
    cancel: &AtomicBool,
) -> Result<(), AnalysisError> {
    use std::os::unix::process::CommandExt;

    let parent = nix::unistd::getpid();
    // /proc/self/exe, not the path it points to: a package upgrade that replaces the binary
    // under a running service must not break the next analysis.
    let mut command = Command::new("/proc/self/exe");
    command
        .arg("sandbox-exec")
        .arg("--spec")
        .arg(run.spec())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the closure only makes async-signal-safe calls (prctl,
    // getppid, _exit). The death signal is armed before exec, so an orchestrator killed at any
    // moment takes the supervisor along; one already gone makes it exit at once.
    unsafe {
        command.pre_exec(move || {
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            if nix::unistd::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(io("start supervisor for", &run.dir))?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let stderr = child.stderr.take();
    await_supervisor(pid, stderr, limit, cancel)
}

/// Waits for a supervisor (however it was started), honouring `cancel` and a watchdog; its
/// stderr is drained as it comes, so a chatty supervisor can never block on a full pipe, and
/// the last line becomes the error when it fails.
fn await_supervisor(
    pid: nix::unistd::Pid,
    stderr: Option<impl std::io::Read + Send + 'static>,
    limit: Duration,
    cancel: &AtomicBool,
) -> Result<(), AnalysisError> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

    let stderr = stderr.map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    });
    let start = Instant::now();
    let status = loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(status) => break status,
            Err(e) => return Err(AnalysisError::Sandbox(format!("wait for supervisor: {e}"))),
        }
        if cancel.load(Ordering::SeqCst) || start.elapsed() > limit {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(pid, None);
            if cancel.load(Ordering::SeqCst) {
                return Err(AnalysisError::Interrupted);
            }
            return Err(AnalysisError::Sandbox(format!(
                "supervisor did not finish within {} s",
                limit.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if status == WaitStatus::Exited(pid, 0) {
        return Ok(());
    }
    let text = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    let last = text.lines().last().unwrap_or("no message").to_string();
    Err(AnalysisError::Sandbox(format!("{last} ({status:?})")))
}

/// Forks the supervisor from this single-threaded process and waits for it.
fn fork_supervisor(
    run: &RunLayout,
    limit: Duration,
    cancel: &AtomicBool,
) -> Result<(), AnalysisError> {
    let pipe_err = |e: nix::Error| AnalysisError::Sandbox(format!("pipe: {e}"));
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(pipe_err)?;
    let parent = nix::unistd::getpid();
    // SAFETY: the caller promised a single-threaded process (`Engine::single_threaded`), so
    // the child owns a consistent copy of memory and may run ordinary code before `_exit`.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            let code = if nix::unistd::getppid() != parent
                || nix::unistd::dup2(err_w.as_raw_fd(), 2).is_err()
            {
                1
            } else {
                match crate::sandbox::supervise(&run.spec()) {
                    Ok(_) => 0,
                    Err(e) => {
                        eprintln!("aegis: error: {e}");
                        1
                    }
                }
            };
            // SAFETY: _exit ends the child without running the parent's destructors twice.
            unsafe { libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(err_w);
            await_supervisor(child, Some(std::fs::File::from(err_r)), limit, cancel)
        }
        Err(e) => Err(AnalysisError::Sandbox(format!("fork the supervisor: {e}"))),
    }
}

/// What the docker backend needs of an analysis being started.
struct ContainerStart<'a> {
    analysis_id: &'a str,
    request: &'a AnalysisRequest,
    sample: &'a Sample,
    command: &'a [String],
    image: &'a ImageInfo,
    run: &'a RunLayout,
    cancel: &'a AtomicBool,
}

/// The guest's root (an unprivileged host uid) must be able to reach the run directory.
fn check_traversable(dir: &Path) -> Result<(), AnalysisError> {
    use std::os::unix::fs::MetadataExt;
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = fs::metadata(ancestor) else {
            continue;
        };
        if meta.mode() & 0o001 == 0 {
            return Err(AnalysisError::Sandbox(format!(
                "{} (mode {:o}) cannot be searched by the sandbox's unprivileged guest user; \
                 allow it with `chmod o+x {}` or choose another --data-dir",
                ancestor.display(),
                meta.mode() & 0o7777,
                ancestor.display()
            )));
        }
    }
    Ok(())
}

/// Moves the run's artifacts (dropped files, output streams) into the analysis directory.
fn keep_artifacts(run: &RunLayout, dir: &Path) -> Result<(), AnalysisError> {
    let target = dir.join("artifacts");
    let dropped = run.dropped();
    if dropped.exists() {
        let to = target.join("dropped");
        fs::create_dir_all(&to).map_err(io("mkdir", &to))?;
        for entry in fs::read_dir(&dropped)
            .map_err(io("read", &dropped))?
            .flatten()
        {
            let dest = to.join(entry.file_name());
            fs::rename(entry.path(), &dest).map_err(io("move artifact to", &dest))?;
        }
    }
    let pcap = run.pcap();
    if pcap.exists() {
        let dest = target.join(crate::netsim::PCAP_NAME);
        fs::rename(&pcap, &dest).map_err(io("move artifact to", &dest))?;
    }
    for name in ["stdout", "stderr"] {
        let from = run.stream(name);
        if fs::metadata(&from).is_ok_and(|m| m.len() > 0) {
            let dest = target.join(format!("{name}.bin"));
            fs::rename(&from, &dest).map_err(io("move artifact to", &dest))?;
        }
    }
    Ok(())
}
