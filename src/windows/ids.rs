//! Which report process a trace's process is, and how a Windows section says it is incomplete:
//! shared by the registry, service and process views.

use std::collections::HashMap;

use super::trace::{ProcessKey, Trace};
use crate::report::{Incomplete, Process, Report};

/// Trace process → report process `id`, through the Unix pid wineserver was told.
pub(super) struct ProcessIds {
    by_key: HashMap<ProcessKey, u32>,
}

impl ProcessIds {
    pub(super) fn new(report: &Report, trace: Option<&Trace>) -> Self {
        let mut by_key = HashMap::new();
        for p in trace.map(|t| t.processes.values()).into_iter().flatten() {
            let found = p
                .unix_pid
                .and_then(|pid| report_process(&report.processes, pid));
            if let Some(id) = found {
                by_key.insert(p.key, id);
            }
        }
        ProcessIds { by_key }
    }

    pub(super) fn get(&self, key: Option<ProcessKey>) -> Option<u32> {
        key.and_then(|k| self.by_key.get(&k).copied())
    }
}

/// The report process with Unix pid `pid`: the last one, as pids are reused only after exit
/// and Wine's processes live until the end.
fn report_process(processes: &[Process], pid: i32) -> Option<u32> {
    processes.iter().rev().find(|p| p.pid == pid).map(|p| p.id)
}

/// Records that `section` could not be fully collected.
pub(super) fn incomplete(report: &mut Report, section: &str, reason: String, dropped: Option<u64>) {
    report.incomplete.push(Incomplete {
        section: section.into(),
        reason,
        dropped,
    });
}
