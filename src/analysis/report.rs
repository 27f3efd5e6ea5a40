//! Assembling the report document.

use std::fs;

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use super::build::{process_tree, summarize, Behaviour, Builder};
use super::AnalysisRequest;
use crate::config::Config;
use crate::image::ImageInfo;
use crate::monitor::events::parse_stream;
use crate::report::{
    text, EndReason, Environment, Execution, Incomplete, Network, Output, Report, ReportStatus,
    Stream, Summary, REPORT_VERSION,
};
use crate::sample::{Kind, Sample};
use crate::sandbox::{RunLayout, SandboxOutcome};

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn environment(request: &AnalysisRequest, image: Option<&ImageInfo>, cgroup: &str) -> Environment {
    let placement = request.placement;
    Environment {
        backend: placement.backend.as_str().into(),
        runtime: (placement.backend == crate::config::Backend::Docker)
            .then(|| placement.runtime.as_str().to_string()),
        image: image.map_or("linux".into(), |i| i.name.clone()),
        image_digest: image.map_or(String::new(), |i| i.digest.clone()),
        network: request.network.mode.as_str().into(),
        limits: request.limits,
        hostname: super::hostname(image.map_or("linux", |i| i.name.as_str())).into(),
        cgroup_version: cgroup.into(),
        aegis_version: env!("CARGO_PKG_VERSION").into(),
    }
}

fn network_not_run(request: &AnalysisRequest) -> Network {
    Network {
        mode: request.network.mode.as_str().into(),
        note: Some("the sample did not run, so it had no network activity".into()),
        ..Default::default()
    }
}

/// The report of a sample that never ran, with the reason.
pub fn not_executed(
    analysis_id: &str,
    sample: &Sample,
    request: &AnalysisRequest,
    image: Option<&ImageInfo>,
    reason: String,
    started: DateTime<Utc>,
) -> Report {
    let now = rfc3339(started);
    Report {
        analysis_id: analysis_id.into(),
        status: ReportStatus::Completed,
        report_version: REPORT_VERSION.into(),
        sample: sample.info.clone(),
        environment: environment(request, image, ""),
        execution: Execution {
            command: Vec::new(),
            cwd: sample.cwd(),
            started_at: now.clone(),
            ended_at: now,
            duration_s: 0.0,
            exit_code: None,
            signal: None,
            end_reason: EndReason::NotExecuted,
            limits_hit: Vec::new(),
            memory_peak_bytes: None,
            cpu_time_s: None,
            error: Some(reason),
        },
        processes: Vec::new(),
        process_tree: Vec::new(),
        files: Default::default(),
        network: network_not_run(request),
        events_of_note: Vec::new(),
        registry: Default::default(),
        mutexes: Vec::new(),
        services: Vec::new(),
        output: Output::default(),
        summary: Summary::default(),
        incomplete: Vec::new(),
    }
}

/// The report of a sandbox run.
#[allow(clippy::too_many_arguments)]
pub fn from_run(
    analysis_id: &str,
    sample: &Sample,
    request: &AnalysisRequest,
    image: &ImageInfo,
    command: &[String],
    run: &RunLayout,
    outcome: &SandboxOutcome,
    config: &Config,
    submitted: DateTime<Utc>,
) -> Report {
    let text = fs::read_to_string(run.events()).unwrap_or_default();
    let (events, torn) = parse_stream(&text);
    let mut builder = Builder::new(outcome, command);
    for ev in events {
        builder.feed(ev);
    }
    let mut behaviour = builder.finish(&outcome.files);
    let mut incomplete = incompleteness(&mut behaviour, outcome, torn);
    let traffic = fs::read(run.network_records())
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    super::network::fill(
        &mut behaviour.network,
        &request.network,
        traffic,
        outcome.started_ns,
        &mut incomplete,
    );
    let execution = execution(&behaviour, outcome, command, sample, submitted);
    let failed =
        outcome.setup_error.is_some() || (!behaviour.stream_complete && !outcome.ended_by_force());
    let summary = summarize(&behaviour);
    let output_max = config.sandbox.output_max_bytes;
    let mut report = Report {
        analysis_id: analysis_id.into(),
        status: if failed {
            ReportStatus::Failed
        } else {
            ReportStatus::Completed
        },
        report_version: REPORT_VERSION.into(),
        sample: sample.info.clone(),
        environment: environment(request, Some(image), &outcome.cgroup_version),
        execution,
        process_tree: process_tree(&behaviour.processes),
        processes: behaviour.processes,
        files: behaviour.files,
        network: behaviour.network,
        events_of_note: with_launch_notes(behaviour.events_of_note, sample, request, run),
        registry: Default::default(),
        mutexes: Vec::new(),
        services: Vec::new(),
        output: Output {
            stdout: stream(run, "stdout", &outcome.stdout, output_max),
            stderr: stream(run, "stderr", &outcome.stderr, output_max),
        },
        summary,
        incomplete,
    };
    if matches!(sample.kind, Kind::Windows { .. }) {
        add_windows_sections(&mut report, image, run, outcome);
    }
    report
}

/// The Windows view: registry, mutexes, services, Windows paths and process names from
/// wineserver's trace, the saved hives and the relay trace on the sample's stderr; the relay
/// lines then leave `output.stderr` (`stderr.bin` keeps everything).
fn add_windows_sections(
    report: &mut Report,
    image: &ImageInfo,
    run: &RunLayout,
    outcome: &SandboxOutcome,
) {
    let wine = crate::windows::WineRun::new(&image.rootfs, &run.dir);
    crate::windows::apply_with_relay(report, &wine, Some(&run.stream("stderr")));
    report.output.stderr.text = without_relay_lines(&report.output.stderr.text);
    if let Some(log) = outcome.wine_log.as_ref().filter(|l| l.bytes > l.kept) {
        report.incomplete.push(Incomplete {
            section: "windows".into(),
            reason: format!(
                "wineserver's trace was cut after {} of its {} bytes",
                log.kept, log.bytes
            ),
            dropped: Some(log.bytes - log.kept),
        });
    }
}

/// `text` without Wine's relay lines (`Call ...`, `Ret ...`, `trace:relay:...`); Wine's
/// `err:`, `warn:` and `fixme:` lines stay: they say what Wine could not do for the sample.
fn without_relay_lines(text: &str) -> String {
    text.split_inclusive('\n')
        .filter(|line| {
            let line = line.trim_end_matches('\n');
            let diagnostic = [":err:", ":warn:", ":fixme:"]
                .iter()
                .any(|m| line.contains(m));
            diagnostic || !crate::windows::relay::is_debug_line(line)
        })
        .collect()
}

fn incompleteness(b: &mut Behaviour, outcome: &SandboxOutcome, torn: usize) -> Vec<Incomplete> {
    let mut list = std::mem::take(&mut b.incomplete);
    if let Some(e) = &outcome.setup_error {
        list.push(Incomplete {
            section: "execution".into(),
            reason: format!("sandbox set-up failed: {e}"),
            dropped: None,
        });
    }
    if !b.stream_complete && !outcome.ended_by_force() {
        list.push(Incomplete {
            section: "processes".into(),
            reason: format!(
                "the monitor ended before the sample's processes did ({})",
                match (&outcome.monitor_exit_code, &outcome.monitor_signal) {
                    (_, Some(sig)) => format!("killed by {sig}"),
                    (Some(code), None) => format!("exit status {code}"),
                    (None, None) => "no exit status".to_string(),
                }
            ),
            dropped: None,
        });
    }
    if torn > 0 {
        list.push(Incomplete {
            section: "events".into(),
            reason: "unreadable records in the monitor's stream".into(),
            dropped: Some(torn as u64),
        });
    }
    if outcome.files_dropped > 0 {
        list.push(Incomplete {
            section: "files".into(),
            reason: "more files in the writable layer than the report keeps".into(),
            dropped: Some(outcome.files_dropped),
        });
    }
    for e in &outcome.collection_errors {
        list.push(Incomplete {
            section: "files".into(),
            reason: e.clone(),
            dropped: None,
        });
    }
    list
}

fn execution(
    b: &Behaviour,
    outcome: &SandboxOutcome,
    command: &[String],
    sample: &Sample,
    submitted: DateTime<Utc>,
) -> Execution {
    let now_mono = crate::monitor::now_ns();
    let wall_now = Utc::now();
    let to_wall = |ns: u64| {
        let ns = ns.saturating_add_signed(outcome.clock_offset_ns);
        let back = now_mono.saturating_sub(ns);
        wall_now - Duration::nanoseconds(i64::try_from(back).unwrap_or(i64::MAX))
    };
    let duration_s = outcome.ended_ns.saturating_sub(outcome.started_ns) as f64 / 1e9;
    // Under Wine the first process is the launcher; the sample's outcome is its loader's.
    let root = match sample.kind {
        Kind::Windows { .. } => windows_sample_process(&b.processes),
        _ => b.processes.first(),
    };
    let mut limits_hit = Vec::new();
    if outcome.cgroup.oom_kills > 0 {
        limits_hit.push("memory".to_string());
    }
    if outcome.cgroup.pids_limit_hits > 0 {
        limits_hit.push("pids".to_string());
    }
    if outcome.disk_full {
        limits_hit.push("disk".to_string());
    }
    if outcome.timed_out {
        limits_hit.push("timeout".to_string());
    }
    let (end_reason, error) = end_reason(b, outcome);
    let started = if outcome.started_ns > 0 {
        to_wall(outcome.started_ns)
    } else {
        submitted
    };
    Execution {
        command: command.to_vec(),
        cwd: sample.cwd(),
        started_at: rfc3339(started),
        ended_at: rfc3339(to_wall(outcome.ended_ns.max(outcome.started_ns))),
        duration_s: (duration_s * 1e3).round() / 1e3,
        exit_code: root.and_then(|p| p.exit_code),
        signal: root.and_then(|p| p.signal.clone()),
        end_reason,
        limits_hit,
        memory_peak_bytes: outcome.cgroup.memory_peak_bytes,
        cpu_time_s: outcome
            .cgroup
            .cpu_time_ns
            .map(|n| (n as f64 / 1e6).round() / 1e3),
        error,
    }
}

/// What the report must show about how a Windows sample was started: the export rundll32
/// called for a DLL; a WSH script that stopped at a runtime error Wine does not report.
fn with_launch_notes(
    mut notes: Vec<crate::report::EventOfNote>,
    sample: &Sample,
    request: &AnalysisRequest,
    run: &RunLayout,
) -> Vec<crate::report::EventOfNote> {
    use crate::windows::Launch;
    let first_export = match &sample.kind {
        Kind::Windows {
            launch: Launch::Dll { first_export, .. },
        } => first_export,
        Kind::Windows {
            launch: Launch::Script,
        } => {
            let stderr = fs::read(run.stream("stderr")).unwrap_or_default();
            if String::from_utf8_lossy(&stderr).contains(crate::windows::SCRIPT_ERROR_LINE) {
                notes.push(crate::report::EventOfNote {
                    kind: "script_error".into(),
                    process_id: None,
                    time: 0.0,
                    detail: "the script stopped at a runtime error; Wine's Windows Script Host \
                             does not say which error or where, and exits with status 0"
                        .into(),
                });
            }
            return notes;
        }
        _ => return notes,
    };
    let detail = match (request.arguments.first(), first_export) {
        (Some(given), _) => {
            format!("rundll32 called the export {given}, given in the submission's arguments")
        }
        (None, Some(first)) => format!(
            "rundll32 called the export {first}, the DLL's first export (no export was \
             given in the submission's arguments)"
        ),
        (None, None) => return notes,
    };
    notes.insert(
        0,
        crate::report::EventOfNote {
            kind: "dll_export".into(),
            process_id: None,
            time: 0.0,
            detail,
        },
    );
    notes
}

/// The process the launcher started the sample in: its last child (it starts wineserver and,
/// for a GUI, Xvfb first, and only shell built-ins after the sample).
fn windows_sample_process(processes: &[crate::report::Process]) -> Option<&crate::report::Process> {
    let launcher = processes.first()?;
    processes
        .iter()
        .rev()
        .find(|p| p.parent_id == Some(launcher.id))
}

/// Which of the ways a run can end applies; limits beat the timeout because they explain it.
fn end_reason(b: &Behaviour, outcome: &SandboxOutcome) -> (EndReason, Option<String>) {
    if let Some(e) = &outcome.setup_error {
        return (
            EndReason::NotExecuted,
            Some(format!("sandbox set-up failed: {e}")),
        );
    }
    if let Some((path, errno)) = &b.first_exec_failure {
        let hint = match errno.as_str() {
            "ENOENT" => " (the file or its #! interpreter is missing from the guest image)",
            "ENOEXEC" => " (the kernel does not recognise the format)",
            _ => "",
        };
        return (
            EndReason::NotExecuted,
            Some(format!("exec of {path} failed: {errno}{hint}")),
        );
    }
    let reason = if outcome.pids_stopped {
        EndReason::PidsLimit
    } else if outcome.cgroup.oom_kills > 0 {
        EndReason::MemoryLimit
    } else if outcome.disk_full {
        EndReason::DiskLimit
    } else if outcome.timed_out {
        EndReason::Timeout
    } else {
        EndReason::Exited
    };
    (reason, None)
}

fn stream(run: &RunLayout, name: &str, captured: &crate::sandbox::Captured, max: u64) -> Stream {
    let raw = fs::read(run.stream(name)).unwrap_or_default();
    let shown = &raw[..raw.len().min(max as usize)];
    let (text, encoding) = text::encode(shown);
    Stream {
        text,
        encoding: encoding.into(),
        bytes: captured.bytes,
        truncated: captured.bytes > shown.len() as u64,
        artifact: (captured.kept > 0).then(|| format!("{name}.bin")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn relay_lines_leave_stderr_and_wine_diagnostics_stay() {
        let text = "0024:Call KERNEL32.GetProcAddress(1,2 \"wine_get_version\") ret=3\n\
                    0024:Ret  KERNEL32.GetProcAddress() retval=0 ret=3\n\
                    0024:trace:relay:load_list L\"RelayInclude\" = L\"x\"\n\
                    0024:err:winediag:nodrv_CreateWindow no driver\n\
                    the program's own line\n";
        assert_eq!(
            super::without_relay_lines(text),
            "0024:err:winediag:nodrv_CreateWindow no driver\nthe program's own line\n"
        );
    }
}
