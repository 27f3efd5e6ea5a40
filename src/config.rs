//! `config.json`: the product's documented shape, validated strictly.
//!
//! Every key is known; an unknown key or a bad value is an error that names the key and the
//! accepted form. Flags given on the command line override what the file says.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::netsim::{DnsMode, NetworkMode, NetworkSpec};

/// What went wrong while reading or checking configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid JSON")]
    Syntax {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{what}: {problem}; accepted: {accepted}")]
    Limit {
        what: &'static str,
        problem: String,
        accepted: &'static str,
    },
    #[error("config key `{key}`: {problem}; accepted: {accepted}")]
    Invalid {
        key: String,
        problem: String,
        accepted: &'static str,
    },
}

/// Resource limits applied to one analysis.
#[derive(
    Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct Limits {
    /// Wall-clock timeout in seconds.
    pub timeout_s: u64,
    /// Memory limit in bytes (cgroup memory controller).
    pub memory_bytes: u64,
    /// CPU limit in CPUs (0.5 = half of one CPU).
    pub cpus: f64,
    /// Maximum number of tasks (processes and threads) at once.
    pub pids: u64,
    /// Size of the writable layer, `/tmp` and `/run` together, in bytes.
    pub disk_bytes: u64,
}

/// Which sandbox runs an analysis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    /// Namespaces, seccomp, cgroups and overlayfs set up by `aegis` itself.
    #[default]
    Native,
    /// A container of a Docker Engine (see docs/backends.md).
    Docker,
}

impl Backend {
    pub const FORM: &'static str = "\"native\" or \"docker\"";

    pub fn parse(text: &str) -> Result<Backend, String> {
        match text {
            "native" => Ok(Backend::Native),
            "docker" => Ok(Backend::Docker),
            other => Err(format!("`{other}` is not a backend")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Native => "native",
            Backend::Docker => "docker",
        }
    }
}

/// The OCI runtime the docker backend asks the engine for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ContainerRuntime {
    /// The engine's default runtime: namespaces and cgroups of the host kernel.
    #[default]
    Runc,
    /// gVisor: the sample's system calls are served by a user-space kernel.
    Runsc,
}

impl ContainerRuntime {
    pub const FORM: &'static str = "\"runc\" or \"runsc\"";

    pub fn parse(text: &str) -> Result<ContainerRuntime, String> {
        match text {
            "runc" => Ok(ContainerRuntime::Runc),
            "runsc" => Ok(ContainerRuntime::Runsc),
            other => Err(format!("`{other}` is not a container runtime")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ContainerRuntime::Runc => "runc",
            ContainerRuntime::Runsc => "runsc",
        }
    }
}

/// Where an analysis runs: the backend, and for docker the runtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placement {
    pub backend: Backend,
    pub runtime: ContainerRuntime,
}

impl Placement {
    /// As stored: `native`, `docker/runc` or `docker/runsc`.
    pub fn stored(self) -> String {
        match self.backend {
            Backend::Native => "native".into(),
            Backend::Docker => format!("docker/{}", self.runtime.as_str()),
        }
    }

    /// Reads what [`Placement::stored`] wrote.
    pub fn from_stored(text: &str) -> Option<Placement> {
        let (backend, runtime) = text.split_once('/').unwrap_or((text, "runc"));
        Some(Placement {
            backend: Backend::parse(backend).ok()?,
            runtime: ContainerRuntime::parse(runtime).ok()?,
        })
    }
}

/// Everything `config.json` can set, with defaults filled in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub sandbox: SandboxConfig,
    pub service: ServiceConfig,
    pub network: NetworkConfig,
}

/// The `network` section: what network an analysis gets unless it asks otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    pub mode: NetworkMode,
    pub dns: DnsMode,
    /// Size cap of `network.pcap`, in bytes.
    pub pcap_max_bytes: u64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            mode: NetworkMode::Simulated,
            dns: DnsMode::Sinkhole,
            pcap_max_bytes: 64 << 20,
        }
    }
}

/// Accepted forms of the network choices, shared with the command line and the API.
pub const NETWORK_FORM: &str = "\"simulated\" or \"none\"";
pub const DNS_FORM: &str = "\"sinkhole\" or \"nxdomain\"";

/// The `sandbox` section.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxConfig {
    pub default_timeout: u64,
    pub max_timeout: u64,
    pub memory_limit: u64,
    pub cpu_limit: f64,
    pub pids_limit: u64,
    pub disk_limit: u64,
    /// Largest dropped file kept as an artifact, in bytes.
    pub artifact_max_bytes: u64,
    /// How much of stdout and of stderr the report keeps, in bytes each.
    pub output_max_bytes: u64,
    pub backend: Backend,
    /// The runtime of the docker backend.
    pub runtime: ContainerRuntime,
    /// The Docker Engine's API socket.
    pub docker_socket: String,
}

/// The `service` section, read by `aegis serve`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub listen: String,
    pub concurrency: Option<usize>,
    pub max_body_bytes: u64,
    pub retention_days: u64,
    pub min_free_disk_bytes: u64,
    pub api_tokens: Vec<String>,
    pub webhook_url: Option<String>,
    pub shutdown_grace_s: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            default_timeout: 60,
            max_timeout: 3600,
            memory_limit: 1 << 30,
            cpu_limit: 0.5,
            pids_limit: 256,
            disk_limit: 512 << 20,
            artifact_max_bytes: 16 << 20,
            output_max_bytes: 1 << 20,
            backend: Backend::Native,
            runtime: ContainerRuntime::Runc,
            docker_socket: DEFAULT_DOCKER_SOCKET.to_string(),
        }
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            listen: "127.0.0.1:8002".to_string(),
            concurrency: None,
            max_body_bytes: 64 << 20,
            retention_days: 30,
            min_free_disk_bytes: 1 << 30,
            api_tokens: Vec::new(),
            webhook_url: None,
            shutdown_grace_s: 30,
        }
    }
}

impl Config {
    /// Reads the file given by `--config`, or `./config.json` when it exists, or defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let default = PathBuf::from("config.json");
                if !default.exists() {
                    return Ok(Config::default());
                }
                default
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|source| ConfigError::Syntax {
            path: path.clone(),
            source,
        })?;
        Config::from_value(&value)
    }

    /// Checks a parsed document key by key.
    pub fn from_value(value: &Value) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let top = as_object(value, "(top level)")?;
        for (key, section) in top {
            match key.as_str() {
                "sandbox" => apply_sandbox(&mut config.sandbox, as_object(section, "sandbox")?)?,
                "service" => apply_service(&mut config.service, as_object(section, "service")?)?,
                "network" => apply_network(&mut config.network, as_object(section, "network")?)?,
                other => return Err(unknown(other, "`sandbox`, `service` or `network`")),
            }
        }
        if config.sandbox.default_timeout > config.sandbox.max_timeout {
            return Err(invalid(
                "sandbox.default_timeout",
                format!(
                    "{} is above sandbox.max_timeout ({})",
                    config.sandbox.default_timeout, config.sandbox.max_timeout
                ),
                "a number of seconds no larger than sandbox.max_timeout",
            ));
        }
        Ok(config)
    }

    /// The limits of an analysis from config, overridden by what the caller asked for.
    pub fn limits(&self, overrides: &LimitOverrides) -> Result<Limits, ConfigError> {
        let s = &self.sandbox;
        let timeout_s = overrides.timeout_s.unwrap_or(s.default_timeout);
        if timeout_s == 0 || timeout_s > s.max_timeout {
            return Err(ConfigError::Limit {
                what: "timeout (--timeout, analysis_timeout)",
                problem: format!("{timeout_s} is out of range"),
                accepted: TIMEOUT_FORM,
            });
        }
        let memory_bytes = overrides.memory_bytes.unwrap_or(s.memory_limit);
        Ok(Limits {
            timeout_s,
            memory_bytes,
            cpus: overrides.cpus.unwrap_or(s.cpu_limit),
            pids: s.pids_limit,
            // The writable layer is RAM-backed and charged to the sandbox's memory: at most
            // half of the memory limit, so a full disk leaves the processes room to run.
            disk_bytes: s.disk_limit.min(memory_bytes / 2),
        })
    }

    /// The network of an analysis from config, overridden by what the caller asked for.
    pub fn network_spec(&self, mode: Option<NetworkMode>, dns: Option<DnsMode>) -> NetworkSpec {
        NetworkSpec {
            mode: mode.unwrap_or(self.network.mode),
            dns: dns.unwrap_or(self.network.dns),
            pcap_max_bytes: self.network.pcap_max_bytes,
        }
    }

    /// The network mode an analysis gets on `backend`: what was asked, else `network.mode`.
    /// The docker backend has no simulated internet: its analyses default to `none`, and
    /// asking for `simulated` there is refused with the reason.
    pub fn network_mode_for(
        &self,
        backend: Backend,
        asked: Option<NetworkMode>,
    ) -> Result<NetworkMode, String> {
        match (backend, asked) {
            (Backend::Docker, Some(NetworkMode::Simulated)) => Err(DOCKER_HAS_NO_NETWORK.into()),
            (Backend::Docker, _) => Ok(NetworkMode::None),
            (Backend::Native, asked) => Ok(asked.unwrap_or(self.network.mode)),
        }
    }
}

/// Why a Windows sample is refused with the docker backend.
pub const WINDOWS_ON_DOCKER: &str = "Windows samples run under Wine with the native backend \
     only; the docker backend runs Linux samples";

/// Why `simulated` is refused with the docker backend.
pub const DOCKER_HAS_NO_NETWORK: &str = "the docker backend runs samples with no network; \
     the simulated internet needs the native backend (or ask for network \"none\")";

/// Where the docker backend finds the engine unless `sandbox.docker_socket` says otherwise.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

impl Config {
    /// The configured placement, overridden by what the caller asked for.
    pub fn placement(
        &self,
        backend: Option<Backend>,
        runtime: Option<ContainerRuntime>,
    ) -> Placement {
        Placement {
            backend: backend.unwrap_or(self.sandbox.backend),
            runtime: runtime.unwrap_or(self.sandbox.runtime),
        }
    }
}

/// The smallest memory limit a sandbox can start with.
pub const MIN_MEMORY_BYTES: u64 = 16 << 20;

const TIMEOUT_FORM: &str = "a whole number of seconds from 1 to sandbox.max_timeout";

/// Per-analysis values that beat the config file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitOverrides {
    pub timeout_s: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
}

fn apply_sandbox(s: &mut SandboxConfig, map: &Map<String, Value>) -> Result<(), ConfigError> {
    for (key, value) in map {
        let full = format!("sandbox.{key}");
        match key.as_str() {
            "default_timeout" => s.default_timeout = seconds(&full, value)?,
            "max_timeout" => s.max_timeout = seconds(&full, value)?,
            "memory_limit" => s.memory_limit = size_value(&full, value, MIN_MEMORY_BYTES)?,
            "cpu_limit" => s.cpu_limit = cpus_value(&full, value)?,
            "pids_limit" => s.pids_limit = count(&full, value, 8, 1 << 22)?,
            "disk_limit" => s.disk_limit = size_value(&full, value, 1 << 20)?,
            "artifact_max_bytes" => s.artifact_max_bytes = size_value(&full, value, 0)?,
            "output_max_bytes" => s.output_max_bytes = size_value(&full, value, 0)?,
            "backend" => s.backend = choice(&full, value, Backend::parse, Backend::FORM)?,
            "runtime" => {
                s.runtime = choice(
                    &full,
                    value,
                    ContainerRuntime::parse,
                    ContainerRuntime::FORM,
                )?
            }
            "docker_socket" => {
                s.docker_socket = string(&full, value, "a path such as \"/var/run/docker.sock\"")?
            }
            other => {
                return Err(unknown(
                    &format!("sandbox.{other}"),
                    "default_timeout, max_timeout, memory_limit, cpu_limit, pids_limit, \
                     disk_limit, artifact_max_bytes, output_max_bytes, backend, runtime, \
                     docker_socket",
                ))
            }
        }
    }
    Ok(())
}

fn apply_service(s: &mut ServiceConfig, map: &Map<String, Value>) -> Result<(), ConfigError> {
    for (key, value) in map {
        let full = format!("service.{key}");
        match key.as_str() {
            "listen" => s.listen = string(&full, value, "an address such as 127.0.0.1:8002")?,
            "concurrency" => s.concurrency = Some(count(&full, value, 1, 1024)? as usize),
            "max_body_bytes" => s.max_body_bytes = size_value(&full, value, 1024)?,
            "retention_days" => s.retention_days = count(&full, value, 1, 36500)?,
            "min_free_disk" => s.min_free_disk_bytes = size_value(&full, value, 0)?,
            "api_tokens" => s.api_tokens = tokens(&full, value)?,
            "webhook_url" => {
                const FORM: &str =
                    "an http:// URL on a loopback host (127.0.0.0/8, [::1] or localhost)";
                let url = string(&full, value, FORM)?;
                if let Err(e) = crate::egress::CallbackUrl::parse(&url) {
                    return Err(invalid(&full, e.to_string(), FORM));
                }
                s.webhook_url = Some(url);
            }
            "shutdown_grace" => s.shutdown_grace_s = seconds(&full, value)?,
            other => {
                return Err(unknown(
                    &format!("service.{other}"),
                    "listen, concurrency, max_body_bytes, retention_days, min_free_disk, \
                     api_tokens, webhook_url, shutdown_grace",
                ))
            }
        }
    }
    Ok(())
}

fn apply_network(n: &mut NetworkConfig, map: &Map<String, Value>) -> Result<(), ConfigError> {
    for (key, value) in map {
        let full = format!("network.{key}");
        match key.as_str() {
            "mode" => {
                let text = string(&full, value, NETWORK_FORM)?;
                n.mode = NetworkMode::parse(&text).ok_or_else(|| {
                    invalid(
                        &full,
                        format!("`{text}` is not a network mode"),
                        NETWORK_FORM,
                    )
                })?;
            }
            "dns" => {
                let text = string(&full, value, DNS_FORM)?;
                n.dns = DnsMode::parse(&text).ok_or_else(|| {
                    invalid(&full, format!("`{text}` is not a DNS mode"), DNS_FORM)
                })?;
            }
            // At least the header and one whole packet.
            "pcap_max_bytes" => n.pcap_max_bytes = size_value(&full, value, 64 << 10)?,
            other => {
                return Err(unknown(
                    &format!("network.{other}"),
                    "mode, dns, pcap_max_bytes",
                ))
            }
        }
    }
    Ok(())
}

fn as_object<'a>(value: &'a Value, key: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    value
        .as_object()
        .ok_or_else(|| invalid(key, "is not an object".into(), "a JSON object"))
}

fn unknown(key: &str, accepted: &'static str) -> ConfigError {
    invalid(key, "unknown key".into(), accepted)
}

fn invalid(key: &str, problem: String, accepted: &'static str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        problem,
        accepted,
    }
}

fn seconds(key: &str, value: &Value) -> Result<u64, ConfigError> {
    count(key, value, 1, 7 * 24 * 3600)
}

fn count(key: &str, value: &Value, min: u64, max: u64) -> Result<u64, ConfigError> {
    const FORM: &str = "a whole number within the documented range";
    let n = value
        .as_u64()
        .ok_or_else(|| invalid(key, format!("{value} is not a whole number"), FORM))?;
    if n < min || n > max {
        return Err(invalid(key, format!("{n} is outside {min}..={max}"), FORM));
    }
    Ok(n)
}

fn string(key: &str, value: &Value, accepted: &'static str) -> Result<String, ConfigError> {
    value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| invalid(key, format!("{value} is not a string"), accepted))
}

fn tokens(key: &str, value: &Value) -> Result<Vec<String>, ConfigError> {
    const FORM: &str = "a list of strings of at least 16 characters";
    let list = value
        .as_array()
        .ok_or_else(|| invalid(key, "is not a list".into(), FORM))?;
    list.iter()
        .map(|t| match t.as_str() {
            Some(s) if s.len() >= 16 => Ok(s.to_string()),
            _ => Err(invalid(
                key,
                format!("{t} is not an acceptable token"),
                FORM,
            )),
        })
        .collect()
}

fn choice<T>(
    key: &str,
    value: &Value,
    parse: fn(&str) -> Result<T, String>,
    accepted: &'static str,
) -> Result<T, ConfigError> {
    let text = value
        .as_str()
        .ok_or_else(|| invalid(key, format!("{value} is not a string"), accepted))?;
    parse(text).map_err(|problem| invalid(key, problem, accepted))
}

const SIZE_FORM: &str = "a size such as \"512m\", \"1g\" or a number of bytes";

fn size_value(key: &str, value: &Value, min: u64) -> Result<u64, ConfigError> {
    let bytes = match value {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| invalid(key, format!("{n} is not a whole number"), SIZE_FORM))?,
        Value::String(s) => parse_size(s).map_err(|problem| invalid(key, problem, SIZE_FORM))?,
        other => return Err(invalid(key, format!("{other} is not a size"), SIZE_FORM)),
    };
    if bytes < min {
        return Err(invalid(
            key,
            format!("{bytes} bytes is below the minimum of {min}"),
            SIZE_FORM,
        ));
    }
    Ok(bytes)
}

fn cpus_value(key: &str, value: &Value) -> Result<f64, ConfigError> {
    let parsed = match value {
        Value::Number(n) => parse_cpus(&n.to_string()),
        Value::String(s) => parse_cpus(s),
        other => Err(format!("{other} is not a number of CPUs")),
    };
    parsed.map_err(|problem| invalid(key, problem, CPUS_FORM))
}

/// Accepted form of a CPU limit, shared with the command line.
pub const CPUS_FORM: &str = "a number of CPUs from 0.01 to 1024, such as \"0.5\"";

/// Parses a CPU limit such as `0.5` or `2`.
pub fn parse_cpus(text: &str) -> Result<f64, String> {
    let cpus: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of CPUs"))?;
    if !(0.01..=1024.0).contains(&cpus) {
        return Err(format!("{cpus} CPUs is outside 0.01..=1024"));
    }
    Ok(cpus)
}

/// Parses sizes such as `512m`, `1g`, `64MiB`, `1048576`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    if number.is_empty() {
        return Err(format!("`{text}` does not start with a number"));
    }
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is too large"))?;
    let shift = match unit.trim() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => return Err(format!("`{other}` is not a size unit (use k, m, g or t)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Renders a byte count the way the config accepts it back.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(30, "g"), (20, "m"), (10, "k")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_parse_in_every_documented_form() {
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2 KB"), Ok(2048));
        assert!(parse_size("g").unwrap_err().contains("does not start"));
        assert!(parse_size("5x")
            .unwrap_err()
            .contains("`x` is not a size unit"));
        assert!(parse_size("99999999999999999999g").is_err());
        assert_eq!(format_size(1 << 30), "1g");
        assert_eq!(format_size(3 << 20), "3m");
        assert_eq!(format_size(1000), "1000");
    }

    #[test]
    fn documented_shape_is_accepted() {
        let c = Config::from_value(&json!({"sandbox": {"default_timeout": 60,
            "memory_limit": "1g", "cpu_limit": "0.5"}}))
        .unwrap();
        assert_eq!(c.sandbox.default_timeout, 60);
        assert_eq!(c.sandbox.memory_limit, 1 << 30);
        assert_eq!(c.sandbox.cpu_limit, 0.5);
    }

    #[test]
    fn unknown_key_names_the_key_and_the_accepted_keys() {
        let err = Config::from_value(&json!({"sandbox": {"timeout": 5}})).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("config key `sandbox.timeout`: unknown key"),
            "{text}"
        );
        assert!(text.contains("default_timeout"), "{text}");
    }

    #[test]
    fn bad_values_name_the_key_and_form() {
        let err = Config::from_value(&json!({"sandbox": {"memory_limit": "lots"}})).unwrap_err();
        assert!(err.to_string().contains("sandbox.memory_limit"));
        assert!(err.to_string().contains("\"512m\""));
        let err = Config::from_value(&json!({"sandbox": {"cpu_limit": -1}})).unwrap_err();
        assert!(err.to_string().contains("sandbox.cpu_limit"));
        let err = Config::from_value(&json!({"sandbox": {"default_timeout": "60"}})).unwrap_err();
        assert!(err.to_string().contains("is not a whole number"));
        let err = Config::from_value(&json!({"sandbox": {"default_timeout": 100,
            "max_timeout": 50}}))
        .unwrap_err();
        assert!(err.to_string().contains("above sandbox.max_timeout"));
    }

    #[test]
    fn the_docker_backend_has_no_network_and_refuses_the_simulated_internet() {
        let c = Config::default();
        assert_eq!(
            c.network_mode_for(Backend::Docker, None),
            Ok(NetworkMode::None)
        );
        assert_eq!(
            c.network_mode_for(Backend::Docker, Some(NetworkMode::None)),
            Ok(NetworkMode::None)
        );
        assert_eq!(
            c.network_mode_for(Backend::Docker, Some(NetworkMode::Simulated)),
            Err(DOCKER_HAS_NO_NETWORK.to_string())
        );
        assert_eq!(
            c.network_mode_for(Backend::Native, None),
            Ok(NetworkMode::Simulated)
        );
    }

    #[test]
    fn backend_and_runtime_are_read_and_checked() {
        let c = Config::from_value(&json!({"sandbox": {"backend": "docker",
            "runtime": "runsc", "docker_socket": "/run/other.sock"}}))
        .unwrap();
        assert_eq!(c.sandbox.backend, Backend::Docker);
        assert_eq!(c.sandbox.runtime, ContainerRuntime::Runsc);
        assert_eq!(c.sandbox.docker_socket, "/run/other.sock");
        let p = c.placement(Some(Backend::Native), None);
        assert_eq!(
            (p.backend, p.runtime),
            (Backend::Native, ContainerRuntime::Runsc)
        );
        let err = Config::from_value(&json!({"sandbox": {"backend": "vm"}})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config key `sandbox.backend`: `vm` is not a backend; accepted: \"native\" or \"docker\""
        );
        let err = Config::from_value(&json!({"sandbox": {"runtime": "kata"}})).unwrap_err();
        assert!(
            err.to_string()
                .contains("`kata` is not a container runtime"),
            "{err}"
        );
    }

    #[test]
    fn the_network_section_is_checked_and_overridden_per_analysis() {
        let c = Config::default();
        assert_eq!(
            c.network.mode,
            NetworkMode::Simulated,
            "simulated is the default"
        );
        let c = Config::from_value(&json!({"network": {"mode": "none", "dns": "nxdomain",
            "pcap_max_bytes": "1m"}}))
        .unwrap();
        assert_eq!(
            c.network_spec(None, None),
            NetworkSpec {
                mode: NetworkMode::None,
                dns: DnsMode::Nxdomain,
                pcap_max_bytes: 1 << 20
            }
        );
        let spec = c.network_spec(Some(NetworkMode::Simulated), Some(DnsMode::Sinkhole));
        assert_eq!(
            (spec.mode, spec.dns),
            (NetworkMode::Simulated, DnsMode::Sinkhole)
        );
        for (doc, key) in [
            (json!({"network": {"mode": "internet"}}), "network.mode"),
            (json!({"network": {"dns": 1}}), "network.dns"),
            (
                json!({"network": {"pcap_max_bytes": "1k"}}),
                "network.pcap_max_bytes",
            ),
            (json!({"network": {"route": "x"}}), "network.route"),
        ] {
            let err = Config::from_value(&doc).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{err}");
        }
    }

    #[test]
    fn overrides_beat_the_file() {
        let c = Config::default();
        let limits = c
            .limits(&LimitOverrides {
                timeout_s: Some(5),
                memory_bytes: Some(64 << 20),
                cpus: None,
            })
            .unwrap();
        assert_eq!(limits.timeout_s, 5);
        assert_eq!(limits.memory_bytes, 64 << 20);
        assert_eq!(limits.cpus, 0.5);
        assert_eq!(
            limits.disk_bytes,
            32 << 20,
            "disk is clamped to half the memory"
        );
        assert!(c
            .limits(&LimitOverrides {
                timeout_s: Some(0),
                ..Default::default()
            })
            .is_err());
    }
}
