//! The workers: a fixed number of threads, each taking the next job from the queue and running
//! it on the engine, so no more sandboxes exist at once than there are workers.
//!
//! Dedicated threads, not the async runtime's blocking pool: an analysis blocks for as long as
//! the sample runs, and the engine's supervisor dies with the thread that started it
//! (`PR_SET_PDEATHSIG`), so that thread must live as long as the analysis.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::analysis::{AnalysisError, AnalysisRequest, Engine};
use crate::config::Limits;
use crate::paths::DataDir;
use crate::report::ReportStatus;

use super::queue::{CancelReason, Claimed, Outcome, Queue};
use super::webhook::Webhooks;

/// Longest sleep of an idle worker between looks at the queue (a submission wakes it sooner).
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Wakes idle workers when work arrives.
#[derive(Debug, Default)]
pub struct WorkSignal {
    generation: Mutex<u64>,
    cv: Condvar,
}

impl WorkSignal {
    pub fn notify(&self) {
        if let Ok(mut g) = self.generation.lock() {
            *g = g.wrapping_add(1);
        }
        self.cv.notify_all();
    }

    fn generation(&self) -> u64 {
        self.generation.lock().map(|g| *g).unwrap_or(0)
    }

    /// Sleeps until a notification newer than `seen`, or `timeout`.
    fn wait(&self, seen: u64, timeout: Duration) {
        let Ok(guard) = self.generation.lock() else {
            return std::thread::sleep(timeout);
        };
        let _ = self.cv.wait_timeout_while(guard, timeout, |g| *g == seen);
    }
}

/// What every worker shares.
#[derive(Clone)]
pub struct WorkerContext {
    pub engine: Engine,
    pub data: DataDir,
    pub queue: Arc<Queue>,
    pub signal: Arc<WorkSignal>,
    pub webhooks: Webhooks,
}

/// The running workers.
pub struct Workers {
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    signal: Arc<WorkSignal>,
    queue: Arc<Queue>,
}

impl Workers {
    /// Starts `count` workers.
    pub fn start(count: usize, ctx: WorkerContext) -> std::io::Result<Workers> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::with_capacity(count);
        for n in 0..count {
            let (ctx, stop) = (ctx.clone(), stop.clone());
            let handle = std::thread::Builder::new()
                .name(format!("aegis-worker-{n}"))
                .spawn(move || work(&ctx, &stop))?;
            handles.push(handle);
        }
        Ok(Workers {
            handles,
            stop,
            signal: ctx.signal,
            queue: ctx.queue,
        })
    }

    /// Stops taking jobs, lets running ones finish within `grace`, then tears down the rest.
    /// Blocking.
    pub fn shut_down(self, grace: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        self.signal.notify();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && self.handles.iter().any(|h| !h.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.handles.iter().any(|h| !h.is_finished()) {
            let tokens = self.queue.running_tokens().unwrap_or_default();
            tracing::warn!(
                running = tokens.len(),
                grace_s = grace.as_secs(),
                "grace period over; tearing down running analyses"
            );
            for token in tokens {
                token.cancel(CancelReason::Shutdown);
            }
        }
        for handle in self.handles {
            let _ = handle.join();
        }
    }
}

fn work(ctx: &WorkerContext, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let seen = ctx.signal.generation();
        match ctx.queue.claim() {
            Ok(Some(job)) => run(ctx, job),
            Ok(None) => ctx.signal.wait(seen, IDLE_POLL),
            Err(e) => {
                tracing::error!(error = %e, "cannot take a job from the queue");
                std::thread::sleep(IDLE_POLL);
            }
        }
    }
}

/// Runs one job and records how it ended.
fn run(ctx: &WorkerContext, job: Claimed) {
    let id = job.row.id.clone();
    let _span = tracing::info_span!("analysis", analysis_id = %id).entered();
    tracing::info!(attempt = job.row.attempts, "analysis started");
    let started = Instant::now();
    let outcome = match std::fs::read(ctx.data.submitted_sample(id.as_str())) {
        Err(e) => Outcome::Failed(format!("the stored sample cannot be read: {e}")),
        Ok(bytes) => analyze(ctx, &job, bytes),
    };
    match ctx.queue.finish(&id, &outcome) {
        Ok(status) => {
            tracing::info!(
                status = %status,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "analysis ended"
            );
            if status.is_terminal() {
                ctx.webhooks.finished(&id);
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot record the end of an analysis"),
    }
}

fn analyze(ctx: &WorkerContext, job: &Claimed, bytes: Vec<u8>) -> Outcome {
    let row = &job.row;
    let sandbox = &ctx.engine.config.sandbox;
    let request = AnalysisRequest {
        file_name: row.file_name.clone(),
        bytes,
        arguments: row.arguments.clone(),
        limits: Limits {
            timeout_s: row.timeout_s,
            memory_bytes: row.memory_bytes,
            cpus: row.cpus,
            pids: sandbox.pids_limit,
            disk_bytes: sandbox.disk_limit,
        },
        network: ctx
            .engine
            .config
            .network_spec(Some(row.network), Some(row.dns)),
        placement: row.placement,
    };
    let mut progress = |line: &str| tracing::debug!(progress = line);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        ctx.engine
            .analyze(row.id.as_str(), &request, &mut progress, job.token.flag())
    }));
    match result {
        Ok(Ok(finished)) => match finished.report.status {
            ReportStatus::Completed => Outcome::Completed,
            ReportStatus::Failed => Outcome::Failed(
                finished
                    .report
                    .execution
                    .error
                    .unwrap_or_else(|| "the analysis failed".into()),
            ),
        },
        Ok(Err(AnalysisError::Interrupted)) => match job.token.reason() {
            Some(CancelReason::User) => Outcome::Cancelled,
            _ => Outcome::Interrupted,
        },
        Ok(Err(e)) => {
            tracing::error!(error = %e, "analysis failed");
            Outcome::Failed(e.to_string())
        }
        Err(_) => {
            tracing::error!("analysis panicked");
            Outcome::Failed("internal error: the analysis panicked".into())
        }
    }
}
