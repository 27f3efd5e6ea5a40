//! The documents the API sends (and the JSON submission it documents). Their JSON Schemas go
//! into the OpenAPI document, so what is served and what is documented are the same types.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::super::db::AnalysisRow;
use super::super::orchestrator::{AnalysisState, HealthState};

/// `POST /analyze` as JSON. Parsed field by field by `api::parse` (which gives precise errors);
/// this type documents the same fields.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The sample, standard base64 with padding (no `data:` prefix, no line breaks).
    pub file_data: String,
    /// The name the sample was found under; kept verbatim in the report, sanitised for use in
    /// the guest. 1 to 255 bytes, no NUL. Default `sample`.
    pub file_name: Option<String>,
    /// Seconds the sample may run: a whole number from 1 to `sandbox.max_timeout` (3600 by
    /// default); anything else is refused with 400. Default `sandbox.default_timeout`.
    pub analysis_timeout: Option<u64>,
    /// Memory limit, e.g. `"256m"` or a number of bytes; from 16m up to the configured
    /// `sandbox.memory_limit`.
    #[schemars(with = "Option<SizeOrBytes>")]
    pub memory_limit: Option<serde_json::Value>,
    /// CPU limit in CPUs, e.g. `0.25`; up to the configured `sandbox.cpu_limit`.
    #[schemars(with = "Option<CpusValue>")]
    pub cpu_limit: Option<serde_json::Value>,
    /// argv for the sample after its own path (at most 64, each at most 4096 bytes).
    pub arguments: Option<Vec<String>>,
    /// 0 to 10, higher runs first; equal priorities run in submission order. Default 5.
    pub priority: Option<i64>,
    /// Receives the final status. Only `http://` URLs on 127.0.0.0/8, `[::1]` or `localhost`.
    pub callback_url: Option<String>,
    /// The sample's network: `simulated` (every address answered by the simulated internet,
    /// traffic recorded, `network.pcap` kept) or `none` (loopback only). No mode reaches the
    /// real internet. Default `network.mode` (`simulated`); always `none` with the docker backend,
    /// which refuses `simulated`.
    pub network: Option<String>,
    /// How names resolve with `simulated`: `sinkhole` (every name resolves to the simulated
    /// internet) or `nxdomain`. Default `network.dns` (`sinkhole`).
    pub dns: Option<String>,
    /// `native` or `docker`. Default `sandbox.backend`.
    pub backend: Option<String>,
    /// The docker backend's container runtime: `runc` or `runsc` (gVisor); refused with the
    /// native backend. Default `sandbox.runtime`.
    pub runtime: Option<String>,
}

/// A size as text (`"512m"`) or bytes.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SizeOrBytes {
    Text(String),
    Bytes(u64),
}

/// A number of CPUs as a number or text.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum CpusValue {
    Number(f64),
    Text(String),
}

/// `POST /analyze` as `multipart/form-data`: the `file` part plus the JSON fields as text
/// parts (`arguments` repeated, one argument per part).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct SubmitForm {
    /// The sample. Its file name is used when `file_name` is not given.
    #[schemars(with = "BinaryFile")]
    pub file: String,
    pub file_name: Option<String>,
    pub analysis_timeout: Option<u64>,
    pub memory_limit: Option<String>,
    pub cpu_limit: Option<String>,
    /// One part per argument, in order.
    pub arguments: Option<Vec<String>>,
    pub priority: Option<i64>,
    pub callback_url: Option<String>,
    pub network: Option<String>,
    pub dns: Option<String>,
    pub backend: Option<String>,
    pub runtime: Option<String>,
}

/// Binary content.
pub struct BinaryFile;

impl JsonSchema for BinaryFile {
    fn schema_name() -> String {
        "BinaryFile".into()
    }
    fn is_referenceable() -> bool {
        false
    }
    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        let mut schema = schemars::schema::SchemaObject {
            instance_type: Some(schemars::schema::InstanceType::String.into()),
            format: Some("binary".into()),
            ..Default::default()
        };
        schema.metadata().description = Some("The file's bytes.".into());
        schema.into()
    }
}

/// `202` to `POST /analyze`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Accepted {
    pub analysis_id: String,
    /// Always `queued`.
    pub status: String,
}

/// `GET /results/{analysis_id}`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct AnalysisResult {
    pub analysis_id: String,
    /// `queued`, `running`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// RFC 3339, UTC, milliseconds.
    pub submitted_at: String,
    /// When the (last) run started.
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// Why the analysis failed (`interrupted: ...` when the service stopped under it twice).
    pub error: Option<String>,
    /// The full report (what `aegis analyze --json` prints), once the analysis has ended.
    #[schemars(with = "Option<crate::report::Report>")]
    pub report: Option<serde_json::Value>,
}

impl From<AnalysisState> for AnalysisResult {
    fn from(s: AnalysisState) -> Self {
        AnalysisResult {
            analysis_id: s.row.id.to_string(),
            status: s.row.status.to_string(),
            submitted_at: s.row.submitted_at,
            started_at: s.row.started_at,
            ended_at: s.row.ended_at,
            error: s.row.error,
            report: s.report,
        }
    }
}

/// One analysis in `GET /analyses`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct AnalysisSummary {
    pub analysis_id: String,
    pub status: String,
    /// As submitted, verbatim.
    pub file_name: String,
    pub sha256: String,
    pub size: u64,
    pub priority: i64,
    /// How many times it started (2 after a restart re-queued it).
    pub attempts: u32,
    pub submitted_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub error: Option<String>,
}

impl From<AnalysisRow> for AnalysisSummary {
    fn from(r: AnalysisRow) -> Self {
        AnalysisSummary {
            analysis_id: r.id.to_string(),
            status: r.status.to_string(),
            file_name: r.file_name,
            sha256: r.sha256,
            size: r.size,
            priority: r.priority,
            attempts: r.attempts,
            submitted_at: r.submitted_at,
            started_at: r.started_at,
            ended_at: r.ended_at,
            error: r.error,
        }
    }
}

/// `GET /analyses`: newest first.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct AnalysisPage {
    pub analyses: Vec<AnalysisSummary>,
    /// How many analyses match the filters in all.
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// `POST /results/{analysis_id}/cancel`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct CancelResult {
    pub analysis_id: String,
    /// `cancelled`; or `running` (202) while the sandbox is still being torn down; or the
    /// status the analysis reached first.
    pub status: String,
}

/// `GET /health`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// `ok` (200) or `degraded` (503).
    pub status: String,
    pub version: String,
    pub backends: Backends,
    pub queue: QueueCounts,
    /// Why the service cannot analyse now (`image missing: ...`, `disk low: ...`,
    /// `backend unavailable: ...`, `shutting down: ...`); empty when ok.
    pub reasons: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Backends {
    pub native: Backend,
    /// Present when `sandbox.backend` is `docker`: whether the Docker Engine answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerBackend>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct DockerBackend {
    pub available: bool,
    /// The engine's version when it answered.
    pub engine: Option<String>,
    /// Why it cannot be used, when it cannot.
    pub error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Backend {
    pub available: bool,
    /// `v1` or `v2` when a usable cgroup hierarchy was found.
    pub cgroup: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct QueueCounts {
    pub queued: u64,
    pub running: u64,
    /// How many analyses run at once.
    pub capacity: usize,
}

impl From<HealthState> for Health {
    fn from(h: HealthState) -> Self {
        let reasons = h.reasons();
        Health {
            status: if reasons.is_empty() { "ok" } else { "degraded" }.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            backends: Backends {
                docker: h.probe.docker.as_ref().map(|d| DockerBackend {
                    available: d.is_ok(),
                    engine: d.as_ref().ok().cloned(),
                    error: d.as_ref().err().cloned(),
                }),
                native: Backend {
                    available: h.probe.native_available(),
                    cgroup: h.probe.cgroup.as_ref().ok().map(|v| v.to_string()),
                },
            },
            queue: QueueCounts {
                queued: h.queued,
                running: h.running,
                capacity: h.capacity,
            },
            reasons,
        }
    }
}

/// Every error: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `invalid_field`, `not_found`, `payload_too_large`, ...
    pub code: String,
    /// What was wrong and what is accepted, in words.
    pub message: String,
}
