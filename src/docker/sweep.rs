//! Containers of analyses whose orchestrator is gone: found by their labels, removed at the
//! next start. Only containers carrying the sandbox label are ever listed or touched.

use std::collections::HashMap;

use bollard::container::ListContainersOptions;
use bollard::Docker;

use bollard::models::ContainerSummary;

use super::{api, DockerError, LABEL, LABEL_ANALYSIS, LABEL_OWNER};
use crate::analysis::leftovers::start_time;

/// This process as a container label: its pid namespace, pid and start time, so that a
/// sweep in another pid namespace (an orchestrator in a container) never judges it.
pub fn owner_label() -> String {
    let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    format!("{}:{pid}:{}", pid_namespace(), start_time(pid).unwrap_or(0))
}

fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether the owner named by a label is gone. Owners of another pid namespace are never
/// judged gone: their process cannot be seen from here.
pub fn owner_gone(label: &str) -> bool {
    let mut parts = label.rsplitn(3, ':');
    let start: Option<u64> = parts.next().and_then(|s| s.parse().ok());
    let pid: Option<i32> = parts.next().and_then(|s| s.parse().ok());
    let ns = parts.next().unwrap_or_default();
    match (ns == pid_namespace(), pid, start) {
        (true, Some(pid), Some(start)) => start_time(pid) != Some(start),
        _ => false,
    }
}

async fn list(docker: &Docker) -> Result<Vec<ContainerSummary>, DockerError> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL}=1")])]);
    let options = ListContainersOptions {
        all: true,
        filters,
        ..Default::default()
    };
    docker
        .list_containers(Some(options))
        .await
        .map_err(|e| api("list containers", e))
}

/// Every labelled container: (names, analysis id).
pub async fn labelled(docker: &Docker) -> Result<Vec<(String, String)>, DockerError> {
    Ok(list(docker)
        .await?
        .into_iter()
        .map(|c| {
            let analysis = c
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_ANALYSIS).cloned())
                .unwrap_or_default();
            (c.names.unwrap_or_default().join(","), analysis)
        })
        .collect())
}

/// Removes every labelled container whose owner is gone; returns their names.
pub async fn sweep(docker: &Docker) -> Result<Vec<String>, DockerError> {
    let list = list(docker).await?;
    let mut removed = Vec::new();
    for c in list {
        let labels = c.labels.unwrap_or_default();
        // The filter already asked for the label; checking again costs nothing.
        if labels.get(LABEL).map(String::as_str) != Some("1") {
            continue;
        }
        let Some(owner) = labels.get(LABEL_OWNER) else {
            continue;
        };
        if !owner_gone(owner) {
            continue;
        }
        let Some(id) = c.id else { continue };
        if super::force_remove(docker, &id).await.is_ok() {
            removed.push(c.names.unwrap_or_default().join(","));
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_judged_only_in_their_own_pid_namespace() {
        let me = owner_label();
        assert!(!owner_gone(&me), "{me}");
        let ns = pid_namespace();
        assert!(owner_gone(&format!("{ns}:{}:1", std::process::id())));
        assert!(!owner_gone(&format!("pid:[1]:{}:1", std::process::id())));
        assert!(!owner_gone("garbage"));
    }
}
