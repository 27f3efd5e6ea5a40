//! The behavioural report: the document `aegis analyze --json` prints and the API serves.
//!
//! Names follow the field's conventions (VirusTotal's behaviour summary, CAPE). The JSON
//! Schema in `docs/report.schema.json` is generated from these types (`aegis schema`) and a
//! test keeps the two equal.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::Limits;

pub mod text;

/// Version of the report format. Bumped on any change a consumer could notice.
pub const REPORT_VERSION: &str = "1.1";

/// The whole report of one analysis.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    pub analysis_id: String,
    /// `completed` when the analysis ran to an end reason, `failed` when the product failed.
    pub status: ReportStatus,
    pub report_version: String,
    pub sample: SampleInfo,
    pub environment: Environment,
    pub execution: Execution,
    pub processes: Vec<Process>,
    pub process_tree: Vec<ProcessNode>,
    pub files: Files,
    pub network: Network,
    pub events_of_note: Vec<EventOfNote>,
    /// Registry changes of a Windows sample (empty for Linux samples).
    #[serde(default)]
    pub registry: Registry,
    /// Named mutexes a Windows sample created or opened (empty for Linux samples).
    #[serde(default)]
    pub mutexes: Vec<Mutex>,
    /// Windows services a sample created or started (empty for Linux samples).
    #[serde(default)]
    pub services: Vec<Service>,
    pub output: Output,
    pub summary: Summary,
    /// Sections that could not be fully collected, with reasons.
    pub incomplete: Vec<Incomplete>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    Completed,
    Failed,
}

/// What was submitted.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SampleInfo {
    /// The name as submitted, verbatim.
    pub file_name: String,
    /// The name the sample had inside the sandbox (sanitised basename).
    pub sandbox_path: String,
    pub size: u64,
    pub md5: String,
    pub sha1: String,
    pub sha256: String,
    /// Human-readable type, e.g. `ELF 64-bit executable, x86-64, dynamically linked`.
    pub file_type: String,
    /// `linux` (or `windows` for PE files).
    pub platform: String,
    /// `x86_64`, `i386`, `aarch64`, ... or `none` for scripts.
    pub arch: String,
}

/// Where the sample ran.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Environment {
    /// `native` (namespaces + seccomp + cgroups set up by aegis) or `docker` (a container of
    /// a Docker Engine).
    pub backend: String,
    /// The docker backend's OCI runtime: `runc`, or `runsc` (gVisor); null for `native`.
    #[serde(default)]
    pub runtime: Option<String>,
    pub image: String,
    pub image_digest: String,
    /// `simulated` (the simulated internet) or `none` (loopback only).
    pub network: String,
    pub limits: Limits,
    pub hostname: String,
    /// `v1` or `v2`.
    pub cgroup_version: String,
    pub aegis_version: String,
}

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Exited,
    Timeout,
    MemoryLimit,
    PidsLimit,
    DiskLimit,
    NotExecuted,
}

/// How the sample was run and how that ended.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Execution {
    /// argv as run inside the sandbox.
    pub command: Vec<String>,
    pub cwd: String,
    pub started_at: String,
    pub ended_at: String,
    pub duration_s: f64,
    /// Exit code of the first process, when it exited.
    pub exit_code: Option<i32>,
    /// Signal that ended the first process, when one did.
    pub signal: Option<String>,
    pub end_reason: EndReason,
    /// Every limit that was reached during the run (the end reason names the first that ended it).
    pub limits_hit: Vec<String>,
    /// Peak memory of the whole sandbox, when the cgroup reports it.
    pub memory_peak_bytes: Option<u64>,
    /// CPU time used by the whole sandbox.
    pub cpu_time_s: Option<f64>,
    pub error: Option<String>,
}

/// One process of the analysis. Processes are identified by `id`, never by pid alone.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Process {
    /// Stable identifier within this report (1, 2, ...); pid reuse never merges two processes.
    pub id: u32,
    /// pid inside the sandbox.
    pub pid: i32,
    /// pid of the parent at creation.
    pub ppid: i32,
    /// `id` of the parent process; null for the first process.
    pub parent_id: Option<u32>,
    /// Executable image (path as seen inside the sandbox).
    pub image: String,
    pub image_sha256: Option<String>,
    pub argv: Vec<String>,
    pub cwd: String,
    pub uid: Option<u32>,
    pub started_at: f64,
    pub ended_at: Option<f64>,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    /// True when its parent ended first and it was adopted by the sandbox's init.
    pub reparented: bool,
    /// Threads the process ever had, its main thread included.
    pub threads: u32,
    /// Images the process executed in order (a process may exec several times).
    pub execs: u32,
    /// The Windows view of a process that ran under Wine; null otherwise.
    #[serde(default)]
    pub windows: Option<WindowsProcess>,
}

/// How a process that ran under Wine looks from Windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WindowsProcess {
    /// Windows process id (wineserver's); null for wineserver itself.
    pub pid: Option<u32>,
    /// `C:\Windows\System32\cmd.exe`, when known.
    pub image: Option<String>,
    pub command_line: Option<String>,
    /// `id` of the Windows parent (the process that called CreateProcess), when known.
    pub parent_id: Option<u32>,
    /// `sample` (the sample or a process it started), `wine` (a program Wine runs for itself:
    /// services.exe, explorer.exe, ...), `wine_launcher` (Wine's first process before it loads
    /// the program) or `wineserver`.
    pub role: String,
}

/// A process and its children, nested.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProcessNode {
    pub id: u32,
    pub pid: i32,
    pub image: String,
    pub argv: Vec<String>,
    pub children: Vec<ProcessNode>,
}

/// File-system activity.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Files {
    pub created: Vec<FileEntry>,
    pub modified: Vec<FileEntry>,
    pub deleted: Vec<FileEntry>,
    pub renamed: Vec<RenameEntry>,
    pub made_executable: Vec<FileEntry>,
    pub timestamps_changed: Vec<FileEntry>,
}

/// One file touched by the sample.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct FileEntry {
    pub path: String,
    pub process_id: Option<u32>,
    pub time: Option<f64>,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    /// Name of the dropped-file artifact holding the content, when kept.
    pub artifact: Option<String>,
    /// Why the content was not kept (over the size cap, not a regular file, ...).
    pub artifact_note: Option<String>,
    /// True when the file still exists at the end of the analysis.
    pub exists_at_end: bool,
    /// `C:\...` for a file inside the Wine prefix; null otherwise.
    #[serde(default)]
    pub windows_path: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RenameEntry {
    pub from: String,
    pub to: String,
    pub process_id: Option<u32>,
    pub time: f64,
}

/// Network activity: what the sample's system calls asked for, and with the simulated
/// internet, what its traffic said.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Network {
    /// `simulated`: the sandbox's only way out leads to the simulated internet, which answers
    /// every address and records the traffic; `none`: loopback only, nothing was simulated.
    pub mode: String,
    /// What the mode means for the lists below, when they do not tell everything.
    pub note: Option<String>,
    /// How names resolved: `sinkhole` or `nxdomain` (null with `none`).
    pub dns_mode: Option<String>,
    /// Outgoing connections and datagrams: one record per connection, from the system calls,
    /// the traffic, or both.
    pub connections: Vec<Connection>,
    pub listeners: Vec<Listener>,
    /// DNS questions answered by the simulated internet (null with `none`).
    pub dns: Option<Vec<DnsQuery>>,
    /// HTTP requests (null with `none`).
    pub http: Option<Vec<HttpRequest>>,
    /// TLS ClientHellos (null with `none`).
    pub tls: Option<Vec<TlsHello>>,
    /// Name of the packet capture artifact (`network.pcap`), null with `none`.
    pub pcap: Option<String>,
    /// Packets in the capture and packets left out past its size cap.
    pub pcap_packets: Option<u64>,
    pub pcap_packets_not_written: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Connection {
    /// `tcp`, `udp`, `unix`, `raw`, `netlink`, `packet`, `unknown`.
    pub protocol: String,
    /// `connect` or `sendto` (system calls), `traffic` when only the traffic showed it.
    pub operation: String,
    pub dst_ip: Option<String>,
    pub dst_port: Option<u16>,
    /// Socket path for unix sockets.
    pub dst_path: Option<String>,
    pub process_id: Option<u32>,
    pub time: f64,
    /// `connected`, `in_progress`, `refused`, `unreachable`, `timed_out`, `denied`, `sent`,
    /// or `error:<ERRNO>` from the system call; `established` or `sent` from the traffic alone.
    pub outcome: String,
    /// The guest's source port, from the traffic.
    pub src_port: Option<u16>,
    /// Payload bytes the sample sent, from the traffic (null without it).
    pub bytes_out: Option<u64>,
    /// Payload bytes the simulated internet sent back.
    pub bytes_in: Option<u64>,
    /// UDP datagrams the sample sent, from the traffic.
    pub datagrams: Option<u64>,
    /// The first bytes the sample sent (up to 256), escaped as in `output`.
    pub first_bytes: Option<String>,
    /// `http`, `tls`, `dns`, `smtp`, `ftp`, `irc` when the simulated internet spoke it.
    pub service: Option<String>,
    /// Commands sent to an SMTP, FTP or IRC service, in order.
    pub commands: Vec<String>,
    /// `syscall`, `traffic`, or `syscall+traffic`.
    pub seen_in: String,
}

/// One DNS question.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DnsQuery {
    pub query: String,
    /// `A`, `AAAA`, `MX`, `TXT`, ...
    #[serde(rename = "type")]
    pub qtype: String,
    pub answers: Vec<String>,
    /// `NOERROR`, `NXDOMAIN`, ...
    pub rcode: String,
    pub process_id: Option<u32>,
    pub time: f64,
}

/// One HTTP request and the simulated internet's answer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub host: Option<String>,
    pub path: String,
    pub user_agent: Option<String>,
    /// Request headers in order, as `[name, value]`.
    pub headers: Vec<(String, String)>,
    pub body_size: u64,
    pub body_sha256: Option<String>,
    pub response_status: u16,
    pub response_content_type: String,
    pub dst_ip: Option<String>,
    pub dst_port: Option<u16>,
    pub process_id: Option<u32>,
    pub time: f64,
}

/// One TLS ClientHello.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TlsHello {
    /// Server name indication.
    pub sni: Option<String>,
    /// JA3 fingerprint (md5 of `ja3_string`).
    pub ja3: String,
    pub ja3_string: String,
    pub dst_ip: Option<String>,
    pub dst_port: Option<u16>,
    pub process_id: Option<u32>,
    pub time: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Listener {
    pub protocol: String,
    pub address: Option<String>,
    pub port: Option<u16>,
    pub process_id: Option<u32>,
    pub time: f64,
    /// `bind` or `listen`.
    pub operation: String,
    pub outcome: String,
}

/// Something an analyst should look at (anti-debugging, privilege changes, mounts, ...).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EventOfNote {
    /// e.g. `ptrace_traceme`, `tracerpid_check`, `mount_attempt`, `kill_other_process`.
    pub kind: String,
    pub process_id: Option<u32>,
    pub time: f64,
    pub detail: String,
}

/// Registry activity of a Windows sample, with full key paths (`HKEY_CURRENT_USER\...`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Registry {
    pub keys_created: Vec<RegistryKey>,
    pub keys_deleted: Vec<RegistryKey>,
    pub values_set: Vec<RegistryValue>,
    pub values_deleted: Vec<RegistryValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct RegistryKey {
    pub key: String,
    pub process_id: Option<u32>,
}

/// One registry value written or deleted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct RegistryValue {
    pub key: String,
    /// Value name; empty for the key's default value.
    pub name: String,
    /// `REG_SZ`, `REG_EXPAND_SZ`, `REG_MULTI_SZ`, `REG_DWORD`, `REG_QWORD`, `REG_BINARY`, ...
    #[serde(rename = "type")]
    pub value_type: String,
    /// Strings as text (REG_MULTI_SZ: one item per line), numbers as `0x0000002a (42)`, other
    /// data as hex bytes; cut after 4096 characters. For a deleted value, its last data.
    pub data: String,
    pub process_id: Option<u32>,
    /// Whether the value is in the registry saved at the end (null when the hives were not
    /// saved).
    pub exists_at_end: Option<bool>,
}

/// A named mutex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Mutex {
    /// The name as the sample gave it (`Global\x`, `Local\x` or a bare name).
    pub name: String,
    pub process_id: Option<u32>,
}

/// A Windows service created or started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Service {
    pub name: String,
    /// `created` (its key appeared under `HKLM\System\CurrentControlSet\Services`) or
    /// `started` (services.exe started its binary).
    pub operation: String,
    /// The `ImagePath` (binary and arguments).
    pub binary_path: Option<String>,
    pub display_name: Option<String>,
    /// `boot`, `system`, `auto`, `demand`, `disabled` (the `Start` value).
    pub start_type: Option<String>,
    pub process_id: Option<u32>,
}

/// What the sample printed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Output {
    pub stdout: Stream,
    pub stderr: Stream,
}

/// One output stream. `text` is exact when `encoding` is `utf-8`; with `escaped`, bytes that
/// are not UTF-8 appear as `\xNN` and a backslash as `\\`, so the bytes can be recovered.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Stream {
    pub text: String,
    pub encoding: String,
    /// Total bytes the sample wrote, including what was not kept.
    pub bytes: u64,
    pub truncated: bool,
    /// Artifact holding the stream, when it was kept beyond the report's share.
    pub artifact: Option<String>,
}

/// The VirusTotal-style behaviour summary.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    pub files_written: Vec<String>,
    pub files_deleted: Vec<String>,
    pub files_dropped: Vec<String>,
    pub processes_created: Vec<String>,
    pub processes_terminated: Vec<String>,
    pub command_executions: Vec<String>,
    pub ip_traffic: Vec<IpTraffic>,
    pub dns_lookups: Vec<DnsLookup>,
    pub http_conversations: Vec<HttpConversation>,
    /// Registry values set, as `<key>\\<value name>` (the key alone for its default value).
    #[serde(default)]
    pub registry_keys_set: Vec<String>,
    /// Registry keys deleted, and deleted values as `<key>\\<value name>`.
    #[serde(default)]
    pub registry_keys_deleted: Vec<String>,
    #[serde(default)]
    pub mutexes_created: Vec<String>,
    /// Names of the services created.
    #[serde(default)]
    pub services_created: Vec<String>,
    /// Counts of the sections, for quick triage.
    pub counts: Counts,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct IpTraffic {
    pub destination_ip: String,
    pub destination_port: u16,
    pub transport_layer_protocol: String,
}

/// A name the sample resolved and what it resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DnsLookup {
    pub hostname: String,
    pub resolved_ips: Vec<String>,
}

/// One HTTP request, VirusTotal style.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HttpConversation {
    pub url: String,
    pub request_method: String,
    pub request_headers: std::collections::BTreeMap<String, String>,
    pub response_status_code: u16,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Counts {
    pub processes: usize,
    pub files_created: usize,
    pub files_modified: usize,
    pub files_deleted: usize,
    pub connections: usize,
    pub events_of_note: usize,
    #[serde(default)]
    pub registry_keys_created: usize,
    #[serde(default)]
    pub registry_keys_deleted: usize,
    #[serde(default)]
    pub registry_values_set: usize,
    #[serde(default)]
    pub registry_values_deleted: usize,
    #[serde(default)]
    pub mutexes: usize,
    #[serde(default)]
    pub services: usize,
}

/// A section that could not be fully collected.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Incomplete {
    pub section: String,
    pub reason: String,
    /// Records left out, when known.
    pub dropped: Option<u64>,
}

/// The JSON Schema of [`Report`], as kept in `docs/report.schema.json`.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(Report);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_in_docs_matches_the_types() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/report.schema.json");
        let kept = std::fs::read_to_string(path).expect("docs/report.schema.json exists");
        assert!(
            kept == super::schema_json(),
            "docs/report.schema.json is stale: regenerate it with `aegis schema > docs/report.schema.json`"
        );
    }
}
