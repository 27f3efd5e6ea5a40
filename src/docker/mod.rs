//! The docker backend: each analysis in its own container of a Docker Engine, driven over the
//! engine's API on its unix socket (never the docker command). The same monitor as the native
//! backend runs as the container's init; its event stream, the writable layer and the output
//! streams come back through the engine and make the same [`SandboxOutcome`] the native
//! supervisor writes, so one report builder serves both.
//!
//! Every container and image this backend makes carries the label [`LABEL`]; nothing without
//! it is ever touched.

mod archive;
mod changes;
mod container;
pub mod image;
mod output;
pub mod sweep;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use bollard::Docker;

use crate::config::{ContainerRuntime, Limits};
use crate::image::ImageInfo;
use crate::sandbox::RunLayout;

pub use container::run;

/// Every object of this backend carries `io.aegisai.sandbox=1`.
pub const LABEL: &str = "io.aegisai.sandbox";
/// The analysis a container belongs to.
pub const LABEL_ANALYSIS: &str = "io.aegisai.analysis";
/// The process that owns a container (see [`sweep::owner_label`]).
pub const LABEL_OWNER: &str = "io.aegisai.owner";

/// Errors of the docker backend.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("docker engine at {socket} is not reachable: {source}")]
    Connect {
        socket: String,
        source: bollard::errors::Error,
    },
    #[error("docker engine: {step}: {source}")]
    Api {
        step: &'static str,
        source: bollard::errors::Error,
    },
    #[error("docker backend: {0}")]
    Local(String),
    #[error("the engine has no runtime `{0}`; register it in /etc/docker/daemon.json (see docs/backends.md)")]
    NoRuntime(String),
    #[error("interrupted; the container was removed")]
    Interrupted,
}

fn api(step: &'static str, source: bollard::errors::Error) -> DockerError {
    DockerError::Api { step, source }
}

/// Removes a container of ours, running or not, with its anonymous volumes.
async fn force_remove(docker: &Docker, name: &str) -> Result<(), bollard::errors::Error> {
    let options = bollard::container::RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    docker.remove_container(name, Some(options)).await
}

/// A connection to the engine, with the small runtime that drives it from blocking code.
/// The [`SandboxOutcome`](crate::sandbox::SandboxOutcome) of a run comes from [`run`].
pub struct Engine {
    docker: Docker,
    rt: tokio::runtime::Runtime,
    pub socket: String,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("socket", &self.socket)
            .finish()
    }
}

/// What the engine says about itself.
#[derive(Debug, Clone)]
pub struct EngineInfo {
    pub version: String,
    pub cgroup_version: String,
    pub runtimes: Vec<String>,
}

impl Engine {
    /// Connects to the engine at `socket` (a path, or `unix://` followed by one).
    pub fn connect(socket: &str) -> Result<Engine, DockerError> {
        let path = socket.trim_start_matches("unix://").to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DockerError::Local(format!("start the engine client: {e}")))?;
        let connect = |source| DockerError::Connect {
            socket: path.clone(),
            source,
        };
        let docker =
            Docker::connect_with_unix(&path, 600, bollard::API_DEFAULT_VERSION).map_err(connect)?;
        // The engine may be older than this client: speak its version.
        let docker = rt.block_on(docker.negotiate_version()).map_err(connect)?;
        Ok(Engine {
            docker,
            rt,
            socket: path,
        })
    }

    pub fn info(&self) -> Result<EngineInfo, DockerError> {
        let info = self
            .rt
            .block_on(self.docker.info())
            .map_err(|e| api("info", e))?;
        let mut runtimes: Vec<String> = info.runtimes.unwrap_or_default().into_keys().collect();
        runtimes.sort();
        Ok(EngineInfo {
            version: info.server_version.unwrap_or_default(),
            cgroup_version: info
                .cgroup_version
                .map(|v| format!("v{v}"))
                .unwrap_or_default(),
            runtimes,
        })
    }

    /// Every container carrying the sandbox label: (name, analysis id).
    pub fn labelled_containers(&self) -> Result<Vec<(String, String)>, DockerError> {
        self.rt.block_on(sweep::labelled(&self.docker))
    }

    /// Removes the labelled containers of orchestrators that are gone.
    pub fn sweep(&self) -> Result<Vec<String>, DockerError> {
        self.rt.block_on(sweep::sweep(&self.docker))
    }

    /// Runs a throw-away container of the monitor image with `runtime` and tells whether
    /// the monitor works there (for `aegis doctor`).
    pub fn probe_runtime(
        &self,
        image: &ImageInfo,
        runtime: ContainerRuntime,
    ) -> Result<(), DockerError> {
        self.rt
            .block_on(container::probe(&self.docker, image, runtime))
    }
}

/// One analysis's container, as the orchestrator asks for it.
#[derive(Debug)]
pub struct ContainerRequest<'a> {
    pub analysis_id: &'a str,
    pub image: &'a ImageInfo,
    pub runtime: ContainerRuntime,
    pub limits: Limits,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub hostname: String,
    pub sample_guest_path: String,
    pub sample: &'a [u8],
    pub artifact_max_bytes: u64,
    pub output_keep_bytes: u64,
    pub run: &'a RunLayout,
    pub cancel: &'a AtomicBool,
    /// Data directory lock file serialising image imports.
    pub image_lock: PathBuf,
}
