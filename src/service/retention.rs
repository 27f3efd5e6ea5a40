//! Retention: finished analyses expire `service.retention_days` after they ended; the files
//! go first, then the rows, so nothing is ever left on disk that no row names. Queued and
//! running analyses never expire. Runs at start-up and then every hour.

use std::sync::Arc;
use std::time::Duration;

use crate::paths::DataDir;

use super::command::AnalysisId;
use super::db;
use super::orchestrator::{self, OrchestratorError};
use super::queue::{DeleteResult, Queue};

/// Time between two retention passes.
pub const INTERVAL: Duration = Duration::from_secs(3600);

/// Removes every analysis that ended more than `days` before `now`; returns their ids.
pub fn expire(
    queue: &Queue,
    data: &DataDir,
    days: u64,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<AnalysisId>, OrchestratorError> {
    let days = i64::try_from(days).unwrap_or(i64::MAX).min(36500);
    let cutoff = db::timestamp(now - chrono::Duration::days(days));
    let mut removed = Vec::new();
    for id in queue.expired(&cutoff)? {
        orchestrator::remove_files(data, &id)?;
        if queue.delete(&id)? == DeleteResult::Deleted {
            removed.push(id);
        }
    }
    Ok(removed)
}

/// Sample files whose analysis has no row (a crash between writing the sample and committing
/// the row): removed at start-up.
pub fn remove_orphan_samples(queue: &Queue, data: &DataDir) -> Result<usize, OrchestratorError> {
    let dir = data.root().join("samples");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let orphan = match AnalysisId::parse(&name) {
            Some(id) => !queue.exists(&id)?,
            None => name.starts_with('.') && name.ends_with(".tmp"),
        };
        if orphan && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// One pass now, then one every [`INTERVAL`], for as long as the runtime lives.
pub async fn run(queue: Arc<Queue>, data: DataDir, days: u64) {
    loop {
        let (q, d) = (queue.clone(), data.clone());
        let pass =
            tokio::task::spawn_blocking(move || expire(&q, &d, days, chrono::Utc::now())).await;
        match pass {
            Ok(Ok(ids)) if !ids.is_empty() => {
                tracing::info!(count = ids.len(), days, "expired analyses removed")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "retention pass failed"),
            Err(e) => tracing::error!(error = %e, "retention task failed"),
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::service::command::Submission;
    use crate::service::queue::Outcome;

    fn submit(q: &Queue, data: &DataDir) -> AnalysisId {
        let id = AnalysisId::generate();
        let s = Submission {
            file_name: "a".into(),
            bytes: b"x".to_vec(),
            arguments: vec![],
            limits: Limits {
                timeout_s: 1,
                memory_bytes: 1 << 24,
                cpus: 0.5,
                pids: 8,
                disk_bytes: 1 << 20,
            },
            priority: 5,
            callback_url: None,
            network: crate::netsim::NetworkMode::None,
            dns: crate::netsim::DnsMode::Nxdomain,
            placement: crate::config::Placement::default(),
        };
        q.insert(&id, &s, &"0".repeat(64)).unwrap();
        std::fs::create_dir_all(data.root().join("samples")).unwrap();
        std::fs::write(orchestrator::sample_path(data, &id), b"x").unwrap();
        std::fs::create_dir_all(data.analysis(id.as_str()).join("artifacts")).unwrap();
        id
    }

    #[test]
    fn finished_analyses_expire_with_their_files_and_others_stay() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path());
        let q = Queue::open(&tmp.path().join("aegis.db")).unwrap();
        let done = submit(&q, &data);
        let queued = submit(&q, &data);
        q.claim().unwrap().unwrap();
        q.finish(&done, &Outcome::Completed).unwrap();

        let soon = chrono::Utc::now() + chrono::Duration::days(29);
        assert_eq!(expire(&q, &data, 30, soon).unwrap(), vec![]);
        let later = chrono::Utc::now() + chrono::Duration::days(31);
        assert_eq!(expire(&q, &data, 30, later).unwrap(), vec![done.clone()]);
        assert!(!data.analysis(done.as_str()).exists());
        assert!(!orchestrator::sample_path(&data, &done).exists());
        assert_eq!(q.get(&done).unwrap(), None);
        assert!(q.get(&queued).unwrap().is_some());
        assert!(orchestrator::sample_path(&data, &queued).exists());
    }

    #[test]
    fn samples_without_a_row_are_orphans() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path());
        let q = Queue::open(&tmp.path().join("aegis.db")).unwrap();
        let kept = submit(&q, &data);
        let orphan = AnalysisId::generate();
        std::fs::write(orchestrator::sample_path(&data, &orphan), b"x").unwrap();
        std::fs::write(data.root().join("samples/.half.tmp"), b"x").unwrap();
        assert_eq!(remove_orphan_samples(&q, &data).unwrap(), 2);
        assert!(orchestrator::sample_path(&data, &kept).exists());
        assert!(!orchestrator::sample_path(&data, &orphan).exists());
    }
}
