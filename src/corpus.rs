//! Running a directory of samples (the Atomic Red Team corpus) and tabulating the results.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};

use crate::analysis::{AnalysisRequest, Engine};
use crate::config::{Config, LimitOverrides};
use crate::paths::DataDir;
use crate::report::Report;

/// One line of the table.
struct Row {
    file: String,
    outcome: Result<Report, String>,
}

/// Analyses every file of `dir` (sorted, `index.tsv` and dotfiles skipped) and writes `markdown`.
pub fn run(
    data: &DataDir,
    config: Config,
    dir: &Path,
    markdown: &Path,
    timeout: u64,
) -> Result<i32> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read corpus directory {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            !name.starts_with('.') && name != "index.tsv" && !name.ends_with(".md")
        })
        .collect();
    files.sort();
    let limits = config.limits(&LimitOverrides {
        timeout_s: Some(timeout),
        ..Default::default()
    })?;
    let placement = config.placement(None, None);
    let mode = config
        .network_mode_for(placement.backend, None)
        .map_err(|e| anyhow::anyhow!(e))?;
    let config_network = config.network_spec(Some(mode), None);
    crate::analysis::sweep(data);
    let engine = Engine::new(data.clone(), config);
    let never = AtomicBool::new(false);
    let mut rows = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let request = AnalysisRequest {
            file_name: name.clone(),
            bytes: std::fs::read(path)?,
            arguments: Vec::new(),
            limits,
            network: config_network,
            placement,
        };
        let id = uuid::Uuid::new_v4().to_string();
        let outcome = engine
            .analyze(&id, &request, &mut |_| {}, &never)
            .map(|f| f.report)
            .map_err(|e| e.to_string());
        eprintln!("corpus: {name}: {}", short(&outcome));
        rows.push(Row {
            file: name,
            outcome,
        });
    }
    let text = render(dir, markdown, &rows, timeout, config_network.mode.as_str());
    std::fs::write(markdown, text)
        .with_context(|| format!("cannot write {}", markdown.display()))?;
    let failed = rows.iter().filter(|r| !complete(&r.outcome)).count();
    println!(
        "{} samples, {} without a complete report; table in {}",
        rows.len(),
        failed,
        markdown.display()
    );
    Ok(if failed == 0 { 0 } else { 1 })
}

fn complete(outcome: &Result<Report, String>) -> bool {
    matches!(outcome, Ok(r) if r.status == crate::report::ReportStatus::Completed && r.incomplete.is_empty())
}

fn end(r: &Report) -> String {
    serde_json::to_value(r.execution.end_reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn short(outcome: &Result<Report, String>) -> String {
    match outcome {
        Ok(r) => format!("{} ({} processes)", end(r), r.processes.len()),
        Err(e) => format!("error: {e}"),
    }
}

fn render(dir: &Path, markdown: &Path, rows: &[Row], timeout: u64, network: &str) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "# Corpus run\n");
    let _ = writeln!(
        t,
        "Every script of `{}` analysed with `aegis corpus` (native backend, network `{network}`, \
         timeout {timeout} s each). Regenerate with:\n\n```\naegis corpus {} --markdown {}\n```\n",
        dir.display(),
        dir.display(),
        markdown.display()
    );
    let ok = rows.iter().filter(|r| complete(&r.outcome)).count();
    let _ = writeln!(t, "{} scripts, {} complete reports.\n", rows.len(), ok);
    let _ = writeln!(t, "| script | end_reason | exit | processes | files created | modified | deleted | connections | notes |");
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        match &row.outcome {
            Ok(r) => {
                let c = &r.summary.counts;
                let _ = writeln!(
                    t,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    row.file,
                    end(r),
                    r.execution.exit_code.map_or("-".into(), |c| c.to_string()),
                    c.processes,
                    c.files_created,
                    c.files_modified,
                    c.files_deleted,
                    c.connections,
                    c.events_of_note
                );
            }
            Err(e) => {
                let _ = writeln!(
                    t,
                    "| {} | error | - | - | - | - | - | - | {} |",
                    row.file, e
                );
            }
        }
    }
    let _ = writeln!(t, "\n## What failed and why\n");
    let mut any = false;
    for row in rows {
        let why = match &row.outcome {
            Err(e) => Some(format!("the product failed: {e}")),
            Ok(r)
                if r.status != crate::report::ReportStatus::Completed
                    || !r.incomplete.is_empty() =>
            {
                Some(
                    r.incomplete
                        .iter()
                        .map(|i| format!("{}: {}", i.section, i.reason))
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            }
            Ok(r) if r.execution.end_reason == crate::report::EndReason::NotExecuted => {
                Some(format!(
                    "not executed: {}",
                    r.execution.error.clone().unwrap_or_default()
                ))
            }
            _ => None,
        };
        if let Some(why) = why {
            any = true;
            let _ = writeln!(t, "- `{}`: {}", row.file, why);
        }
    }
    if !any {
        let _ = writeln!(t, "Nothing failed: every script yielded a complete report.");
    }
    let failing: Vec<(&Row, &Report)> = rows
        .iter()
        .filter_map(|r| match &r.outcome {
            Ok(rep) if rep.execution.exit_code.is_some_and(|c| c != 0) => Some((r, rep)),
            _ => None,
        })
        .collect();
    if !failing.is_empty() {
        let _ = writeln!(
            t,
            "\n## Scripts that failed inside the sandbox\n\n{} scripts exited non-zero. This is \
             behaviour, not a product failure: a missing tool, no network, a host that does not \
             exist. The first line of stderr says why.\n",
            failing.len()
        );
        let _ = writeln!(t, "| script | exit | first line of stderr |");
        let _ = writeln!(t, "|---|---|---|");
        for (row, rep) in failing {
            let first = rep
                .output
                .stderr
                .text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            let mut first: String = first.chars().take(120).collect();
            // UTF-16 output (Windows tools) and control bytes must not reach the Markdown.
            first = first
                .chars()
                .filter(|c| *c != '\0')
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>()
                .replace('|', "\\|")
                .replace('`', "'");
            let code = rep.execution.exit_code.unwrap_or_default();
            let _ = writeln!(t, "| {} | {} | {} |", row.file, code, first);
        }
    }
    let timeouts: Vec<&str> = rows
        .iter()
        .filter(|r| matches!(&r.outcome, Ok(rep) if rep.execution.end_reason == crate::report::EndReason::Timeout))
        .map(|r| r.file.as_str())
        .collect();
    if !timeouts.is_empty() {
        let _ = writeln!(t, "\nScripts still running at the timeout (waiting for input, sleeping or looping; their report is complete up to the kill): {}.", timeouts.join(", "));
    }
    t
}
