//! The orchestrator: carries out the typed commands of the REST layer against the queue and
//! the data directory. It is the only way in from the API; the workers own the sandboxes.
//!
//! ```text
//! <data-dir>/aegis.db                  the queue and the record of every analysis
//! <data-dir>/samples/<analysis-id>     the submitted bytes
//! <data-dir>/analyses/<analysis-id>/   report.json and artifacts (written by the engine)
//! <data-dir>/tmp/                      scratch (artifact zips, unlinked at once)
//! ```
//!
//! Every method blocks (SQLite, files); the API calls them on the blocking pool.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::paths::DataDir;

use super::artifacts::{self, ArtifactError};
use super::command::{AnalysisId, ArtifactName, ListFilter, Status, Submission};
use super::db::{AnalysisRow, DbError};
use super::host::{self, Probe};
use super::queue::{CancelResult, DeleteResult, Queue};
use super::webhook::{CallbackUrl, Webhooks};
use super::worker::WorkSignal;

/// How long `cancel` waits for a running job's sandbox to be torn down before answering.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// Why a command could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    #[error("no analysis {0}")]
    NotFound(AnalysisId),
    #[error("analysis {id} is already {status}; only queued or running analyses can be cancelled")]
    NotCancellable { id: AnalysisId, status: Status },
    #[error("analysis {0} is running; cancel it first, then delete it")]
    StillRunning(AnalysisId),
    #[error("analysis {id} is {status}; artifacts exist once it has finished")]
    NotFinished { id: AnalysisId, status: Status },
    #[error("analysis {id} has no artifact `{name}`")]
    ArtifactNotFound { id: AnalysisId, name: String },
    #[error("the service is shutting down and accepts no new analyses")]
    ShuttingDown,
    #[error(
        "not enough free disk: {free} free in the data directory, service.min_free_disk is {min}; \
         free space or delete analyses (DELETE /results/{{id}})"
    )]
    DiskLow { free: String, min: String },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Artifact(ArtifactError),
}

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> OrchestratorError + 'a {
    move |source| OrchestratorError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// An accepted submission.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub id: AnalysisId,
    pub status: Status,
}

/// An analysis and, once finished, its report.
#[derive(Debug, Clone)]
pub struct AnalysisState {
    pub row: AnalysisRow,
    pub report: Option<serde_json::Value>,
}

/// What the health check reports.
#[derive(Debug, Clone)]
pub struct HealthState {
    pub probe: Probe,
    pub queued: u64,
    pub running: u64,
    pub capacity: usize,
    pub draining: bool,
}

impl HealthState {
    /// Why the service cannot analyse now; empty when it can.
    pub fn reasons(&self) -> Vec<String> {
        let mut reasons = self.probe.reasons();
        if self.draining {
            reasons.push("shutting down: no new analyses are accepted".into());
        }
        reasons
    }
}

/// Carries out the REST layer's commands.
pub struct Orchestrator {
    data: DataDir,
    config: Config,
    queue: Arc<Queue>,
    work: Arc<WorkSignal>,
    webhooks: Webhooks,
    capacity: usize,
    /// `service.webhook_url`: the callback of submissions that name none.
    default_callback: Option<CallbackUrl>,
    draining: AtomicBool,
}

impl Orchestrator {
    pub fn new(
        data: DataDir,
        config: Config,
        queue: Arc<Queue>,
        work: Arc<WorkSignal>,
        webhooks: Webhooks,
        capacity: usize,
        default_callback: Option<CallbackUrl>,
    ) -> Orchestrator {
        Orchestrator {
            data,
            config,
            queue,
            work,
            webhooks,
            capacity,
            default_callback,
            draining: AtomicBool::new(false),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// From now on submissions are refused with 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether a submission of about `incoming` bytes would be accepted now (not draining,
    /// enough disk). Cheap: the API asks before reading a body, and `submit` asks again.
    pub fn admit(&self, incoming: u64) -> Result<(), OrchestratorError> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(OrchestratorError::ShuttingDown);
        }
        self.check_disk(incoming)
    }

    /// Stores the sample, queues the analysis and wakes a worker.
    pub fn submit(&self, mut submission: Submission) -> Result<Accepted, OrchestratorError> {
        if submission.callback_url.is_none() {
            submission.callback_url = self.default_callback.clone();
        }
        self.admit(submission.bytes.len() as u64)?;
        let id = AnalysisId::generate();
        let sha256 = hex::encode(Sha256::digest(&submission.bytes));
        let path = sample_path(&self.data, &id);
        write_durably(&path, &submission.bytes)?;
        if let Err(e) = self.queue.insert(&id, &submission, &sha256) {
            let _ = fs::remove_file(&path);
            return Err(e.into());
        }
        tracing::info!(
            analysis_id = %id,
            size = submission.bytes.len(),
            sha256 = %sha256,
            file_name = ?crate::sample::sanitize_name(&submission.file_name),
            priority = submission.priority,
            "analysis queued"
        );
        self.work.notify();
        Ok(Accepted {
            id,
            status: Status::Queued,
        })
    }

    /// Refuses a submission that would leave less than `service.min_free_disk` free.
    fn check_disk(&self, incoming: u64) -> Result<(), OrchestratorError> {
        let min = self.config.service.min_free_disk_bytes;
        match host::free_disk_bytes(self.data.root()) {
            Some(free) if free.saturating_sub(incoming) < min => Err(OrchestratorError::DiskLow {
                free: host::human_bytes(free),
                min: host::human_bytes(min),
            }),
            _ => Ok(()),
        }
    }

    /// An analysis and its report (once it has one).
    pub fn get(&self, id: &AnalysisId) -> Result<AnalysisState, OrchestratorError> {
        let row = self
            .queue
            .get(id)?
            .ok_or_else(|| OrchestratorError::NotFound(id.clone()))?;
        let report = if row.status.is_terminal() {
            read_report(&self.data.analysis(id.as_str()).join("report.json"))
        } else {
            None
        };
        Ok(AnalysisState { row, report })
    }

    /// One page of analyses, newest first, and the number that match.
    pub fn list(&self, filter: &ListFilter) -> Result<(Vec<AnalysisRow>, u64), OrchestratorError> {
        Ok(self.queue.list(filter)?)
    }

    /// Cancels a queued analysis, or tears down a running one and waits (a little) for it.
    pub fn cancel(&self, id: &AnalysisId) -> Result<AnalysisRow, OrchestratorError> {
        match self.queue.cancel(id)? {
            CancelResult::NotFound => return Err(OrchestratorError::NotFound(id.clone())),
            CancelResult::Finished(status) => {
                return Err(OrchestratorError::NotCancellable {
                    id: id.clone(),
                    status,
                })
            }
            CancelResult::Cancelled => {
                tracing::info!(analysis_id = %id, "queued analysis cancelled");
                self.webhooks.finished(id);
            }
            CancelResult::Cancelling => {
                tracing::info!(analysis_id = %id, "cancelling running analysis");
                let deadline = Instant::now() + CANCEL_WAIT;
                while Instant::now() < deadline {
                    match self.queue.get(id)? {
                        Some(row) if row.status.is_terminal() => return Ok(row),
                        None => return Err(OrchestratorError::NotFound(id.clone())),
                        Some(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            }
        }
        self.queue
            .get(id)?
            .ok_or_else(|| OrchestratorError::NotFound(id.clone()))
    }

    /// Removes an analysis that is not running: its files first, then its rows, so a crash in
    /// between leaves a row to delete again, never files nobody knows about.
    pub fn delete(&self, id: &AnalysisId) -> Result<(), OrchestratorError> {
        let row = self
            .queue
            .get(id)?
            .ok_or_else(|| OrchestratorError::NotFound(id.clone()))?;
        match row.status {
            Status::Running => return Err(OrchestratorError::StillRunning(id.clone())),
            // Cancelled first, so no worker can claim it while its sample is removed.
            Status::Queued => match self.queue.cancel(id)? {
                CancelResult::Cancelled | CancelResult::Finished(_) => {}
                CancelResult::Cancelling => {
                    return Err(OrchestratorError::StillRunning(id.clone()))
                }
                CancelResult::NotFound => return Err(OrchestratorError::NotFound(id.clone())),
            },
            _ => {}
        }
        remove_files(&self.data, id)?;
        match self.queue.delete(id)? {
            DeleteResult::Deleted => {
                tracing::info!(analysis_id = %id, "analysis deleted");
                Ok(())
            }
            DeleteResult::NotFound => Err(OrchestratorError::NotFound(id.clone())),
            DeleteResult::Running => Err(OrchestratorError::StillRunning(id.clone())),
        }
    }

    /// The artifacts of a finished analysis (or one of them) as a zip encrypted with
    /// `infected`, ready to stream.
    pub fn artifacts(
        &self,
        id: &AnalysisId,
        only: Option<&ArtifactName>,
    ) -> Result<File, OrchestratorError> {
        let row = self
            .queue
            .get(id)?
            .ok_or_else(|| OrchestratorError::NotFound(id.clone()))?;
        if !row.status.is_terminal() {
            return Err(OrchestratorError::NotFinished {
                id: id.clone(),
                status: row.status,
            });
        }
        let dir = self.data.analysis(id.as_str()).join("artifacts");
        artifacts::zip(&dir, only, &self.data.root().join("tmp")).map_err(|e| match e {
            ArtifactError::NotFound { name } => OrchestratorError::ArtifactNotFound {
                id: id.clone(),
                name,
            },
            other => OrchestratorError::Artifact(other),
        })
    }

    pub fn health(&self) -> Result<HealthState, OrchestratorError> {
        let (queued, running) = self.queue.counts()?;
        Ok(HealthState {
            probe: Probe::take(
                &self.data,
                self.config.service.min_free_disk_bytes,
                &self.config.sandbox,
            ),
            queued,
            running,
            capacity: self.capacity,
            draining: self.draining.load(Ordering::SeqCst),
        })
    }
}

/// Where the submitted bytes of an analysis are kept.
pub fn sample_path(data: &DataDir, id: &AnalysisId) -> PathBuf {
    data.submitted_sample(id.as_str())
}

/// Removes every file of an analysis: its sample and its analysis directory.
pub fn remove_files(data: &DataDir, id: &AnalysisId) -> Result<(), OrchestratorError> {
    let dir = data.analysis(id.as_str());
    match fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", &dir)(e)),
    }
    let sample = sample_path(data, id);
    match fs::remove_file(&sample) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", &sample)(e)),
    }
}

/// Writes a file so that it is complete on disk before the row that names it is committed.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), OrchestratorError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    // Only root reads samples: they may be live malware.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    file.write_all(bytes).map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("sync", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("rename", path))?;
    Ok(())
}

fn read_report(path: &Path) -> Option<serde_json::Value> {
    let text = fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}
