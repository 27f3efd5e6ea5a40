//! The typed commands the REST layer hands to the orchestrator, and the validated values they
//! carry. Everything here has already passed the parsers in [`super::api::parse`]; nothing
//! here touches the network, the database or a sandbox.

use std::fmt;

use crate::config::Limits;

use crate::egress::CallbackUrl;

/// Lifecycle of an analysis in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 5] = [
        Status::Queued,
        Status::Running,
        Status::Completed,
        Status::Failed,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the analysis will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An analysis id: a lowercase hyphenated UUID, the only form the service ever hands out.
/// Validating it before any use keeps ids out of paths they could escape from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnalysisId(String);

impl AnalysisId {
    /// A fresh random id.
    pub fn generate() -> AnalysisId {
        AnalysisId(uuid::Uuid::new_v4().to_string())
    }

    /// Accepts exactly `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in lowercase hex.
    pub fn parse(text: &str) -> Option<AnalysisId> {
        let groups: Vec<&str> = text.split('-').collect();
        let lengths = [8, 4, 4, 4, 12];
        let well_formed = groups.len() == lengths.len()
            && groups.iter().zip(lengths).all(|(g, n)| {
                g.len() == n
                    && g.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            });
        well_formed.then(|| AnalysisId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AnalysisId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lowest and highest priority a submission may ask for; higher runs first.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i64> = 0..=10;

/// Priority of a submission that names none.
pub const DEFAULT_PRIORITY: i64 = 5;

/// `POST /analyze`, validated.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The name as submitted, verbatim (the engine sanitises it for use in the guest).
    pub file_name: String,
    pub bytes: Vec<u8>,
    pub arguments: Vec<String>,
    pub limits: Limits,
    pub priority: i64,
    pub callback_url: Option<CallbackUrl>,
    pub network: crate::netsim::NetworkMode,
    pub dns: crate::netsim::DnsMode,
    /// The backend (and container runtime) that runs it.
    pub placement: crate::config::Placement,
}

/// `GET /analyses`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    pub status: Option<Status>,
    /// Lowercase hex.
    pub sha256: Option<String>,
    pub limit: u32,
    pub offset: u64,
}

/// Default and largest page of `GET /analyses`.
pub const DEFAULT_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 100;

/// The name of one artifact of an analysis, as the report names it: `dropped/<sha256>`,
/// `stdout.bin`, `stderr.bin` or `network.pcap`. No other form is accepted, so it is always a path below
/// the analysis' `artifacts/` directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactName(String);

impl ArtifactName {
    pub fn parse(text: &str) -> Option<ArtifactName> {
        let ok = match text.strip_prefix("dropped/") {
            Some(hash) => {
                hash.len() == 64
                    && hash
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            }
            None => matches!(text, "stdout.bin" | "stderr.bin" | crate::netsim::PCAP_NAME),
        };
        ok.then(|| ArtifactName(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analysis_ids_accept_only_lowercase_hyphenated_uuids() {
        let id = AnalysisId::generate();
        assert_eq!(AnalysisId::parse(id.as_str()), Some(id.clone()));
        for bad in [
            "",
            "..",
            "../../etc/passwd",
            "0000000-0000-0000-0000-000000000000",
            "00000000-0000-0000-0000-00000000000g",
            "00000000-0000-0000-0000-0000000000000",
            "00000000000000000000000000000000",
            "ABCDEF00-0000-0000-0000-000000000000",
            "00000000-0000-0000-0000-000000000000/..",
            "00000000-0000-0000-0000-00000000000\0",
            "00000000-0000-0000-0000-0000000000٠٠",
        ] {
            assert_eq!(AnalysisId::parse(bad), None, "{bad:?}");
        }
        assert!(AnalysisId::parse("00000000-0000-0000-0000-000000000000").is_some());
    }

    #[test]
    fn artifact_names_are_the_reports_names_only() {
        let hash = "a".repeat(64);
        assert!(ArtifactName::parse(&format!("dropped/{hash}")).is_some());
        assert!(ArtifactName::parse("stdout.bin").is_some());
        assert!(ArtifactName::parse("stderr.bin").is_some());
        assert!(ArtifactName::parse("network.pcap").is_some());
        for bad in [
            "",
            "dropped/",
            "dropped/../report.json",
            "../report.json",
            "report.json",
            "/etc/passwd",
            "dropped/AAAA",
            "stdout.bin/",
        ] {
            assert_eq!(ArtifactName::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            ArtifactName::parse(&format!("dropped/{}", "A".repeat(64))),
            None
        );
        assert_eq!(
            ArtifactName::parse(&format!("dropped/{}/x", "a".repeat(64))),
            None
        );
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("pending"), None);
        assert!(Status::Cancelled.is_terminal() && !Status::Running.is_terminal());
    }
}
