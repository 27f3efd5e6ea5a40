//! One analysis's container, from creation to removal, as a checklist:
//! create (limits, no network, capabilities, labels) → place spec, output directory and
//! sample → attach to stdout/stderr → start → wait (timeout and pids limit are enforced by
//! the monitor inside; a backstop here) → collect → remove.

use std::collections::HashMap;
use std::fs;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bollard::container::{
    AttachContainerOptions, Config, CreateContainerOptions, DownloadFromContainerOptions,
    KillContainerOptions, UploadToContainerOptions,
};
use bollard::models::{HostConfig, HostConfigLogConfig};
use bollard::Docker;
use futures_util::StreamExt;

use super::changes::{self, LayerSettings};
use super::{api, archive, image, output, sweep, ContainerRequest, DockerError, Engine};
use super::{LABEL, LABEL_ANALYSIS, LABEL_OWNER};
use crate::config::{ContainerRuntime, Limits};
use crate::image::ImageInfo;
use crate::monitor::container::{ContainerSpec, OUT_DIR};
use crate::sandbox::SandboxOutcome;

/// Time beyond the timeout the monitor gets to stop the sample and collect before the
/// container is killed from outside.
const BACKSTOP_GRACE: Duration = Duration::from_secs(60);

/// Longest a container's start may take.
const START_LIMIT: Duration = Duration::from_secs(60);

/// The only capability the container keeps: the monitor's way into its output directory.
/// The sample's sets are emptied before its exec; ptrace of one's own children and signals
/// to processes of the same uid need none.
const KEPT_CAPABILITIES: [&str; 1] = ["DAC_OVERRIDE"];

/// Runs one analysis in its own container and returns what the native supervisor would.
pub fn run(
    engine: &Engine,
    req: &ContainerRequest<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<SandboxOutcome, DockerError> {
    let tag = {
        let _lock = lock(&req.image_lock)?;
        engine
            .rt
            .block_on(image::ensure(&engine.docker, req.image, progress))?
    };
    tracing::debug!(image = tag, "monitor image ready");
    let cgroup_version = engine.info().map(|i| i.cgroup_version).unwrap_or_default();
    let name = container_name(req.analysis_id);
    let result = engine
        .rt
        .block_on(run_container(&engine.docker, req, &tag, &name));
    let _ = engine
        .rt
        .block_on(super::force_remove(&engine.docker, &name));
    tracing::debug!(container = name, "removed");
    let mut outcome = result?;
    outcome.cgroup_version = cgroup_version;
    Ok(outcome)
}

pub fn container_name(analysis_id: &str) -> String {
    format!("aegis-{analysis_id}")
}

fn lock(path: &std::path::Path) -> Result<nix::fcntl::Flock<fs::File>, DockerError> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| DockerError::Local(format!("open {}: {e}", path.display())))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| DockerError::Local(format!("lock {}: {e}", path.display())))
}

/// The engine-side settings of a sample's container.
pub fn host_config(limits: &Limits, runtime: ContainerRuntime) -> HostConfig {
    let memory = i64::try_from(limits.memory_bytes).unwrap_or(i64::MAX);
    let disk = limits.disk_bytes;
    let tmpfs = HashMap::from([
        (
            "/tmp".to_string(),
            format!("rw,nosuid,nodev,size={disk},mode=1777"),
        ),
        (
            "/run".to_string(),
            format!("rw,nosuid,nodev,size={disk},mode=755"),
        ),
    ]);
    HostConfig {
        network_mode: Some("none".into()),
        memory: Some(memory),
        // Equal to the memory limit: no swap.
        memory_swap: Some(memory),
        nano_cpus: Some((limits.cpus * 1e9).round() as i64),
        pids_limit: Some(engine_pids_limit(limits.pids, runtime)),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: Some(KEPT_CAPABILITIES.iter().map(|c| c.to_string()).collect()),
        // The sample gets the native backend's own seccomp filter from the monitor. The
        // engine's default profile would answer EPERM to calls that filter traces (mount,
        // for one) before the monitor could see them, and refuses the monitor
        // process_vm_readv; the policy is the same one as the native backend's.
        security_opt: Some(vec![
            "no-new-privileges".into(),
            "seccomp=unconfined".into(),
        ]),
        tmpfs: Some(tmpfs),
        // No negative oom_score_adj for the monitor, unlike the native backend: engines
        // refuse it where their own score cannot go lower (docs/backends.md). The OOM killer
        // picks the largest process, which is the sample's unless it stays small.
        // The attach stream carries the output; nothing is logged to the host's disk.
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".into()),
            config: None,
        }),
        runtime: Some(runtime.as_str().into()),
        init: Some(false),
        ..Default::default()
    }
}

/// The engine's pids limit. Under runc it counts the sandbox's tasks, as the native cgroup
/// does. Under runsc it counts gVisor's own host threads too (the sentry, the gofer, and with
/// the ptrace platform one stub per guest task), so the monitor's own task cap enforces the
/// limit there and the engine's is a backstop above it.
pub fn engine_pids_limit(pids: u64, runtime: ContainerRuntime) -> i64 {
    let limit = match runtime {
        ContainerRuntime::Runc => pids,
        ContainerRuntime::Runsc => pids.saturating_mul(32).saturating_add(1024),
    };
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn labels(analysis_id: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL.to_string(), "1".to_string()),
        (LABEL_ANALYSIS.to_string(), analysis_id.to_string()),
        (LABEL_OWNER.to_string(), sweep::owner_label()),
    ])
}

async fn create(
    docker: &Docker,
    name: &str,
    tag: &str,
    analysis_id: &str,
    hostname: &str,
    host_config: HostConfig,
) -> Result<(), DockerError> {
    let config = Config {
        image: Some(tag.to_string()),
        hostname: Some(hostname.to_string()),
        user: Some("0:0".into()),
        env: Some(Vec::new()),
        working_dir: Some("/".into()),
        network_disabled: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        labels: Some(labels(analysis_id)),
        host_config: Some(host_config),
        ..Default::default()
    };
    let options = CreateContainerOptions {
        name: name.to_string(),
        platform: None,
    };
    match docker.create_container(Some(options), config).await {
        Ok(_) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError { message, .. })
            if message.contains("unknown or invalid runtime name") =>
        {
            Err(DockerError::NoRuntime(
                message.rsplit(": ").next().unwrap_or("").to_string(),
            ))
        }
        Err(e) => Err(api("create container", e)),
    }
}

async fn run_container(
    docker: &Docker,
    req: &ContainerRequest<'_>,
    tag: &str,
    name: &str,
) -> Result<SandboxOutcome, DockerError> {
    let host_config = host_config(&req.limits, req.runtime);
    let hostname = &req.hostname;
    create(docker, name, tag, req.analysis_id, hostname, host_config).await?;
    tracing::debug!(container = name, "created");
    place(docker, name, req).await?;
    tracing::debug!(container = name, "sample placed");

    // Attached before the start, so not a byte of output is missed.
    let attach = AttachContainerOptions::<String> {
        stdout: Some(true),
        stderr: Some(true),
        stream: Some(true),
        ..Default::default()
    };
    let attached = docker
        .attach_container(name, Some(attach))
        .await
        .map_err(|e| api("attach", e))?;
    let artifacts = req.run.artifacts();
    fs::create_dir_all(&artifacts)
        .map_err(|e| DockerError::Local(format!("mkdir {}: {e}", artifacts.display())))?;
    let drain = tokio::spawn(output::drain(
        attached.output,
        req.run.stream("stdout"),
        req.run.stream("stderr"),
        req.output_keep_bytes,
    ));

    let host_started = crate::monitor::now_ns();
    start(docker, name, req.runtime).await?;
    tracing::debug!(container = name, "started");
    let killed = wait(docker, name, req).await?;
    tracing::debug!(container = name, "ended");
    let host_ended = crate::monitor::now_ns();

    let state = docker
        .inspect_container(name, None)
        .await
        .map_err(|e| api("inspect container", e))?
        .state
        .unwrap_or_default();
    let streams = drain.await.unwrap_or_default();
    let mut outcome = collect_out(docker, name, req).await;
    tracing::debug!(container = name, "monitor output read");

    if outcome.started_ns == 0 {
        outcome.started_ns = host_started;
        outcome.ended_ns = host_ended;
    }
    outcome.clock_offset_ns = clock_offset(host_started, host_ended, outcome.ended_ns);
    outcome.timed_out |= killed;
    outcome.cgroup.oom_kills = u64::from(state.oom_killed.unwrap_or(false));
    outcome.cgroup.pids_limit_hits = u64::from(outcome.pids_stopped);
    if outcome.monitor_exit_code.is_none() {
        outcome.monitor_exit_code = state.exit_code.and_then(|c| i32::try_from(c).ok());
    }
    outcome.stdout = streams.stdout;
    outcome.stderr = streams.stderr;
    outcome.collection_errors.extend(streams.errors);

    let settings = LayerSettings {
        rootfs: &req.image.rootfs,
        artifact_max_bytes: req.artifact_max_bytes,
        disk_bytes: req.limits.disk_bytes,
        sample_guest_path: &req.sample_guest_path,
        sample: req.sample,
        dropped_dir: req.run.dropped(),
    };
    changes::collect(docker, name, &settings, &mut outcome).await;
    tracing::debug!(container = name, "writable layer collected");
    outcome.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(outcome)
}

/// Puts the monitor's spec, its output directory and the sample into the created container.
async fn place(docker: &Docker, name: &str, req: &ContainerRequest<'_>) -> Result<(), DockerError> {
    let spec = ContainerSpec {
        argv: req.argv.clone(),
        env: req.env.clone(),
        cwd: req.cwd.clone(),
        timeout_ms: req.limits.timeout_s.saturating_mul(1000),
        pids: req.limits.pids,
        artifact_max_bytes: req.artifact_max_bytes,
        disk_bytes: req.limits.disk_bytes,
        sample_guest_path: req.sample_guest_path.clone(),
    };
    let spec = serde_json::to_vec(&spec).unwrap_or_default();
    let tar = archive::placement(&spec, &req.sample_guest_path, req.sample);
    let upload = UploadToContainerOptions {
        path: "/".to_string(),
        ..Default::default()
    };
    docker
        .upload_to_container(name, Some(upload), tar.into())
        .await
        .map_err(|e| api("place the sample", e))
}

/// Starts the container. A runtime that hangs at start (gVisor's KVM platform without nested
/// virtualisation does) must not hang the analysis.
async fn start(docker: &Docker, name: &str, runtime: ContainerRuntime) -> Result<(), DockerError> {
    tokio::time::timeout(START_LIMIT, docker.start_container::<String>(name, None))
        .await
        .map_err(|_| {
            DockerError::Local(format!(
                "the {} runtime did not start the container within {} s",
                runtime.as_str(),
                START_LIMIT.as_secs()
            ))
        })?
        .map_err(|e| api("start container", e))
}

/// How far the container's monotonic clock is from ours. A runtime on the host's kernel
/// shares it (the monitor's end lies between our start and end: no offset); gVisor keeps
/// its own, and the monitor's end is then taken to be when we saw the container end.
pub fn clock_offset(host_started: u64, host_ended: u64, monitor_ended: u64) -> i64 {
    if (host_started..=host_ended).contains(&monitor_ended) {
        return 0;
    }
    let diff = i128::from(host_ended) - i128::from(monitor_ended);
    i64::try_from(diff).unwrap_or(0)
}

/// Waits for the container's end. The monitor inside ends the run at the timeout; past it
/// and a grace the container is killed here (returns true). `cancel` kills it at once.
async fn wait(
    docker: &Docker,
    name: &str,
    req: &ContainerRequest<'_>,
) -> Result<bool, DockerError> {
    let limit = Duration::from_secs(req.limits.timeout_s) + BACKSTOP_GRACE;
    let start = Instant::now();
    let mut waiter = docker.wait_container::<String>(name, None);
    loop {
        let tick = tokio::time::sleep(Duration::from_millis(20));
        tokio::select! {
            done = waiter.next() => {
                return match done {
                    // A non-zero exit status comes as an error of the wait call; either way
                    // the container has ended.
                    Some(Ok(_)) | Some(Err(bollard::errors::Error::DockerContainerWaitError { .. })) | None => Ok(false),
                    Some(Err(e)) => Err(api("wait for container", e)),
                };
            }
            _ = tick => {}
        }
        let cancelled = req.cancel.load(Ordering::SeqCst);
        if cancelled || start.elapsed() > limit {
            let kill = KillContainerOptions { signal: "SIGKILL" };
            let _ = docker.kill_container(name, Some(kill)).await;
            let _ = waiter.next().await;
            if cancelled {
                return Err(DockerError::Interrupted);
            }
            return Ok(true);
        }
    }
}

/// Reads the monitor's output directory: event stream, dropped files, outcome.
async fn collect_out(docker: &Docker, name: &str, req: &ContainerRequest<'_>) -> SandboxOutcome {
    let options = DownloadFromContainerOptions {
        path: OUT_DIR.to_string(),
    };
    let mut stream = docker.download_from_container(name, Some(options));
    let mut bytes = Vec::new();
    let mut error = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) if (bytes.len() + c.len()) as u64 <= archive::OUT_MAX_BYTES => {
                bytes.extend_from_slice(&c)
            }
            Ok(_) => {
                error = Some("the monitor's output is over its cap".to_string());
                break;
            }
            Err(e) => {
                error = Some(format!("read the monitor's output: {e}"));
                break;
            }
        }
    }
    let mut outcome = SandboxOutcome::default();
    let files = match archive::entries(bytes.as_slice(), archive::OUT_MAX_BYTES) {
        Ok(f) => f,
        Err(e) => {
            outcome
                .collection_errors
                .push(format!("unreadable output of the monitor: {e}"));
            Vec::new()
        }
    };
    let _ = fs::create_dir_all(req.run.dropped());
    for f in files {
        let Some(content) = f.content else { continue };
        // The archive is rooted at `out/`.
        let rel = f.path.split_once('/').map_or("", |(_, r)| r);
        if rel == "events.jsonl" {
            let _ = fs::write(req.run.events(), &content);
        } else if rel == "outcome.json" {
            match serde_json::from_slice::<SandboxOutcome>(&content) {
                Ok(o) => {
                    outcome = SandboxOutcome {
                        collection_errors: [outcome.collection_errors, o.collection_errors.clone()]
                            .concat(),
                        ..o
                    }
                }
                Err(e) => outcome
                    .collection_errors
                    .push(format!("unreadable outcome of the monitor: {e}")),
            }
        } else if let Some(sha) = rel.strip_prefix("dropped/") {
            let valid = sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit());
            if valid {
                let _ = fs::write(req.run.dropped().join(sha), &content);
            }
        }
    }
    outcome.collection_errors.extend(error);
    outcome
}

/// A minimal analysis-shaped run of `/bin/true` under `runtime`, for `aegis doctor`.
pub async fn probe(
    docker: &Docker,
    image: &ImageInfo,
    runtime: ContainerRuntime,
) -> Result<(), DockerError> {
    let mut quiet = |_: &str| {};
    let tag = image::ensure(docker, image, &mut quiet).await?;
    let name = format!("aegis-probe-{}", uuid::Uuid::new_v4());
    let limits = Limits {
        timeout_s: 10,
        memory_bytes: 128 << 20,
        cpus: 1.0,
        pids: 32,
        disk_bytes: 16 << 20,
    };
    let result = probe_run(docker, &tag, &name, &limits, runtime).await;
    let _ = super::force_remove(docker, &name).await;
    result
}

async fn probe_run(
    docker: &Docker,
    tag: &str,
    name: &str,
    limits: &Limits,
    runtime: ContainerRuntime,
) -> Result<(), DockerError> {
    create(
        docker,
        name,
        tag,
        "probe",
        "probe",
        host_config(limits, runtime),
    )
    .await?;
    let spec = ContainerSpec {
        argv: vec!["/bin/true".into()],
        env: Vec::new(),
        cwd: "/".into(),
        timeout_ms: 10_000,
        pids: limits.pids,
        artifact_max_bytes: 0,
        disk_bytes: limits.disk_bytes,
        sample_guest_path: "/root/probe".into(),
    };
    let spec = serde_json::to_vec(&spec).unwrap_or_default();
    let tar = archive::placement(&spec, "/root/probe", b"");
    let upload = UploadToContainerOptions {
        path: "/".to_string(),
        ..Default::default()
    };
    docker
        .upload_to_container(name, Some(upload), tar.into())
        .await
        .map_err(|e| api("place the probe", e))?;
    docker
        .start_container::<String>(name, None)
        .await
        .map_err(|e| api("start container", e))?;
    let mut waiter = docker.wait_container::<String>(name, None);
    let _ = tokio::time::timeout(Duration::from_secs(60), waiter.next()).await;
    let state = docker
        .inspect_container(name, None)
        .await
        .map_err(|e| api("inspect container", e))?
        .state
        .unwrap_or_default();
    match state.exit_code {
        Some(0) => Ok(()),
        other => Err(DockerError::Local(format!(
            "the monitor did not complete in a {} container (exit status {other:?})",
            runtime.as_str()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_clock_has_no_offset_and_a_foreign_one_is_mapped_to_the_end_we_saw() {
        assert_eq!(clock_offset(100, 200, 150), 0);
        assert_eq!(clock_offset(1_000, 2_000, 50), 1_950);
        assert_eq!(clock_offset(1_000, 2_000, 5_000), -3_000);
    }

    #[test]
    fn containers_get_no_network_no_capabilities_but_one_and_the_limits() {
        let limits = Limits {
            timeout_s: 5,
            memory_bytes: 128 << 20,
            cpus: 0.5,
            pids: 64,
            disk_bytes: 32 << 20,
        };
        let h = host_config(&limits, ContainerRuntime::Runsc);
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(h.memory, Some(128 << 20));
        assert_eq!(h.memory_swap, h.memory);
        assert_eq!(h.nano_cpus, Some(500_000_000));
        assert_eq!(
            h.pids_limit,
            Some(64 * 32 + 1024),
            "runsc's own threads count too"
        );
        assert_eq!(h.runtime.as_deref(), Some("runsc"));
        let h = host_config(&limits, ContainerRuntime::Runc);
        assert_eq!(h.pids_limit, Some(64));
        assert_eq!(h.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(h.cap_add, Some(vec!["DAC_OVERRIDE".to_string()]));
        assert!(h
            .security_opt
            .unwrap()
            .contains(&"no-new-privileges".to_string()));
        assert_eq!(h.runtime.as_deref(), Some("runc"));
        let tmpfs = h.tmpfs.unwrap();
        assert!(tmpfs["/tmp"].contains(&format!("size={}", 32 << 20)));
    }
}
