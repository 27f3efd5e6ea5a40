//! The durable queue: every analysis is one row of `analyses`, every state change one row of
//! `transitions`. Jobs run by priority, then in submission order.
//!
//! One connection behind one mutex: the queue's operations are short, and the mutex also
//! guards the cancel tokens of running jobs, so a cancel can never slip between a claim and
//! the registration of its token.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};

use super::command::{AnalysisId, ListFilter, Status, Submission};
use super::db::{self, sql, AnalysisRow, DbError, ROW_COLUMNS};

/// How many times a job may start. A job interrupted by the service stopping (even with
/// `kill -9`) is re-queued while it has started fewer times than this, then failed.
pub const MAX_ATTEMPTS: u32 = 2;

/// The error a job gets when the service stopped under it once too often.
pub const INTERRUPTED: &str =
    "interrupted: the service stopped while this analysis was running, twice";

/// Why a running job is being torn down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// `POST /results/{id}/cancel`.
    User,
    /// The service is stopping and the grace period is over.
    Shutdown,
}

/// The flag the engine polls, and who raised it first.
#[derive(Debug, Default)]
pub struct CancelToken {
    flag: AtomicBool,
    reason: AtomicU8,
}

impl CancelToken {
    pub fn cancel(&self, reason: CancelReason) {
        let code = match reason {
            CancelReason::User => 1,
            CancelReason::Shutdown => 2,
        };
        let _ = self
            .reason
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
        self.flag.store(true, Ordering::SeqCst);
    }

    /// The flag handed to [`crate::analysis::Engine::analyze`].
    pub fn flag(&self) -> &AtomicBool {
        &self.flag
    }

    pub fn reason(&self) -> Option<CancelReason> {
        match self.reason.load(Ordering::SeqCst) {
            1 => Some(CancelReason::User),
            2 => Some(CancelReason::Shutdown),
            _ => None,
        }
    }
}

/// A job a worker has taken.
#[derive(Debug)]
pub struct Claimed {
    pub row: AnalysisRow,
    pub token: Arc<CancelToken>,
}

/// How a run ended, as the worker saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Completed,
    Failed(String),
    /// Torn down at the user's request.
    Cancelled,
    /// Torn down because the service stopped.
    Interrupted,
}

/// What `cancel` did.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelResult {
    /// It was queued and is now cancelled.
    Cancelled,
    /// It is running; its sandbox is being torn down.
    Cancelling,
    /// Already finished with this status.
    Finished(Status),
    NotFound,
}

/// What `delete` did.
#[derive(Debug, Clone, PartialEq)]
pub enum DeleteResult {
    Deleted,
    Running,
    NotFound,
}

/// What restart recovery did to jobs found `running`.
#[derive(Debug, Default, PartialEq)]
pub struct Recovered {
    pub requeued: Vec<AnalysisId>,
    pub failed: Vec<AnalysisId>,
    pub cancelled: Vec<AnalysisId>,
}

/// What a webhook delivery needs.
#[derive(Debug, Clone)]
pub struct WebhookJob {
    pub url: String,
    pub row: AnalysisRow,
    pub attempts: u32,
}

struct Inner {
    conn: Connection,
    tokens: HashMap<AnalysisId, Arc<CancelToken>>,
}

/// The queue and the record of every analysis.
pub struct Queue {
    inner: Mutex<Inner>,
}

impl Queue {
    pub fn open(path: &Path) -> Result<Queue, DbError> {
        let conn = db::open(path)?;
        Ok(Queue {
            inner: Mutex::new(Inner {
                conn,
                tokens: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, DbError> {
        self.inner.lock().map_err(|_| DbError::Poisoned)
    }

    /// Records an accepted submission as `queued`.
    pub fn insert(&self, id: &AnalysisId, s: &Submission, sha256: &str) -> Result<String, DbError> {
        let now = db::now();
        let arguments = serde_json::to_string(&s.arguments).unwrap_or_else(|_| "[]".into());
        let webhook_state = s.callback_url.as_ref().map(|_| "pending");
        let mut inner = self.lock()?;
        let tx = inner.conn.transaction().map_err(sql("begin insert"))?;
        tx.execute(
            "INSERT INTO analyses (id, status, priority, file_name, sha256, size, arguments, \
             timeout_s, memory_bytes, cpus, callback_url, submitted_at, webhook_state, network, \
             dns, placement) \
             VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            params![
                id.as_str(),
                s.priority,
                s.file_name,
                sha256,
                s.bytes.len() as u64,
                arguments,
                s.limits.timeout_s,
                s.limits.memory_bytes,
                s.limits.cpus,
                s.callback_url.as_ref().map(|u| u.as_str()),
                now,
                webhook_state,
                s.network.as_str(),
                s.dns.as_str(),
                s.placement.stored(),
            ],
        )
        .map_err(sql("insert analysis"))?;
        log_transition(&tx, id, &now, Status::Queued, Some("submitted"))?;
        tx.commit().map_err(sql("commit insert"))?;
        Ok(now)
    }

    /// Takes the next job: highest priority first, then the oldest submission.
    pub fn claim(&self) -> Result<Option<Claimed>, DbError> {
        let now = db::now();
        let mut guard = self.lock()?;
        let inner = &mut *guard;
        let tx = inner.conn.transaction().map_err(sql("begin claim"))?;
        let row = tx
            .query_row(
                &format!(
                    "UPDATE analyses SET status = 'running', started_at = ?1, ended_at = NULL, \
                     attempts = attempts + 1 \
                     WHERE seq = (SELECT seq FROM analyses WHERE status = 'queued' \
                                  ORDER BY priority DESC, seq ASC LIMIT 1) \
                     RETURNING {ROW_COLUMNS}"
                ),
                params![now],
                AnalysisRow::read,
            )
            .optional()
            .map_err(sql("claim"))?;
        let Some(row) = row.transpose()? else {
            return Ok(None);
        };
        let detail = format!("attempt {}", row.attempts);
        log_transition(&tx, &row.id, &now, Status::Running, Some(&detail))?;
        tx.commit().map_err(sql("commit claim"))?;
        let token = Arc::new(CancelToken::default());
        inner.tokens.insert(row.id.clone(), token.clone());
        Ok(Some(Claimed { row, token }))
    }

    /// Records how a run ended; returns the job's new status (an interrupted job may be
    /// `queued` again).
    pub fn finish(&self, id: &AnalysisId, outcome: &Outcome) -> Result<Status, DbError> {
        let now = db::now();
        let mut guard = self.lock()?;
        let inner = &mut *guard;
        inner.tokens.remove(id);
        let tx = inner.conn.transaction().map_err(sql("begin finish"))?;
        let attempts: u32 = tx
            .query_row(
                "SELECT attempts FROM analyses WHERE id = ?1",
                params![id.as_str()],
                |r| r.get(0),
            )
            .map_err(sql("read attempts"))?;
        let (status, error) = match outcome {
            Outcome::Completed => (Status::Completed, None),
            Outcome::Failed(e) => (Status::Failed, Some(e.clone())),
            Outcome::Cancelled => (Status::Cancelled, None),
            Outcome::Interrupted if attempts < MAX_ATTEMPTS => (Status::Queued, None),
            Outcome::Interrupted => (Status::Failed, Some(INTERRUPTED.to_string())),
        };
        let ended_at = (status != Status::Queued).then_some(now.as_str());
        tx.execute(
            "UPDATE analyses SET status = ?2, ended_at = ?3, error = ?4 WHERE id = ?1",
            params![id.as_str(), status.as_str(), ended_at, error],
        )
        .map_err(sql("finish"))?;
        let detail = match (outcome, status) {
            (Outcome::Interrupted, Status::Queued) => Some("interrupted; re-queued"),
            _ => error.as_deref(),
        };
        log_transition(&tx, id, &now, status, detail)?;
        tx.commit().map_err(sql("commit finish"))?;
        Ok(status)
    }

    /// At start-up, before any worker: jobs left `running` by a service that died are
    /// re-queued once, then failed as interrupted; a cancel that was asked for is honoured.
    pub fn recover(&self) -> Result<Recovered, DbError> {
        let now = db::now();
        let mut inner = self.lock()?;
        let tx = inner.conn.transaction().map_err(sql("begin recover"))?;
        let stale: Vec<(String, u32, bool)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT id, attempts, cancel_requested FROM analyses WHERE status = 'running'",
                )
                .map_err(sql("select running"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(sql("select running"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql("select running"))?
        };
        let mut recovered = Recovered::default();
        for (id, attempts, cancel_requested) in stale {
            let Some(id) = AnalysisId::parse(&id) else {
                return Err(DbError::Corrupt {
                    id,
                    detail: "malformed id".into(),
                });
            };
            let (status, error, list) = if cancel_requested {
                (Status::Cancelled, None, &mut recovered.cancelled)
            } else if attempts < MAX_ATTEMPTS {
                (Status::Queued, None, &mut recovered.requeued)
            } else {
                (Status::Failed, Some(INTERRUPTED), &mut recovered.failed)
            };
            let ended_at = (status != Status::Queued).then_some(now.as_str());
            tx.execute(
                "UPDATE analyses SET status = ?2, ended_at = ?3, error = ?4 WHERE id = ?1",
                params![id.as_str(), status.as_str(), ended_at, error],
            )
            .map_err(sql("recover"))?;
            let detail = error.unwrap_or("the service stopped while it was running");
            log_transition(&tx, &id, &now, status, Some(detail))?;
            list.push(id);
        }
        tx.commit().map_err(sql("commit recover"))?;
        Ok(recovered)
    }

    /// Cancels a queued job at once, or asks a running one to stop.
    pub fn cancel(&self, id: &AnalysisId) -> Result<CancelResult, DbError> {
        let now = db::now();
        let mut guard = self.lock()?;
        let inner = &mut *guard;
        let status = match current_status(&inner.conn, id)? {
            None => return Ok(CancelResult::NotFound),
            Some(s) => s,
        };
        match status {
            Status::Queued => {
                let tx = inner.conn.transaction().map_err(sql("begin cancel"))?;
                tx.execute(
                    "UPDATE analyses SET status = 'cancelled', ended_at = ?2, cancel_requested = 1 \
                     WHERE id = ?1",
                    params![id.as_str(), now],
                )
                .map_err(sql("cancel"))?;
                log_transition(
                    &tx,
                    id,
                    &now,
                    Status::Cancelled,
                    Some("cancelled while queued"),
                )?;
                tx.commit().map_err(sql("commit cancel"))?;
                Ok(CancelResult::Cancelled)
            }
            Status::Running => {
                inner
                    .conn
                    .execute(
                        "UPDATE analyses SET cancel_requested = 1 WHERE id = ?1",
                        params![id.as_str()],
                    )
                    .map_err(sql("request cancel"))?;
                if let Some(token) = inner.tokens.get(id) {
                    token.cancel(CancelReason::User);
                }
                Ok(CancelResult::Cancelling)
            }
            done => Ok(CancelResult::Finished(done)),
        }
    }

    /// Removes the rows of a job that is not running.
    pub fn delete(&self, id: &AnalysisId) -> Result<DeleteResult, DbError> {
        let mut inner = self.lock()?;
        let tx = inner.conn.transaction().map_err(sql("begin delete"))?;
        let result = match current_status(&tx, id)? {
            None => DeleteResult::NotFound,
            Some(Status::Running) => DeleteResult::Running,
            Some(_) => {
                tx.execute("DELETE FROM analyses WHERE id = ?1", params![id.as_str()])
                    .map_err(sql("delete analysis"))?;
                tx.execute(
                    "DELETE FROM transitions WHERE analysis_id = ?1",
                    params![id.as_str()],
                )
                .map_err(sql("delete transitions"))?;
                DeleteResult::Deleted
            }
        };
        tx.commit().map_err(sql("commit delete"))?;
        Ok(result)
    }

    pub fn get(&self, id: &AnalysisId) -> Result<Option<AnalysisRow>, DbError> {
        let inner = self.lock()?;
        let row = inner
            .conn
            .query_row(
                &format!("SELECT {ROW_COLUMNS} FROM analyses WHERE id = ?1"),
                params![id.as_str()],
                AnalysisRow::read,
            )
            .optional()
            .map_err(sql("get analysis"))?;
        row.transpose()
    }

    /// One page of analyses, newest first, and how many match in all.
    pub fn list(&self, filter: &ListFilter) -> Result<(Vec<AnalysisRow>, u64), DbError> {
        let inner = self.lock()?;
        let status = filter.status.map(Status::as_str);
        let condition = "(?1 IS NULL OR status = ?1) AND (?2 IS NULL OR sha256 = ?2)";
        let total: u64 = inner
            .conn
            .query_row(
                &format!("SELECT COUNT(*) FROM analyses WHERE {condition}"),
                params![status, filter.sha256],
                |r| r.get(0),
            )
            .map_err(sql("count analyses"))?;
        let mut stmt = inner
            .conn
            .prepare(&format!(
                "SELECT {ROW_COLUMNS} FROM analyses WHERE {condition} \
                 ORDER BY seq DESC LIMIT ?3 OFFSET ?4"
            ))
            .map_err(sql("list analyses"))?;
        let rows = stmt
            .query_map(
                params![status, filter.sha256, filter.limit, filter.offset],
                AnalysisRow::read,
            )
            .map_err(sql("list analyses"))?;
        let mut page = Vec::new();
        for row in rows {
            page.push(row.map_err(sql("list analyses"))??);
        }
        Ok((page, total))
    }

    /// How many jobs are queued and running (through the queue index, not a table scan).
    pub fn counts(&self) -> Result<(u64, u64), DbError> {
        let inner = self.lock()?;
        let count = |status: &str| -> Result<u64, DbError> {
            inner
                .conn
                .query_row(
                    "SELECT COUNT(*) FROM analyses WHERE status = ?1",
                    params![status],
                    |r| r.get(0),
                )
                .map_err(sql("count queue"))
        };
        Ok((count("queued")?, count("running")?))
    }

    /// Finished analyses that ended before `cutoff` (a stored timestamp).
    pub fn expired(&self, cutoff: &str) -> Result<Vec<AnalysisId>, DbError> {
        let inner = self.lock()?;
        let mut stmt = inner
            .conn
            .prepare(
                "SELECT id FROM analyses WHERE status IN ('completed','failed','cancelled') \
                 AND COALESCE(ended_at, submitted_at) < ?1 ORDER BY seq",
            )
            .map_err(sql("select expired"))?;
        let ids = stmt
            .query_map(params![cutoff], |r| r.get::<_, String>(0))
            .map_err(sql("select expired"))?;
        let mut out = Vec::new();
        for id in ids {
            let id = id.map_err(sql("select expired"))?;
            match AnalysisId::parse(&id) {
                Some(id) => out.push(id),
                None => {
                    return Err(DbError::Corrupt {
                        id,
                        detail: "malformed id".into(),
                    })
                }
            }
        }
        Ok(out)
    }

    /// Whether any analysis row has this id (used to tell orphaned files from live ones).
    pub fn exists(&self, id: &AnalysisId) -> Result<bool, DbError> {
        Ok(current_status(&self.lock()?.conn, id)?.is_some())
    }

    /// Every token of a running job, to cancel them at shutdown.
    pub fn running_tokens(&self) -> Result<Vec<Arc<CancelToken>>, DbError> {
        Ok(self.lock()?.tokens.values().cloned().collect())
    }

    /// The state changes of one analysis, oldest first: `(at, status, detail)`.
    pub fn transitions(
        &self,
        id: &AnalysisId,
    ) -> Result<Vec<(String, String, Option<String>)>, DbError> {
        let inner = self.lock()?;
        let mut stmt = inner
            .conn
            .prepare(
                "SELECT at, status, detail FROM transitions WHERE analysis_id = ?1 ORDER BY rowid",
            )
            .map_err(sql("select transitions"))?;
        let rows = stmt
            .query_map(params![id.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(sql("select transitions"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("select transitions"))
    }

    /// Finished analyses whose callback has not been delivered yet.
    pub fn pending_webhooks(&self) -> Result<Vec<AnalysisId>, DbError> {
        let inner = self.lock()?;
        let mut stmt = inner
            .conn
            .prepare(
                "SELECT id FROM analyses WHERE webhook_state = 'pending' \
                 AND status IN ('completed','failed','cancelled') ORDER BY seq",
            )
            .map_err(sql("select webhooks"))?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(sql("select webhooks"))?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(id) = AnalysisId::parse(&id.map_err(sql("select webhooks"))?) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// The callback of a finished analysis, when one is still to be delivered.
    pub fn webhook_job(&self, id: &AnalysisId) -> Result<Option<WebhookJob>, DbError> {
        let inner = self.lock()?;
        let found = inner
            .conn
            .query_row(
                &format!(
                    "SELECT {ROW_COLUMNS}, webhook_attempts FROM analyses \
                     WHERE id = ?1 AND webhook_state = 'pending'"
                ),
                params![id.as_str()],
                |r| {
                    Ok((
                        AnalysisRow::read(r)?,
                        r.get::<_, u32>(db::ROW_COLUMN_COUNT)?,
                    ))
                },
            )
            .optional()
            .map_err(sql("get webhook"))?;
        let Some((row, attempts)) = found else {
            return Ok(None);
        };
        let row = row?;
        Ok(row
            .callback_url
            .clone()
            .map(|url| WebhookJob { url, row, attempts }))
    }

    /// Records one delivery attempt; `state` is `pending`, `delivered` or `failed`.
    pub fn webhook_attempted(&self, id: &AnalysisId, state: &str) -> Result<(), DbError> {
        let inner = self.lock()?;
        inner
            .conn
            .execute(
                "UPDATE analyses SET webhook_attempts = webhook_attempts + 1, webhook_state = ?2 \
                 WHERE id = ?1",
                params![id.as_str(), state],
            )
            .map_err(sql("record webhook"))?;
        Ok(())
    }
}

fn current_status(conn: &Connection, id: &AnalysisId) -> Result<Option<Status>, DbError> {
    let text: Option<String> = conn
        .query_row(
            "SELECT status FROM analyses WHERE id = ?1",
            params![id.as_str()],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql("read status"))?;
    match text {
        None => Ok(None),
        Some(t) => Status::parse(&t).map(Some).ok_or_else(|| DbError::Corrupt {
            id: id.to_string(),
            detail: format!("unknown status {t:?}"),
        }),
    }
}

fn log_transition(
    conn: &Connection,
    id: &AnalysisId,
    at: &str,
    status: Status,
    detail: Option<&str>,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO transitions (analysis_id, at, status, detail) VALUES (?1, ?2, ?3, ?4)",
        params![id.as_str(), at, status.as_str(), detail],
    )
    .map_err(sql("log transition"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;

    fn queue() -> (tempfile::TempDir, Queue) {
        let tmp = tempfile::tempdir().unwrap();
        let q = Queue::open(&tmp.path().join("aegis.db")).unwrap();
        (tmp, q)
    }

    fn submit(q: &Queue, priority: i64) -> AnalysisId {
        let id = AnalysisId::generate();
        let s = Submission {
            file_name: "a.sh".into(),
            bytes: b"echo".to_vec(),
            arguments: vec!["x".into()],
            limits: Limits {
                timeout_s: 5,
                memory_bytes: 1 << 28,
                cpus: 0.5,
                pids: 64,
                disk_bytes: 1 << 20,
            },
            priority,
            callback_url: None,
            network: crate::netsim::NetworkMode::None,
            dns: crate::netsim::DnsMode::Nxdomain,
            placement: crate::config::Placement::default(),
        };
        q.insert(&id, &s, &"0".repeat(64)).unwrap();
        id
    }

    #[test]
    fn the_backend_of_a_submission_is_kept_with_it() {
        use crate::config::{Backend, ContainerRuntime, Placement};
        let (_tmp, q) = queue();
        let native = submit(&q, 5);
        assert_eq!(
            q.get(&native).unwrap().unwrap().placement,
            Placement::default()
        );
        let id = AnalysisId::generate();
        let placement = Placement {
            backend: Backend::Docker,
            runtime: ContainerRuntime::Runsc,
        };
        let s = Submission {
            file_name: "a.sh".into(),
            bytes: b"echo".to_vec(),
            arguments: vec![],
            limits: crate::config::Config::default()
                .limits(&Default::default())
                .unwrap(),
            priority: 5,
            callback_url: None,
            network: crate::netsim::NetworkMode::None,
            dns: crate::netsim::DnsMode::Sinkhole,
            placement,
        };
        q.insert(&id, &s, &"0".repeat(64)).unwrap();
        let row = q.get(&id).unwrap().unwrap();
        assert_eq!(row.placement, placement);
        assert_eq!(row.network, crate::netsim::NetworkMode::None);
    }

    #[test]
    fn jobs_run_by_priority_then_in_submission_order() {
        let (_tmp, q) = queue();
        let low1 = submit(&q, 1);
        let high = submit(&q, 9);
        let low2 = submit(&q, 1);
        let order: Vec<AnalysisId> =
            std::iter::from_fn(|| q.claim().unwrap().map(|c| c.row.id)).collect();
        assert_eq!(order, vec![high, low1, low2]);
    }

    #[test]
    fn a_claimed_job_is_running_with_one_attempt_and_a_start_time() {
        let (_tmp, q) = queue();
        let id = submit(&q, 5);
        let c = q.claim().unwrap().unwrap();
        assert_eq!(c.row.id, id);
        assert_eq!(c.row.status, Status::Running);
        assert_eq!(c.row.attempts, 1);
        assert!(c.row.started_at.is_some());
        assert_eq!(c.row.arguments, vec!["x".to_string()]);
        assert_eq!(
            (c.row.network, c.row.dns),
            (
                crate::netsim::NetworkMode::None,
                crate::netsim::DnsMode::Nxdomain
            ),
            "the network choice is kept with the job"
        );
        assert!(q.claim().unwrap().is_none());
        assert_eq!(q.counts().unwrap(), (0, 1));
    }

    #[test]
    fn interrupted_jobs_are_requeued_once_then_failed() {
        let (_tmp, q) = queue();
        let id = submit(&q, 5);
        q.claim().unwrap().unwrap();
        assert_eq!(
            q.finish(&id, &Outcome::Interrupted).unwrap(),
            Status::Queued
        );
        q.claim().unwrap().unwrap();
        assert_eq!(
            q.finish(&id, &Outcome::Interrupted).unwrap(),
            Status::Failed
        );
        let row = q.get(&id).unwrap().unwrap();
        assert_eq!(row.error.as_deref(), Some(INTERRUPTED));
        let statuses: Vec<String> = q
            .transitions(&id)
            .unwrap()
            .into_iter()
            .map(|t| t.1)
            .collect();
        assert_eq!(
            statuses,
            ["queued", "running", "queued", "running", "failed"]
        );
    }

    #[test]
    fn recovery_requeues_once_fails_the_second_time_and_honours_cancels() {
        let (_tmp, q) = queue();
        let once = submit(&q, 5);
        q.claim().unwrap().unwrap();
        let rec = q.recover().unwrap();
        assert_eq!(rec.requeued, vec![once.clone()]);
        q.claim().unwrap().unwrap();
        let rec = q.recover().unwrap();
        assert_eq!(rec.failed, vec![once.clone()]);
        assert_eq!(q.get(&once).unwrap().unwrap().status, Status::Failed);

        let cancelled = submit(&q, 5);
        q.claim().unwrap().unwrap();
        assert_eq!(q.cancel(&cancelled).unwrap(), CancelResult::Cancelling);
        let rec = q.recover().unwrap();
        assert_eq!(rec.cancelled, vec![cancelled.clone()]);
        assert_eq!(
            q.get(&cancelled).unwrap().unwrap().status,
            Status::Cancelled
        );
    }

    #[test]
    fn cancel_of_a_running_job_raises_its_token() {
        let (_tmp, q) = queue();
        let id = submit(&q, 5);
        let c = q.claim().unwrap().unwrap();
        assert_eq!(q.cancel(&id).unwrap(), CancelResult::Cancelling);
        assert!(c.token.flag().load(Ordering::SeqCst));
        assert_eq!(c.token.reason(), Some(CancelReason::User));
        c.token.cancel(CancelReason::Shutdown);
        assert_eq!(c.token.reason(), Some(CancelReason::User));
        assert_eq!(
            q.finish(&id, &Outcome::Cancelled).unwrap(),
            Status::Cancelled
        );
        assert_eq!(
            q.cancel(&id).unwrap(),
            CancelResult::Finished(Status::Cancelled)
        );
        assert_eq!(
            q.cancel(&AnalysisId::generate()).unwrap(),
            CancelResult::NotFound
        );
    }

    #[test]
    fn running_jobs_cannot_be_deleted_others_can() {
        let (_tmp, q) = queue();
        let id = submit(&q, 5);
        q.claim().unwrap().unwrap();
        assert_eq!(q.delete(&id).unwrap(), DeleteResult::Running);
        q.finish(&id, &Outcome::Completed).unwrap();
        assert_eq!(q.delete(&id).unwrap(), DeleteResult::Deleted);
        assert_eq!(q.get(&id).unwrap(), None);
        assert!(q.transitions(&id).unwrap().is_empty());
        assert_eq!(q.delete(&id).unwrap(), DeleteResult::NotFound);
    }

    #[test]
    fn listing_filters_and_pages_newest_first() {
        let (_tmp, q) = queue();
        let ids: Vec<AnalysisId> = (0..5).map(|_| submit(&q, 5)).collect();
        q.claim().unwrap().unwrap();
        let all = ListFilter {
            status: None,
            sha256: None,
            limit: 2,
            offset: 1,
        };
        let (page, total) = q.list(&all).unwrap();
        assert_eq!(total, 5);
        assert_eq!(
            page.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            vec![ids[3].clone(), ids[2].clone()]
        );
        let running = ListFilter {
            status: Some(Status::Running),
            limit: 10,
            offset: 0,
            sha256: Some("0".repeat(64)),
        };
        let (page, total) = q.list(&running).unwrap();
        assert_eq!((page.len(), total), (1, 1));
        assert_eq!(page[0].id, ids[0]);
        let none = ListFilter {
            sha256: Some("1".repeat(64)),
            ..running
        };
        assert_eq!(q.list(&none).unwrap().1, 0);
    }

    #[test]
    fn expiry_takes_only_finished_jobs_older_than_the_cutoff() {
        let (_tmp, q) = queue();
        let done = submit(&q, 5);
        let waiting = submit(&q, 1);
        q.claim().unwrap().unwrap();
        q.finish(&done, &Outcome::Completed).unwrap();
        assert_eq!(q.expired("2000-01-01T00:00:00.000Z").unwrap(), vec![]);
        assert_eq!(q.expired("9999-01-01T00:00:00.000Z").unwrap(), vec![done]);
        assert!(q.exists(&waiting).unwrap());
    }
}
