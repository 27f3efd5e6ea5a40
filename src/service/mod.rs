//! `aegis serve`: the orchestrator as a REST service, with a durable queue in SQLite.
//!
//! The rooms, from the network inwards:
//! - [`api`]: HTTP handlers; parse and validate into typed [`command`]s. Holds no state.
//! - [`orchestrator`]: carries out the commands against the queue and the data directory.
//! - [`queue`] / [`db`]: the durable queue and the record of every analysis (`aegis.db`).
//! - [`worker`]: the threads that run analyses on the engine, one sandbox each.
//! - [`webhook`], [`retention`], [`artifacts`], [`host`]: callbacks, expiry, artifact zips,
//!   and what the host offers.

pub mod api;
pub mod artifacts;
pub mod command;
pub mod db;
pub mod host;
pub mod orchestrator;
pub mod queue;
pub mod retention;
pub mod webhook;
pub mod worker;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::analysis::Engine;
use crate::config::Config;
use crate::paths::DataDir;

use orchestrator::Orchestrator;
use queue::Queue;
use webhook::{CallbackUrl, Webhooks};
use worker::{WorkSignal, WorkerContext, Workers};

/// How long in-flight requests get to finish once the workers have stopped.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// What the command line can set beyond `config.json`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Overrides `service.listen`.
    pub listen: Option<String>,
    /// Overrides `service.concurrency`.
    pub concurrency: Option<usize>,
}

/// Why the service could not start (or stop cleanly).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("service.webhook_url: {0}")]
    WebhookUrl(webhook::WebhookError),
    #[error("--concurrency must be at least 1")]
    Concurrency,
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error(transparent)]
    Orchestrator(#[from] orchestrator::OrchestratorError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start {what}: {source}")]
    Start {
        what: &'static str,
        source: std::io::Error,
    },
}

/// Runs the service until SIGTERM or SIGINT, then stops gracefully. Blocking.
pub fn serve(data: &DataDir, config: Config, options: ServeOptions) -> Result<(), ServiceError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("aegis-http")
        .build()
        .map_err(|source| ServiceError::Start {
            what: "the async runtime",
            source,
        })?;
    runtime.block_on(run(data.clone(), config, options))
}

async fn run(data: DataDir, config: Config, options: ServeOptions) -> Result<(), ServiceError> {
    let listen = options
        .listen
        .clone()
        .unwrap_or_else(|| config.service.listen.clone());
    let default_callback = match &config.service.webhook_url {
        Some(url) => Some(CallbackUrl::parse(url).map_err(|e| ServiceError::WebhookUrl(e.into()))?),
        None => None,
    };
    let concurrency = match options.concurrency.or(config.service.concurrency) {
        Some(0) => return Err(ServiceError::Concurrency),
        Some(n) => n,
        None => host::default_concurrency(&config.sandbox),
    };

    // Start-up, in order: the state of the previous run is settled before anything new can
    // start; the port is taken before the workers, so a busy port fails before any work.
    let queue = settle_previous_run(&data)?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|source| ServiceError::Bind {
            addr: listen.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServiceError::Bind {
        addr: listen.clone(),
        source,
    })?;
    let webhooks = Webhooks::start(queue.clone());
    for id in queue.pending_webhooks()? {
        webhooks.finished(&id);
    }
    let signal = Arc::new(WorkSignal::default());
    let context = WorkerContext {
        engine: Engine::new(data.clone(), config.clone()),
        data: data.clone(),
        queue: queue.clone(),
        signal: signal.clone(),
        webhooks: webhooks.clone(),
    };
    let workers = Workers::start(concurrency, context).map_err(|source| ServiceError::Start {
        what: "the workers",
        source,
    })?;
    tokio::spawn(retention::run(
        queue.clone(),
        data.clone(),
        config.service.retention_days,
    ));

    let grace = Duration::from_secs(config.service.shutdown_grace_s);
    let app = Arc::new(api::App {
        tokens: config.service.api_tokens.clone(),
        max_body: config.service.max_body_bytes,
        orch: Arc::new(Orchestrator::new(
            data.clone(),
            config,
            queue,
            signal,
            webhooks,
            concurrency,
            default_callback,
        )),
    });
    serve_until_stopped(
        listener,
        app,
        workers,
        grace,
        &addr.to_string(),
        concurrency,
    )
    .await;
    Ok(())
}

/// Before any new work: the database opens, sandboxes orphaned by a killed service are
/// removed, jobs it left `running` are re-queued once or failed, stray sample files go.
fn settle_previous_run(data: &DataDir) -> Result<Arc<Queue>, ServiceError> {
    prepare_dirs(data)?;
    let queue = Arc::new(Queue::open(&data.root().join("aegis.db"))?);
    let swept = crate::analysis::sweep(data);
    let recovered = queue.recover()?;
    let orphans = retention::remove_orphan_samples(&queue, data)?;
    tracing::info!(
        swept = swept.runs.len(),
        requeued = recovered.requeued.len(),
        failed = recovered.failed.len(),
        cancelled = recovered.cancelled.len(),
        orphan_samples = orphans,
        "recovered state of the previous run"
    );
    Ok(queue)
}

/// Serves until SIGTERM or SIGINT, then: refuse submissions, let the workers finish within
/// `grace` (tearing down what outlives it), and stop answering.
async fn serve_until_stopped(
    listener: tokio::net::TcpListener,
    app: Arc<api::App>,
    workers: Workers,
    grace: Duration,
    addr: &str,
    concurrency: usize,
) {
    let orch = app.orch.clone();
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, api::router(app)).with_graceful_shutdown(async {
        let _ = http_stopped.await;
    });
    let server = tokio::spawn(async move { server.await });
    announce(addr, concurrency);

    wait_for_stop_signal().await;
    tracing::info!(
        grace_s = grace.as_secs(),
        "stopping: finishing running analyses"
    );
    orch.start_draining();
    let _ = tokio::task::spawn_blocking(move || workers.shut_down(grace)).await;
    let _ = stop_http.send(());
    let _ = tokio::time::timeout(HTTP_DRAIN, server).await;
    tracing::info!("stopped");
}

/// The service's own folders under the data directory; scratch left by a crash is removed.
fn prepare_dirs(data: &DataDir) -> Result<(), ServiceError> {
    for dir in [
        data.root().to_path_buf(),
        data.root().join("samples"),
        data.analyses(),
    ] {
        std::fs::create_dir_all(&dir).map_err(|source| ServiceError::Io {
            op: "create",
            path: dir.clone(),
            source,
        })?;
    }
    let tmp = data.root().join("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|source| ServiceError::Io {
        op: "create",
        path: tmp,
        source,
    })
}

/// One line on stdout with the address actually bound (useful with `--listen 127.0.0.1:0`).
fn announce(addr: &str, concurrency: usize) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "aegis: listening on http://{addr} (concurrency {concurrency})"
    );
    let _ = out.flush();
    tracing::info!(addr, concurrency, "listening");
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the service with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
