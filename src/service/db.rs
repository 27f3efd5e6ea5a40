//! The service's SQLite database, `<data-dir>/aegis.db`: its schema, how it is opened, and how
//! a row reads back.
//!
//! WAL journal with `synchronous=FULL`: a commit is on disk before the client hears about it,
//! so an accepted submission survives `kill -9` and a power cut alike.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, Row};

use super::command::{AnalysisId, Status};

/// What went wrong with the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database {op} failed: {source}")]
    Sqlite {
        op: &'static str,
        source: rusqlite::Error,
    },
    #[error("database row of analysis {id} is inconsistent: {detail}")]
    Corrupt { id: String, detail: String },
    #[error("database {path} has schema version {found}; this aegis knows up to {known}")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("the queue's lock was poisoned by a panic")]
    Poisoned,
}

/// Wraps a rusqlite error with the operation it failed in.
pub fn sql(op: &'static str) -> impl FnOnce(rusqlite::Error) -> DbError {
    move |source| DbError::Sqlite { op, source }
}

/// Version written to `PRAGMA user_version`; bumped with every schema change.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS analyses (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    status           TEXT NOT NULL
                     CHECK (status IN ('queued','running','completed','failed','cancelled')),
    priority         INTEGER NOT NULL,
    file_name        TEXT NOT NULL,
    sha256           TEXT NOT NULL,
    size             INTEGER NOT NULL,
    arguments        TEXT NOT NULL,
    timeout_s        INTEGER NOT NULL,
    memory_bytes     INTEGER NOT NULL,
    cpus             REAL NOT NULL,
    callback_url     TEXT,
    submitted_at     TEXT NOT NULL,
    started_at       TEXT,
    ended_at         TEXT,
    error            TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    webhook_state    TEXT CHECK (webhook_state IN ('pending','delivered','failed')),
    webhook_attempts INTEGER NOT NULL DEFAULT 0,
    network          TEXT NOT NULL DEFAULT 'simulated' CHECK (network IN ('none','simulated')),
    dns              TEXT NOT NULL DEFAULT 'sinkhole' CHECK (dns IN ('sinkhole','nxdomain')),
    placement        TEXT NOT NULL DEFAULT 'native'
);
CREATE INDEX IF NOT EXISTS analyses_queue ON analyses (status, priority DESC, seq);
CREATE INDEX IF NOT EXISTS analyses_sha256 ON analyses (sha256);
CREATE TABLE IF NOT EXISTS transitions (
    analysis_id TEXT NOT NULL,
    at          TEXT NOT NULL,
    status      TEXT NOT NULL,
    detail      TEXT
);
CREATE INDEX IF NOT EXISTS transitions_analysis ON transitions (analysis_id);
";

/// Adds the network choice and the backend (with its container runtime) of an analysis.
const MIGRATE_1_TO_2: &str = "
ALTER TABLE analyses ADD COLUMN network TEXT NOT NULL DEFAULT 'none'
    CHECK (network IN ('none','simulated'));
ALTER TABLE analyses ADD COLUMN dns TEXT NOT NULL DEFAULT 'sinkhole'
    CHECK (dns IN ('sinkhole','nxdomain'));
ALTER TABLE analyses ADD COLUMN placement TEXT NOT NULL DEFAULT 'native';
";

/// Opens (creating when needed) the database and brings its schema up to date.
pub fn open(path: &Path) -> Result<Connection, DbError> {
    let open_err = |source| DbError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open(path).map_err(open_err)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(open_err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_err)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(open_err)?;
    if version > SCHEMA_VERSION {
        return Err(DbError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    conn.execute_batch(SCHEMA).map_err(open_err)?;
    if version == 1 {
        // Version 1 had no network or backend choice: what it queued runs as it would have,
        // natively with loopback only.
        conn.execute_batch(MIGRATE_1_TO_2).map_err(open_err)?;
    }
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(open_err)?;
    Ok(conn)
}

/// A timestamp as the service stores and serves it: RFC 3339, UTC, milliseconds. Its text
/// order is its time order, so SQL compares them as strings.
pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Now, as a stored timestamp.
pub fn now() -> String {
    timestamp(chrono::Utc::now())
}

/// One row of `analyses`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisRow {
    pub id: AnalysisId,
    pub status: Status,
    pub priority: i64,
    pub file_name: String,
    pub sha256: String,
    pub size: u64,
    pub arguments: Vec<String>,
    pub timeout_s: u64,
    pub memory_bytes: u64,
    pub cpus: f64,
    pub callback_url: Option<String>,
    pub submitted_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub error: Option<String>,
    pub attempts: u32,
    pub cancel_requested: bool,
    pub network: crate::netsim::NetworkMode,
    pub dns: crate::netsim::DnsMode,
    pub placement: crate::config::Placement,
}

/// How many columns [`ROW_COLUMNS`] names: a query that selects more reads them from here on.
pub const ROW_COLUMN_COUNT: usize = 20;

/// The columns [`AnalysisRow::read`] expects, in its order.
pub const ROW_COLUMNS: &str = "id, status, priority, file_name, sha256, size, arguments, \
     timeout_s, memory_bytes, cpus, callback_url, submitted_at, started_at, ended_at, error, \
     attempts, cancel_requested, network, dns, placement";

impl AnalysisRow {
    /// Reads a row selected with [`ROW_COLUMNS`].
    pub fn read(row: &Row<'_>) -> rusqlite::Result<Result<AnalysisRow, DbError>> {
        let id: String = row.get(0)?;
        let status: String = row.get(1)?;
        let arguments: String = row.get(6)?;
        let corrupt = |detail: String| DbError::Corrupt {
            id: id.clone(),
            detail,
        };
        let Some(parsed_id) = AnalysisId::parse(&id) else {
            return Ok(Err(corrupt("malformed id".into())));
        };
        let Some(status) = Status::parse(&status) else {
            return Ok(Err(corrupt(format!("unknown status {status:?}"))));
        };
        let arguments: Vec<String> = match serde_json::from_str(&arguments) {
            Ok(a) => a,
            Err(e) => return Ok(Err(corrupt(format!("arguments: {e}")))),
        };
        let network: String = row.get(17)?;
        let Some(network) = crate::netsim::NetworkMode::parse(&network) else {
            return Ok(Err(corrupt(format!("unknown network {network:?}"))));
        };
        let dns: String = row.get(18)?;
        let Some(dns) = crate::netsim::DnsMode::parse(&dns) else {
            return Ok(Err(corrupt(format!("unknown dns {dns:?}"))));
        };
        let placement: String = row.get(19)?;
        let Some(placement) = crate::config::Placement::from_stored(&placement) else {
            return Ok(Err(corrupt(format!("unknown placement {placement:?}"))));
        };
        Ok(Ok(AnalysisRow {
            id: parsed_id,
            status,
            priority: row.get(2)?,
            file_name: row.get(3)?,
            sha256: row.get(4)?,
            size: row.get(5)?,
            arguments,
            timeout_s: row.get(7)?,
            memory_bytes: row.get(8)?,
            cpus: row.get(9)?,
            callback_url: row.get(10)?,
            submitted_at: row.get(11)?,
            started_at: row.get(12)?,
            ended_at: row.get(13)?,
            error: row.get(14)?,
            attempts: row.get(15)?,
            cancel_requested: row.get(16)?,
            network,
            dns,
            placement,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_row_column_count_is_the_length_of_the_list() {
        assert_eq!(ROW_COLUMNS.split(',').count(), ROW_COLUMN_COUNT);
    }

    #[test]
    fn schema_is_created_once_and_reopened() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("aegis.db");
        drop(open(&path).unwrap());
        let conn = open(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_version_1_database_gains_the_network_and_placement_columns() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("aegis.db");
        let conn = Connection::open(&path).unwrap();
        let added = SCHEMA.find(",\n    network").unwrap()..SCHEMA.find("\n);").unwrap();
        let mut v1 = SCHEMA.to_string();
        v1.replace_range(added, "");
        assert!(
            !v1.contains("network") && !v1.contains("placement"),
            "the version 1 schema has no network or placement column: {v1}"
        );
        conn.execute_batch(&v1).unwrap();
        conn.execute(
            "INSERT INTO analyses (id, status, priority, file_name, sha256, size, arguments, \
             timeout_s, memory_bytes, cpus, submitted_at) VALUES \
             ('00000000-0000-0000-0000-000000000001', 'queued', 5, 'a', 'x', 1, '[]', 5, 1, 0.5, 't')",
            [],
        )
        .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        drop(conn);
        let conn = open(&path).unwrap();
        let (network, dns): (String, String) = conn
            .query_row("SELECT network, dns FROM analyses", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((network.as_str(), dns.as_str()), ("none", "sinkhole"));
        let placement: String = conn
            .query_row("SELECT placement FROM analyses", [], |r| r.get(0))
            .unwrap();
        assert_eq!(placement, "native");
    }

    #[test]
    fn a_newer_schema_is_refused_not_downgraded() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("aegis.db");
        let conn = open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = open(&path).unwrap_err();
        assert!(matches!(err, DbError::TooNew { found, .. } if found == SCHEMA_VERSION + 1));
    }

    #[test]
    fn timestamps_sort_as_text_in_time_order() {
        use chrono::TimeZone;
        let a = chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let b = a + chrono::Duration::milliseconds(1);
        assert_eq!(timestamp(a), "2026-01-02T03:04:05.000Z");
        assert!(timestamp(a) < timestamp(b));
    }
}
