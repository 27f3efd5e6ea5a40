//! Parsers of everything a client sends: submission bodies (JSON and multipart fields), list
//! queries, ids and artifact names. Each takes hostile bytes and returns a typed command or an
//! [`InputError`] that says what was wrong and what is accepted. Nothing here does I/O.
//!
//! Policies decided here (and documented in docs/api.md):
//! - `analysis_timeout` outside 1..=`sandbox.max_timeout`, fractional, negative or not a number
//!   is refused with 400 and the accepted range; it is never clamped.
//! - `memory_limit` and `cpu_limit` may lower the configured sandbox limits, never raise them.
//! - `file_name` is kept verbatim (the report shows it as submitted, the engine sanitises it
//!   for use in the guest); empty, NUL-bearing or over 255 bytes is refused.
//! - `file_data` must be plain standard base64 with padding: no `data:` prefix, no line
//!   breaks, no URL-safe alphabet.

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::config::{self, Backend, Config, ContainerRuntime, LimitOverrides};

use super::super::command::{
    AnalysisId, ArtifactName, ListFilter, Status, Submission, DEFAULT_PAGE, DEFAULT_PRIORITY,
    MAX_PAGE, PRIORITY_RANGE,
};
use crate::egress::CallbackUrl;

/// Longest accepted `file_name`, in bytes (the common file-system limit).
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// Most arguments a sample may be given, and the longest one, in bytes.
pub const MAX_ARGUMENTS: usize = 64;
pub const MAX_ARGUMENT_BYTES: usize = 4096;

/// Smallest memory limit a submission may ask for (what the config accepts too).
pub const MIN_MEMORY_BYTES: u64 = 16 << 20;

/// The fields of a JSON submission; the multipart form has the same with `file` instead of
/// `file_data`. The OpenAPI document is generated from the same list.
pub const JSON_FIELDS: &[&str] = &[
    "file_data",
    "file_name",
    "analysis_timeout",
    "memory_limit",
    "cpu_limit",
    "arguments",
    "priority",
    "callback_url",
    "network",
    "dns",
    "backend",
    "runtime",
];

/// Why a request was refused; every variant is a client error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("unknown field `{field}`; accepted fields: {accepted}")]
    UnknownField { field: String, accepted: String },
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    #[error("field `{0}` is given more than once")]
    DuplicateField(String),
    #[error("`{field}` {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("`file_data` is not valid base64: {0}")]
    InvalidBase64(String),
    #[error("the sample is empty; submit a file of at least one byte")]
    EmptySample,
    #[error("multipart body is malformed: {0}")]
    MalformedMultipart(String),
    #[error("request body could not be read: {0}")]
    UnreadableBody(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{shown} is not an analysis id (a lowercase UUID such as 1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b)")]
    InvalidId { shown: String },
    #[error("{shown} is not an artifact name (dropped/<sha256>, stdout.bin or stderr.bin)")]
    InvalidArtifactName { shown: String },
}

impl InputError {
    /// The stable code of the error, as the API's error body carries it.
    pub fn code(&self) -> &'static str {
        match self {
            InputError::MalformedJson(_) => "malformed_json",
            InputError::UnknownField { .. } => "unknown_field",
            InputError::MissingField(_) => "missing_field",
            InputError::DuplicateField(_) => "duplicate_field",
            InputError::InvalidField { .. } => "invalid_field",
            InputError::InvalidBase64(_) => "invalid_base64",
            InputError::EmptySample => "empty_sample",
            InputError::MalformedMultipart(_) => "malformed_multipart",
            InputError::UnreadableBody(_) => "unreadable_body",
            InputError::InvalidQuery(_) => "invalid_query",
            InputError::InvalidId { .. } => "invalid_id",
            InputError::InvalidArtifactName { .. } => "invalid_artifact_name",
        }
    }
}

/// A hostile string as an error message may show it: escaped and cut short.
pub fn shown(text: &str) -> String {
    let mut cut: String = text.chars().take(80).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// One field's raw value: from a JSON body, or the text of a multipart part.
#[derive(Debug, Clone, Copy)]
pub enum Raw<'a> {
    Json(&'a Value),
    Text(&'a str),
}

impl Raw<'_> {
    /// What the value is, for a message (never the whole of a long value).
    fn describe(&self) -> String {
        match self {
            Raw::Json(Value::String(s)) => format!("the string {}", shown(s)),
            Raw::Text(s) => format!("the string {}", shown(s)),
            Raw::Json(Value::Number(n)) => shown(&n.to_string()).trim_matches('"').to_string(),
            Raw::Json(v) => json_kind(v).to_string(),
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Raw::Json(Value::String(s)) => Some(s),
            Raw::Text(s) => Some(s),
            _ => None,
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A submission being assembled field by field.
#[derive(Debug, Default)]
pub struct Draft {
    bytes: Option<Vec<u8>>,
    /// The file name a multipart `file` part carried, used when `file_name` is absent.
    part_file_name: Option<String>,
    file_name: Option<String>,
    timeout_s: Option<u64>,
    memory_bytes: Option<u64>,
    cpus: Option<f64>,
    arguments: Option<Vec<String>>,
    priority: Option<i64>,
    callback_url: Option<CallbackUrl>,
    network: Option<crate::netsim::NetworkMode>,
    dns: Option<crate::netsim::DnsMode>,
    backend: Option<Backend>,
    runtime: Option<ContainerRuntime>,
}

impl Draft {
    /// Sets one named field (not the sample bytes), checking its value.
    pub fn set(&mut self, key: &str, raw: Raw<'_>, config: &Config) -> Result<(), InputError> {
        let multipart_argument = matches!(raw, Raw::Text(_)) && key == "arguments";
        if self.is_set(key) && !multipart_argument {
            return Err(InputError::DuplicateField(key.to_string()));
        }
        match key {
            "file_name" => self.file_name = Some(file_name(raw)?),
            "analysis_timeout" => self.timeout_s = Some(timeout(raw, config.sandbox.max_timeout)?),
            "memory_limit" => self.memory_bytes = Some(memory(raw, config.sandbox.memory_limit)?),
            "cpu_limit" => self.cpus = Some(cpus(raw, config.sandbox.cpu_limit)?),
            "arguments" => self.add_arguments(raw)?,
            "priority" => self.priority = Some(priority(raw)?),
            "callback_url" => self.callback_url = Some(callback_url(raw)?),
            "network" => self.network = Some(network(raw)?),
            "dns" => self.dns = Some(dns(raw)?),
            "backend" => {
                self.backend = Some(choice("backend", raw, Backend::parse, Backend::FORM)?)
            }
            "runtime" => {
                let form = ContainerRuntime::FORM;
                self.runtime = Some(choice("runtime", raw, ContainerRuntime::parse, form)?)
            }
            "file_data" => self.bytes = Some(file_data(raw)?),
            other => {
                return Err(InputError::UnknownField {
                    field: shown(other).trim_matches('"').to_string(),
                    accepted: JSON_FIELDS.join(", "),
                })
            }
        }
        Ok(())
    }

    fn is_set(&self, key: &str) -> bool {
        match key {
            "file_name" => self.file_name.is_some(),
            "analysis_timeout" => self.timeout_s.is_some(),
            "memory_limit" => self.memory_bytes.is_some(),
            "cpu_limit" => self.cpus.is_some(),
            "arguments" => self.arguments.is_some(),
            "priority" => self.priority.is_some(),
            "callback_url" => self.callback_url.is_some(),
            "network" => self.network.is_some(),
            "dns" => self.dns.is_some(),
            "backend" => self.backend.is_some(),
            "runtime" => self.runtime.is_some(),
            "file_data" | "file" => self.bytes.is_some(),
            _ => false,
        }
    }

    /// The bytes of a multipart `file` part and the file name it carried.
    pub fn set_file(
        &mut self,
        bytes: Vec<u8>,
        part_file_name: Option<String>,
    ) -> Result<(), InputError> {
        if self.bytes.is_some() {
            return Err(InputError::DuplicateField("file".into()));
        }
        self.bytes = Some(bytes);
        self.part_file_name = part_file_name;
        Ok(())
    }

    fn add_arguments(&mut self, raw: Raw<'_>) -> Result<(), InputError> {
        let list = self.arguments.get_or_insert_with(Vec::new);
        match raw {
            Raw::Json(Value::Array(items)) => {
                for item in items {
                    let Value::String(s) = item else {
                        return Err(invalid(
                            "arguments",
                            format!("must be a list of strings; found {}", json_kind(item)),
                        ));
                    };
                    list.push(argument(s)?);
                }
            }
            Raw::Text(s) => list.push(argument(s)?),
            other => {
                return Err(invalid(
                    "arguments",
                    format!("must be a list of strings, not {}", other.describe()),
                ))
            }
        }
        if list.len() > MAX_ARGUMENTS {
            return Err(invalid(
                "arguments",
                format!("has {} entries; at most {MAX_ARGUMENTS}", list.len()),
            ));
        }
        Ok(())
    }

    /// The finished submission. `file_field` names the field that carries the bytes.
    pub fn finish(
        self,
        file_field: &'static str,
        config: &Config,
    ) -> Result<Submission, InputError> {
        let bytes = self.bytes.ok_or(InputError::MissingField(file_field))?;
        if bytes.is_empty() {
            return Err(InputError::EmptySample);
        }
        let file_name = match (self.file_name, self.part_file_name) {
            (Some(n), _) => n,
            (None, Some(n)) => file_name(Raw::Text(&n))?,
            (None, None) => "sample".to_string(),
        };
        let limits = config
            .limits(&LimitOverrides {
                timeout_s: self.timeout_s,
                memory_bytes: self.memory_bytes,
                cpus: self.cpus,
            })
            .map_err(|e| invalid("analysis_timeout", e.to_string()))?;
        let placement = config.placement(self.backend, self.runtime);
        if self.runtime.is_some() && placement.backend != Backend::Docker {
            return Err(invalid(
                "runtime",
                "applies to the docker backend only; add \"backend\": \"docker\"".into(),
            ));
        }
        if placement.backend == Backend::Docker
            && crate::sample::Sample::classify(&file_name, &bytes).is_windows()
        {
            return Err(invalid("backend", config::WINDOWS_ON_DOCKER.into()));
        }
        let network = config
            .network_mode_for(placement.backend, self.network)
            .map_err(|reason| invalid("network", reason))?;
        Ok(Submission {
            placement,
            file_name,
            bytes,
            arguments: self.arguments.unwrap_or_default(),
            limits,
            priority: self.priority.unwrap_or(DEFAULT_PRIORITY),
            callback_url: self.callback_url,
            network,
            dns: self.dns.unwrap_or(config.network.dns),
        })
    }
}

fn invalid(field: &'static str, reason: String) -> InputError {
    InputError::InvalidField { field, reason }
}

/// A JSON submission: `{"file_data": "<base64>", "file_name": ..., ...}`.
pub fn json_submission(body: &[u8], config: &Config) -> Result<Submission, InputError> {
    let object: UniqueObject =
        serde_json::from_slice(body).map_err(|e| InputError::MalformedJson(e.to_string()))?;
    if let Some(key) = object.duplicate {
        return Err(InputError::DuplicateField(
            shown(&key).trim_matches('"').to_string(),
        ));
    }
    draft_from_map(&object.map, config)?.finish("file_data", config)
}

/// A JSON object that remembers a repeated key (serde_json alone keeps the last one silently,
/// so two parsers could disagree on which `file_data` was meant).
struct UniqueObject {
    map: Map<String, Value>,
    duplicate: Option<String>,
}

impl<'de> serde::Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<UniqueObject, A::Error> {
                let mut object = UniqueObject {
                    map: Map::new(),
                    duplicate: None,
                };
                while let Some(key) = access.next_key::<String>()? {
                    let value: Value = access.next_value()?;
                    if object.map.insert(key.clone(), value).is_some() && object.duplicate.is_none()
                    {
                        object.duplicate = Some(key);
                    }
                }
                Ok(object)
            }
        }
        d.deserialize_map(Fields)
    }
}

fn draft_from_map(map: &Map<String, Value>, config: &Config) -> Result<Draft, InputError> {
    let mut draft = Draft::default();
    for (key, value) in map {
        if value.is_null() && key != "file_data" && JSON_FIELDS.contains(&key.as_str()) {
            continue; // an explicit null means "not given" for optional fields
        }
        draft.set(key, Raw::Json(value), config)?;
    }
    Ok(draft)
}

fn file_name(raw: Raw<'_>) -> Result<String, InputError> {
    let Some(name) = raw.as_str() else {
        return Err(invalid(
            "file_name",
            format!("must be a string, not {}", raw.describe()),
        ));
    };
    if name.is_empty() {
        return Err(invalid("file_name", "is empty".into()));
    }
    if name.contains('\0') {
        return Err(invalid("file_name", "contains a NUL byte".into()));
    }
    if name.len() > MAX_FILE_NAME_BYTES {
        return Err(invalid(
            "file_name",
            format!(
                "is {} bytes long; at most {MAX_FILE_NAME_BYTES}",
                name.len()
            ),
        ));
    }
    Ok(name.to_string())
}

fn timeout(raw: Raw<'_>, max: u64) -> Result<u64, InputError> {
    let n = match raw {
        Raw::Json(Value::Number(n)) => n.as_u64(),
        Raw::Text(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(invalid(
            "analysis_timeout",
            format!(
                "must be a whole number of seconds from 1 to {max}; got {}",
                raw.describe()
            ),
        )),
    }
}

fn memory(raw: Raw<'_>, max: u64) -> Result<u64, InputError> {
    let form = format!(
        "must be a size from {} to {} (the configured limit), such as \"256m\" or a number of bytes",
        config::format_size(MIN_MEMORY_BYTES),
        config::format_size(max)
    );
    let bytes = match raw {
        Raw::Json(Value::Number(n)) => n.as_u64().ok_or_else(|| format!("got {}", raw.describe())),
        Raw::Json(Value::String(s)) => config::parse_size(s),
        Raw::Text(s) => config::parse_size(s),
        _ => Err(format!("got {}", raw.describe())),
    };
    match bytes {
        Ok(b) if (MIN_MEMORY_BYTES..=max).contains(&b) => Ok(b),
        Ok(b) => Err(invalid("memory_limit", format!("{form}; got {b} bytes"))),
        Err(problem) => Err(invalid("memory_limit", format!("{form}; {problem}"))),
    }
}

fn cpus(raw: Raw<'_>, max: f64) -> Result<f64, InputError> {
    let form = format!("must be a number of CPUs from 0.01 to {max} (the configured limit)");
    let parsed = match raw {
        Raw::Json(Value::Number(n)) => config::parse_cpus(&n.to_string()),
        Raw::Json(Value::String(s)) => config::parse_cpus(s),
        Raw::Text(s) => config::parse_cpus(s),
        _ => Err(format!("got {}", raw.describe())),
    };
    match parsed {
        Ok(c) if c <= max => Ok(c),
        Ok(c) => Err(invalid("cpu_limit", format!("{form}; got {c}"))),
        Err(problem) => Err(invalid("cpu_limit", format!("{form}; {problem}"))),
    }
}

fn choice<T>(
    field: &'static str,
    raw: Raw<'_>,
    parse: fn(&str) -> Result<T, String>,
    form: &str,
) -> Result<T, InputError> {
    let text = match raw {
        Raw::Json(Value::String(s)) => s.as_str(),
        Raw::Text(s) => s,
        _ => {
            return Err(invalid(
                field,
                format!("must be {form}; got {}", raw.describe()),
            ))
        }
    };
    parse(text.trim()).map_err(|e| invalid(field, format!("must be {form}; {e}")))
}

fn priority(raw: Raw<'_>) -> Result<i64, InputError> {
    let n = match raw {
        Raw::Json(Value::Number(n)) => n.as_i64(),
        Raw::Text(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if PRIORITY_RANGE.contains(&n) => Ok(n),
        _ => Err(invalid(
            "priority",
            format!(
                "must be a whole number from {} to {} (higher runs first); got {}",
                PRIORITY_RANGE.start(),
                PRIORITY_RANGE.end(),
                raw.describe()
            ),
        )),
    }
}

fn network(raw: Raw<'_>) -> Result<crate::netsim::NetworkMode, InputError> {
    raw.as_str()
        .and_then(crate::netsim::NetworkMode::parse)
        .ok_or_else(|| {
            invalid(
                "network",
                format!(
                    "must be {} (no real-internet mode exists); got {}",
                    config::NETWORK_FORM,
                    raw.describe()
                ),
            )
        })
}

fn dns(raw: Raw<'_>) -> Result<crate::netsim::DnsMode, InputError> {
    raw.as_str()
        .and_then(crate::netsim::DnsMode::parse)
        .ok_or_else(|| {
            invalid(
                "dns",
                format!("must be {}; got {}", config::DNS_FORM, raw.describe()),
            )
        })
}

fn argument(s: &str) -> Result<String, InputError> {
    if s.contains('\0') {
        return Err(invalid(
            "arguments",
            "contains an argument with a NUL byte".into(),
        ));
    }
    if s.len() > MAX_ARGUMENT_BYTES {
        return Err(invalid(
            "arguments",
            format!(
                "contains an argument of {} bytes; at most {MAX_ARGUMENT_BYTES}",
                s.len()
            ),
        ));
    }
    Ok(s.to_string())
}

fn callback_url(raw: Raw<'_>) -> Result<CallbackUrl, InputError> {
    let Some(text) = raw.as_str() else {
        return Err(invalid(
            "callback_url",
            format!("must be a string, not {}", raw.describe()),
        ));
    };
    CallbackUrl::parse(text).map_err(|e| invalid("callback_url", e.to_string()))
}

fn file_data(raw: Raw<'_>) -> Result<Vec<u8>, InputError> {
    let Raw::Json(Value::String(text)) = raw else {
        return Err(invalid(
            "file_data",
            format!("must be a base64 string, not {}", raw.describe()),
        ));
    };
    decode_base64(text)
}

/// Strict standard base64 (RFC 4648 §4, padded), with a precise reason when it is not.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, InputError> {
    let bad = |reason: String| InputError::InvalidBase64(reason);
    if text.is_empty() {
        return Err(InputError::EmptySample);
    }
    if text.len() >= 5 && text[..5].eq_ignore_ascii_case("data:") {
        return Err(bad(
            "it is a data: URL; send only the base64 text after the comma".into(),
        ));
    }
    if let Some(at) = text.find(['\n', '\r']) {
        return Err(bad(format!(
            "line break at offset {at}; send base64 without line breaks"
        )));
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| match e {
            base64::DecodeError::InvalidByte(at, b'=') => bad(format!("padding `=` at offset {at} is not at the end")),
            base64::DecodeError::InvalidByte(at, byte) => bad(format!(
                "byte {} at offset {at} is outside the standard base64 alphabet (A-Z a-z 0-9 + /)",
                shown(&char::from(byte).to_string())
            )),
            base64::DecodeError::InvalidLength(n) => bad(format!(
                "{n} symbols cannot be base64 (the last group is incomplete)"
            )),
            base64::DecodeError::InvalidLastSymbol(at, _) => bad(format!(
                "the symbol at offset {at} has bits set that its group discards (truncated or corrupted data)"
            )),
            base64::DecodeError::InvalidPadding => bad("padding is missing or wrong (standard base64 ends with `=` or `==` to a multiple of 4)".into()),
        })
}

/// `GET /analyses?status=&sha256=&limit=&offset=`.
pub fn list_query(query: Option<&str>) -> Result<ListFilter, InputError> {
    let mut filter = ListFilter {
        status: None,
        sha256: None,
        limit: DEFAULT_PAGE,
        offset: 0,
    };
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if seen.contains(&key.to_string()) {
            return Err(InputError::InvalidQuery(format!(
                "parameter `{key}` is given more than once"
            )));
        }
        seen.push(key.to_string());
        let bad = |form: &str| {
            InputError::InvalidQuery(format!("`{key}` must be {form}; got {}", shown(&value)))
        };
        match key.as_ref() {
            "status" => {
                filter.status =
                    Some(Status::parse(&value).ok_or_else(|| {
                        bad("one of queued, running, completed, failed, cancelled")
                    })?)
            }
            "sha256" => {
                let hex = value.to_ascii_lowercase();
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("64 hexadecimal digits"));
                }
                filter.sha256 = Some(hex);
            }
            "limit" => {
                filter.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| bad(&format!("a whole number from 1 to {MAX_PAGE}")))?
            }
            "offset" => {
                filter.offset = value
                    .parse()
                    .ok()
                    .filter(|n| *n <= i64::MAX as u64)
                    .ok_or_else(|| bad("a whole number from 0"))?
            }
            other => {
                return Err(InputError::InvalidQuery(format!(
                    "unknown parameter {}; accepted: status, sha256, limit, offset",
                    shown(other)
                )))
            }
        }
    }
    Ok(filter)
}

/// An analysis id from a URL path.
pub fn analysis_id(text: &str) -> Result<AnalysisId, InputError> {
    AnalysisId::parse(text).ok_or_else(|| InputError::InvalidId { shown: shown(text) })
}

/// An artifact name from a URL path.
pub fn artifact_name(text: &str) -> Result<ArtifactName, InputError> {
    ArtifactName::parse(text).ok_or_else(|| InputError::InvalidArtifactName { shown: shown(text) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn submit(body: Value) -> Result<Submission, InputError> {
        json_submission(body.to_string().as_bytes(), &Config::default())
    }

    #[test]
    fn network_and_dns_are_chosen_per_analysis_and_checked() {
        use crate::netsim::{DnsMode, NetworkMode};
        let s = submit(json!({"file_data": "aGk=", "network": "none", "dns": "nxdomain"})).unwrap();
        assert_eq!((s.network, s.dns), (NetworkMode::None, DnsMode::Nxdomain));
        let d = submit(json!({"file_data": "aGk="})).unwrap();
        assert_eq!(
            (d.network, d.dns),
            (NetworkMode::Simulated, DnsMode::Sinkhole)
        );
        for (body, field) in [
            (
                json!({"file_data": "aGk=", "network": "internet"}),
                "network",
            ),
            (json!({"file_data": "aGk=", "network": 1}), "network"),
            (json!({"file_data": "aGk=", "dns": "real"}), "dns"),
        ] {
            let err = submit(body).unwrap_err();
            assert!(
                matches!(&err, InputError::InvalidField { field: f, .. } if *f == field),
                "{err}"
            );
        }
        let err = submit(json!({"file_data": "aGk=", "network": "internet"})).unwrap_err();
        assert!(
            err.to_string().contains("no real-internet mode exists"),
            "{err}"
        );
    }

    fn code_of(body: Value) -> (&'static str, String) {
        let err = submit(body.clone()).expect_err(&body.to_string());
        (err.code(), err.to_string())
    }

    #[test]
    fn backend_and_runtime_are_chosen_per_submission_and_checked() {
        use crate::config::{Backend, ContainerRuntime};
        let s =
            submit(json!({"file_data": "aGk=", "backend": "docker", "runtime": "runsc"})).unwrap();
        assert_eq!(s.placement.backend, Backend::Docker);
        assert_eq!(s.placement.runtime, ContainerRuntime::Runsc);
        let s = submit(json!({"file_data": "aGk="})).unwrap();
        assert_eq!(s.placement.backend, Backend::Native);
        let err = submit(json!({"file_data": "aGk=", "backend": "vm"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`backend` must be \"native\" or \"docker\"; `vm` is not a backend"
        );
        let err = submit(json!({"file_data": "aGk=", "runtime": "runsc"})).unwrap_err();
        assert!(err.to_string().contains("docker backend only"), "{err}");
        let err = submit(json!({"file_data": "aGk=", "backend": 3})).unwrap_err();
        assert!(err.to_string().contains("got 3"), "{err}");
        // Docker runs no Windows sample and no simulated internet: refused at submission.
        let bat = json!({"file_data": "ZWNobyBoaQ==", "file_name": "run.bat", "backend": "docker"});
        let err = submit(bat).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("`backend` {}", crate::config::WINDOWS_ON_DOCKER)
        );
        let err = submit(json!({"file_data": "aGk=", "backend": "docker", "network": "simulated"}))
            .unwrap_err();
        assert!(err.to_string().contains("no network"), "{err}");
        let s = submit(json!({"file_data": "aGk=", "backend": "docker"})).unwrap();
        assert_eq!(s.network, crate::netsim::NetworkMode::None);
    }

    #[test]
    fn a_full_json_submission_becomes_a_typed_command() {
        let s = submit(
            json!({"file_data": "aGk=", "file_name": "x.sh", "analysis_timeout": 9,
            "memory_limit": "256m", "cpu_limit": 0.25, "arguments": ["-v", "a b"], "priority": 7,
            "callback_url": "http://127.0.0.1:9/h"}),
        )
        .unwrap();
        assert_eq!(s.bytes, b"hi");
        assert_eq!(s.file_name, "x.sh");
        assert_eq!(
            (s.limits.timeout_s, s.limits.memory_bytes, s.limits.cpus),
            (9, 256 << 20, 0.25)
        );
        assert_eq!(s.arguments, vec!["-v", "a b"]);
        assert_eq!(s.priority, 7);
        assert_eq!(s.callback_url.unwrap().as_str(), "http://127.0.0.1:9/h");
    }

    #[test]
    fn defaults_fill_what_is_not_given() {
        let s = submit(json!({"file_data": "aGk=", "priority": null})).unwrap();
        let d = Config::default();
        assert_eq!(s.file_name, "sample");
        assert_eq!(s.limits.timeout_s, d.sandbox.default_timeout);
        assert_eq!(s.limits.memory_bytes, d.sandbox.memory_limit);
        assert_eq!(s.priority, DEFAULT_PRIORITY);
        assert!(s.arguments.is_empty() && s.callback_url.is_none());
    }

    #[test]
    fn hostile_bodies_are_refused_with_their_reason() {
        let table: Vec<(&[u8], &str, &str)> = vec![
            (b"{", "malformed_json", "EOF while parsing"),
            (b"", "malformed_json", "EOF while parsing"),
            (b"[1]", "malformed_json", "expected a JSON object"),
            (b"\"x\"", "malformed_json", "expected a JSON object"),
            (b"null", "malformed_json", "expected a JSON object"),
            (
                b"{\"file_data\": \"aGk=\"} {}",
                "malformed_json",
                "trailing characters",
            ),
            (
                b"{\"file_data\": \"aGk=\",}",
                "malformed_json",
                "trailing comma",
            ),
            (b"\xff\xfe", "malformed_json", "not valid JSON"),
        ];
        let dup = br#"{"file_data": "aGk=", "file_name": "a", "file_data": "aGVsbG8="}"#;
        let err = json_submission(dup, &Config::default()).unwrap_err();
        assert_eq!(err, InputError::DuplicateField("file_data".into()));
        for (body, code, text) in table {
            let err = json_submission(body, &Config::default()).unwrap_err();
            assert_eq!(err.code(), code, "{body:?}");
            assert!(err.to_string().contains(text), "{body:?}: {err}");
        }
    }

    #[test]
    fn hostile_fields_are_refused_with_their_reason() {
        let big = "a".repeat(256);
        let table = vec![
            (json!({}), "missing_field", "missing field `file_data`"),
            (json!({"file_name": "x"}), "missing_field", "`file_data`"),
            (
                json!({"file_data": null}),
                "invalid_field",
                "must be a base64 string, not null",
            ),
            (
                json!({"file_data": 5}),
                "invalid_field",
                "must be a base64 string, not 5",
            ),
            (
                json!({"file_data": "aGk=", "extra": 1}),
                "unknown_field",
                "unknown field `extra`; accepted fields: file_data, file_name",
            ),
            (json!({"file_data": ""}), "empty_sample", "empty"),
            (
                json!({"file_data": "aGk"}),
                "invalid_base64",
                "padding is missing or wrong",
            ),
            (
                json!({"file_data": "aG=k"}),
                "invalid_base64",
                "padding `=` at offset 2",
            ),
            (json!({"file_data": "aGk=="}), "invalid_base64", "padding"),
            (
                json!({"file_data": "a*k="}),
                "invalid_base64",
                "byte \"*\" at offset 1 is outside",
            ),
            (
                json!({"file_data": "aGk-"}),
                "invalid_base64",
                "byte \"-\" at offset 3",
            ),
            (
                json!({"file_data": "aGVs\nbG8="}),
                "invalid_base64",
                "line break at offset 4",
            ),
            (
                json!({"file_data": "data:text/plain;base64,aGk="}),
                "invalid_base64",
                "data: URL",
            ),
            (json!({"file_data": "aGl="}), "invalid_base64", "bits set"),
            (json!({"file_data": "a"}), "invalid_base64", "1 symbols"),
            (
                json!({"file_data": "aGk=", "file_name": ""}),
                "invalid_field",
                "`file_name` is empty",
            ),
            (
                json!({"file_data": "aGk=", "file_name": "a\u{0}b"}),
                "invalid_field",
                "NUL",
            ),
            (
                json!({"file_data": "aGk=", "file_name": big}),
                "invalid_field",
                "is 256 bytes long; at most 255",
            ),
            (
                json!({"file_data": "aGk=", "file_name": 7}),
                "invalid_field",
                "must be a string, not 7",
            ),
            (
                json!({"file_data": "aGk=", "analysis_timeout": 0}),
                "invalid_field",
                "from 1 to 3600; got 0",
            ),
            (
                json!({"file_data": "aGk=", "analysis_timeout": -5}),
                "invalid_field",
                "got -5",
            ),
            (
                json!({"file_data": "aGk=", "analysis_timeout": 1.5}),
                "invalid_field",
                "got 1.5",
            ),
            (
                json!({"file_data": "aGk=", "analysis_timeout": 1e30}),
                "invalid_field",
                "from 1 to 3600",
            ),
            (
                json!({"file_data": "aGk=", "analysis_timeout": 3601}),
                "invalid_field",
                "got 3601",
            ),
            (
                json!({"file_data": "aGk=", "analysis_timeout": u64::MAX}),
                "invalid_field",
                "from 1 to 3600",
            ),
            (
                json!({"file_data": "aGk=", "analysis_timeout": "60"}),
                "invalid_field",
                "got the string \"60\"",
            ),
            (
                json!({"file_data": "aGk=", "analysis_timeout": true}),
                "invalid_field",
                "got a boolean",
            ),
            (
                json!({"file_data": "aGk=", "memory_limit": "8m"}),
                "invalid_field",
                "got 8388608 bytes",
            ),
            (
                json!({"file_data": "aGk=", "memory_limit": "2g"}),
                "invalid_field",
                "to 1g (the configured limit)",
            ),
            (
                json!({"file_data": "aGk=", "memory_limit": "lots"}),
                "invalid_field",
                "does not start with a number",
            ),
            (
                json!({"file_data": "aGk=", "memory_limit": -1}),
                "invalid_field",
                "got -1",
            ),
            (
                json!({"file_data": "aGk=", "cpu_limit": 4}),
                "invalid_field",
                "got 4",
            ),
            (
                json!({"file_data": "aGk=", "cpu_limit": 0}),
                "invalid_field",
                "outside 0.01..=1024",
            ),
            (
                json!({"file_data": "aGk=", "cpu_limit": "NaN"}),
                "invalid_field",
                "cpu_limit",
            ),
            (
                json!({"file_data": "aGk=", "arguments": "x"}),
                "invalid_field",
                "must be a list of strings, not the string",
            ),
            (
                json!({"file_data": "aGk=", "arguments": [1]}),
                "invalid_field",
                "found a number",
            ),
            (
                json!({"file_data": "aGk=", "arguments": ["a\u{0}"]}),
                "invalid_field",
                "NUL",
            ),
            (
                json!({"file_data": "aGk=", "arguments": vec!["a"; 65]}),
                "invalid_field",
                "has 65 entries",
            ),
            (
                json!({"file_data": "aGk=", "priority": 11}),
                "invalid_field",
                "from 0 to 10",
            ),
            (
                json!({"file_data": "aGk=", "priority": "high"}),
                "invalid_field",
                "got the string \"high\"",
            ),
            (
                json!({"file_data": "aGk=", "callback_url": "http://example.com/"}),
                "invalid_field",
                "is not loopback",
            ),
            (
                json!({"file_data": "aGk=", "callback_url": 3}),
                "invalid_field",
                "must be a string",
            ),
        ];
        for (body, code, text) in table {
            let (got, message) = code_of(body.clone());
            assert_eq!(got, code, "{body}: {message}");
            assert!(message.contains(text), "{body}: {message}");
        }
    }

    #[test]
    fn file_names_are_kept_verbatim_whatever_they_contain() {
        for name in [
            "../../etc/passwd",
            "a/b\\c.sh",
            "..",
            "\u{202e}gpj.exe",
            "$(reboot); `id` | & > x",
            "quote\"and'apostrophe",
            "tab\tnew\nline\u{7}",
            &"é".repeat(127),
        ] {
            let s = submit(json!({"file_data": "aGk=", "file_name": name})).unwrap();
            assert_eq!(s.file_name, name);
        }
    }

    #[test]
    fn multipart_fields_parse_from_text_and_repeat_arguments() {
        let config = Config::default();
        let mut d = Draft::default();
        d.set("analysis_timeout", Raw::Text("30"), &config).unwrap();
        d.set("arguments", Raw::Text("-a"), &config).unwrap();
        d.set("arguments", Raw::Text("b c"), &config).unwrap();
        d.set("priority", Raw::Text("9"), &config).unwrap();
        d.set_file(b"x".to_vec(), Some("up.sh".into())).unwrap();
        assert_eq!(
            d.set_file(b"y".to_vec(), None),
            Err(InputError::DuplicateField("file".into()))
        );
        assert_eq!(
            d.set("priority", Raw::Text("1"), &config),
            Err(InputError::DuplicateField("priority".into()))
        );
        let s = d.finish("file", &config).unwrap();
        assert_eq!(
            (s.file_name.as_str(), s.limits.timeout_s, s.priority),
            ("up.sh", 30, 9)
        );
        assert_eq!(s.arguments, vec!["-a", "b c"]);

        let mut d = Draft::default();
        d.set_file(Vec::new(), None).unwrap();
        assert_eq!(
            d.finish("file", &config).unwrap_err(),
            InputError::EmptySample
        );
        assert_eq!(
            Draft::default().finish("file", &config).unwrap_err(),
            InputError::MissingField("file")
        );
        let mut d = Draft::default();
        assert_eq!(
            d.set("analysis_timeout", Raw::Text("1.5"), &config)
                .unwrap_err()
                .code(),
            "invalid_field"
        );
    }

    #[test]
    fn list_queries_are_checked_parameter_by_parameter() {
        let all = list_query(None).unwrap();
        assert_eq!(
            (all.limit, all.offset, all.status, all.sha256),
            (DEFAULT_PAGE, 0, None, None)
        );
        let hash = "AB".repeat(32);
        let f = list_query(Some(&format!(
            "status=completed&sha256={hash}&limit=5&offset=10"
        )))
        .unwrap();
        assert_eq!(f.status, Some(Status::Completed));
        assert_eq!(f.sha256, Some("ab".repeat(32)));
        assert_eq!((f.limit, f.offset), (5, 10));
        let table = [
            ("status=done", "`status` must be one of queued"),
            ("sha256=abc", "`sha256` must be 64 hexadecimal digits"),
            ("limit=0", "from 1 to 100"),
            ("limit=101", "from 1 to 100"),
            ("limit=x", "from 1 to 100"),
            ("offset=-1", "a whole number from 0"),
            ("offset=99999999999999999999", "a whole number from 0"),
            ("page=2", "unknown parameter \"page\""),
            ("limit=1&limit=2", "given more than once"),
        ];
        for (q, text) in table {
            let err = list_query(Some(q)).unwrap_err();
            assert_eq!(err.code(), "invalid_query");
            assert!(err.to_string().contains(text), "{q}: {err}");
        }
    }

    #[test]
    fn ids_and_artifact_names_echo_hostile_input_escaped_and_short() {
        let err = analysis_id("../../etc/passwd").unwrap_err();
        assert_eq!(err.code(), "invalid_id");
        assert!(err
            .to_string()
            .starts_with("\"../../etc/passwd\" is not an analysis id"));
        let long = "\u{1b}[31m".repeat(100);
        let text = analysis_id(&long).unwrap_err().to_string();
        assert!(!text.contains('\u{1b}') && text.contains('…'), "{text}");
        assert_eq!(
            artifact_name("../x").unwrap_err().code(),
            "invalid_artifact_name"
        );
    }
}
