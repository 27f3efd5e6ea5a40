//! Turning the monitor's event stream and the supervisor's outcome into the report.

use std::collections::{BTreeSet, HashMap};

use crate::monitor::events::Event;
use crate::report::{
    Connection, Counts, DnsLookup, EventOfNote, FileEntry, Files, HttpConversation, Incomplete,
    IpTraffic, Listener, Network, Process, ProcessNode, RenameEntry, Summary,
};
use crate::sandbox::{CollectedFile, FileState, SandboxOutcome};

/// Everything the event stream says, with processes identified.
#[derive(Debug, Default)]
pub struct Behaviour {
    pub processes: Vec<Process>,
    pub files: Files,
    pub network: Network,
    pub events_of_note: Vec<EventOfNote>,
    pub incomplete: Vec<Incomplete>,
    /// The first process's exec failed before anything ran: (path, errno).
    pub first_exec_failure: Option<(String, String)>,
    /// The monitor wrote its closing record.
    pub stream_complete: bool,
}

/// Builds the behaviour sections from the stream and the collected files.
pub struct Builder<'a> {
    start_ns: u64,
    end_s: f64,
    killed_at_end: bool,
    root_argv: &'a [String],
    out: Behaviour,
    /// pid -> index in `out.processes` of the process that has that pid now.
    live: HashMap<i32, usize>,
    first_write: HashMap<String, (Option<u32>, f64, bool)>,
    deletes: Vec<(String, FileEntry)>,
    executed: HashMap<String, (Option<u32>, f64)>,
}

fn secs(ns: u64, start: u64) -> f64 {
    let s = ns.saturating_sub(start) as f64 / 1e9;
    (s * 1e6).round() / 1e6
}

impl<'a> Builder<'a> {
    pub fn new(outcome: &SandboxOutcome, root_argv: &'a [String]) -> Self {
        Builder {
            start_ns: outcome.started_ns,
            end_s: secs(outcome.ended_ns, outcome.started_ns),
            killed_at_end: outcome.ended_by_force(),
            root_argv,
            out: Behaviour::default(),
            live: HashMap::new(),
            first_write: HashMap::new(),
            deletes: Vec::new(),
            executed: HashMap::new(),
        }
    }

    fn id_of(&self, pid: i32) -> Option<u32> {
        self.live.get(&pid).map(|i| self.out.processes[*i].id)
    }

    fn new_process(&mut self, pid: i32, ppid: i32, t: f64) -> usize {
        let parent = self.live.get(&ppid).copied();
        let inherit = parent.map(|i| self.out.processes[i].clone());
        let id = self.out.processes.len() as u32 + 1;
        let p = Process {
            id,
            pid,
            ppid,
            parent_id: inherit.as_ref().map(|p| p.id),
            image: inherit
                .as_ref()
                .map(|p| p.image.clone())
                .unwrap_or_default(),
            image_sha256: inherit.as_ref().and_then(|p| p.image_sha256.clone()),
            argv: inherit
                .as_ref()
                .map(|p| p.argv.clone())
                .unwrap_or_else(|| self.root_argv.to_vec()),
            cwd: inherit.as_ref().map(|p| p.cwd.clone()).unwrap_or_default(),
            uid: inherit.as_ref().and_then(|p| p.uid),
            started_at: t,
            ended_at: None,
            exit_code: None,
            signal: None,
            reparented: false,
            threads: 1,
            execs: 0,
            windows: None,
        };
        self.out.processes.push(p);
        let index = self.out.processes.len() - 1;
        self.live.insert(pid, index);
        index
    }

    /// Feeds one event.
    pub fn feed(&mut self, ev: Event) {
        match ev {
            Event::Start { t, pid } => {
                let t = secs(t, self.start_ns);
                self.new_process(pid, 1, t);
            }
            Event::Fork { t, pid, ppid } => {
                let t = secs(t, self.start_ns);
                self.new_process(pid, ppid, t);
            }
            Event::Thread { pid, .. } => {
                if let Some(i) = self.live.get(&pid) {
                    self.out.processes[*i].threads += 1;
                }
            }
            Event::Exec {
                t,
                pid,
                image,
                argv,
                cwd,
                uid,
                image_sha256,
            } => {
                let t = secs(t, self.start_ns);
                let i = match self.live.get(&pid) {
                    Some(i) => *i,
                    None => self.new_process(pid, 0, t),
                };
                let p = &mut self.out.processes[i];
                self.executed.insert(image.clone(), (Some(p.id), t));
                p.image = image;
                p.argv = argv;
                p.cwd = cwd;
                p.uid = uid;
                p.image_sha256 = image_sha256;
                p.execs += 1;
            }
            Event::ExecFailed {
                t,
                pid,
                path,
                errno,
            } => {
                let t = secs(t, self.start_ns);
                let is_first = self.out.processes.len() == 1
                    && self.out.processes[0].execs == 0
                    && self.out.processes[0].pid == pid;
                if is_first && self.out.first_exec_failure.is_none() {
                    self.out.first_exec_failure = Some((path.clone(), errno.clone()));
                }
                // Shells and execvp try each PATH entry: a missing file is routine.
                if errno != "ENOENT" {
                    let id = self.id_of(pid);
                    self.note(
                        id,
                        t,
                        "exec_failed",
                        format!("exec of {path} failed: {errno}"),
                    );
                }
            }
            Event::Exit {
                t,
                pid,
                code,
                signal,
            } => self.exit(pid, secs(t, self.start_ns), code, signal),
            Event::Note {
                t,
                pid,
                kind,
                detail,
            } => {
                let id = self.id_of(pid);
                self.note(id, secs(t, self.start_ns), &kind, detail);
            }
            Event::Dropped { category, count } => self.dropped(category, count),
            Event::Done { .. } => self.out.stream_complete = true,
            other => self.file_or_net(other),
        }
    }

    fn exit(&mut self, pid: i32, t: f64, code: Option<i32>, signal: Option<String>) {
        let Some(i) = self.live.remove(&pid) else {
            return;
        };
        let id = self.out.processes[i].id;
        let p = &mut self.out.processes[i];
        p.ended_at = Some(t);
        p.exit_code = code;
        p.signal = signal;
        for &j in self.live.values() {
            let child = &mut self.out.processes[j];
            if child.parent_id == Some(id) {
                child.reparented = true;
            }
        }
    }

    fn note(&mut self, process_id: Option<u32>, time: f64, kind: &str, detail: String) {
        // The same event from the same process is one fact, however often it repeats.
        let seen = self
            .out
            .events_of_note
            .iter()
            .any(|e| e.kind == kind && e.process_id == process_id && e.detail == detail);
        if seen {
            return;
        }
        self.out.events_of_note.push(EventOfNote {
            kind: kind.to_string(),
            process_id,
            time,
            detail,
        });
    }

    fn dropped(&mut self, category: String, count: u64) {
        let section = match category.as_str() {
            "process" => "processes",
            "file" => "files",
            "network" => "network",
            _ => "events_of_note",
        };
        let reason = "the sample produced more records than the report keeps".to_string();
        match self
            .out
            .incomplete
            .iter_mut()
            .find(|i| i.section == section)
        {
            Some(i) => i.dropped = Some(i.dropped.unwrap_or(0).max(count)),
            None => self.out.incomplete.push(Incomplete {
                section: section.into(),
                reason,
                dropped: Some(count),
            }),
        }
    }

    fn file_or_net(&mut self, ev: Event) {
        match ev {
            Event::FileWrite {
                t,
                pid,
                path,
                created,
            } => {
                let t = secs(t, self.start_ns);
                let id = self.id_of(pid);
                self.first_write.entry(path).or_insert((id, t, created));
            }
            Event::FileDelete {
                t,
                pid,
                path,
                size,
                sha256,
                artifact,
                note,
            } => {
                let entry = FileEntry {
                    path: path.clone(),
                    process_id: self.id_of(pid),
                    time: Some(secs(t, self.start_ns)),
                    size,
                    sha256,
                    artifact,
                    artifact_note: note,
                    exists_at_end: false,
                    windows_path: None,
                };
                self.deletes.push((path, entry));
            }
            Event::FileRename { t, pid, from, to } => {
                let process_id = self.id_of(pid);
                let time = secs(t, self.start_ns);
                self.out.files.renamed.push(RenameEntry {
                    from,
                    to,
                    process_id,
                    time,
                });
            }
            Event::FileExecutable { t, pid, path, .. } => {
                let e = self.entry(path, pid, t);
                self.out.files.made_executable.push(e);
            }
            Event::FileTimes { t, pid, path } => {
                let e = self.entry(path, pid, t);
                self.out.files.timestamps_changed.push(e);
            }
            Event::Net {
                t,
                pid,
                op,
                protocol,
                ip,
                port,
                path,
                outcome,
            } => {
                let process_id = self.id_of(pid);
                let time = secs(t, self.start_ns);
                if op == "bind" || op == "listen" {
                    self.out.network.listeners.push(Listener {
                        protocol,
                        address: ip.or(path),
                        port,
                        process_id,
                        time,
                        operation: op,
                        outcome,
                    });
                } else {
                    self.out.network.connections.push(Connection {
                        protocol,
                        operation: op,
                        dst_ip: ip,
                        dst_port: port,
                        dst_path: path,
                        process_id,
                        time,
                        outcome,
                        src_port: None,
                        bytes_out: None,
                        bytes_in: None,
                        datagrams: None,
                        first_bytes: None,
                        service: None,
                        commands: Vec::new(),
                        seen_in: "syscall".into(),
                    });
                }
            }
            _ => {}
        }
    }

    fn entry(&self, path: String, pid: i32, t: u64) -> FileEntry {
        FileEntry {
            path,
            process_id: self.id_of(pid),
            time: Some(secs(t, self.start_ns)),
            ..Default::default()
        }
    }

    /// Closes the stream: processes alive at a kill, files merged with what was collected.
    pub fn finish(mut self, collected: &[CollectedFile]) -> Behaviour {
        let live: Vec<usize> = self.live.values().copied().collect();
        for i in live {
            let p = &mut self.out.processes[i];
            if self.killed_at_end {
                p.ended_at = Some(self.end_s);
                p.signal = Some("SIGKILL".into());
            }
        }
        self.merge_files(collected);
        self.out
    }

    fn merge_files(&mut self, collected: &[CollectedFile]) {
        let at_end: HashMap<&str, &CollectedFile> =
            collected.iter().map(|c| (c.path.as_str(), c)).collect();
        let renamed_to: HashMap<String, (Option<u32>, f64)> = self
            .out
            .files
            .renamed
            .iter()
            .map(|r| (r.to.clone(), (r.process_id, r.time)))
            .collect();
        let mut files = std::mem::take(&mut self.out.files);
        let mut seen = BTreeSet::new();

        // Files the stream saw created, in the order they were first written.
        let mut writes: Vec<_> = self.first_write.iter().collect();
        writes.sort_by(|a, b| a.1 .1.total_cmp(&b.1 .1));
        for (path, (pid, t, created)) in writes {
            let end = at_end.get(path.as_str()).copied();
            let modified = end.is_some_and(|c| c.state == FileState::Modified);
            if !created && !modified {
                continue; // an existing file opened for writing but left unchanged
            }
            let mut e = self.final_state(path, end);
            e.process_id = *pid;
            e.time = Some(*t);
            seen.insert(path.clone());
            if modified {
                files.modified.push(e);
            } else {
                files.created.push(e);
            }
        }
        // What the writable layer holds that the stream did not attribute.
        for c in collected {
            if seen.contains(&c.path) || c.state == FileState::Deleted {
                continue;
            }
            let mut e = self.final_state(&c.path, Some(c));
            if let Some((pid, t)) = renamed_to.get(&c.path) {
                e.process_id = *pid;
                e.time = Some(*t);
            }
            seen.insert(c.path.clone());
            match c.state {
                FileState::Modified => files.modified.push(e),
                _ => files.created.push(e),
            }
        }
        self.merge_deletes(&mut files, collected);
        for e in files
            .made_executable
            .iter_mut()
            .chain(files.timestamps_changed.iter_mut())
        {
            let end = at_end.get(e.path.as_str()).copied();
            let f = self.final_state(&e.path, end);
            e.size = f.size;
            e.sha256 = f.sha256;
            e.artifact = f.artifact;
            e.exists_at_end = f.exists_at_end;
        }
        self.out.files = files;
    }

    fn merge_deletes(&mut self, files: &mut Files, collected: &[CollectedFile]) {
        let mut deleted_paths = BTreeSet::new();
        for (path, mut entry) in std::mem::take(&mut self.deletes) {
            // A file deleted and created again still exists at the end.
            entry.exists_at_end = collected
                .iter()
                .any(|c| c.path == path && c.state != FileState::Deleted);
            // Give created entries that no longer exist the hash read before deletion.
            for created in files
                .created
                .iter_mut()
                .filter(|c| c.path == path && !c.exists_at_end)
            {
                if created.sha256.is_none() {
                    created.sha256 = entry.sha256.clone();
                    created.size = entry.size;
                    created.artifact = entry.artifact.clone();
                }
            }
            deleted_paths.insert(path);
            files.deleted.push(entry);
        }
        for c in collected.iter().filter(|c| c.state == FileState::Deleted) {
            if !deleted_paths.contains(&c.path) {
                files.deleted.push(FileEntry {
                    path: c.path.clone(),
                    ..Default::default()
                });
            }
        }
    }

    fn final_state(&self, path: &str, end: Option<&CollectedFile>) -> FileEntry {
        let mut e = FileEntry {
            path: path.to_string(),
            ..Default::default()
        };
        if let Some(c) = end.filter(|c| c.state != FileState::Deleted) {
            e.size = c.size;
            e.sha256 = c.sha256.clone();
            e.artifact = c.artifact.clone();
            e.artifact_note = c.note.clone();
            e.exists_at_end = true;
        }
        if let Some((pid, t)) = self.executed.get(path) {
            if e.process_id.is_none() {
                e.process_id = *pid;
                e.time = Some(*t);
            }
        }
        e
    }
}

/// Nests processes under their parents; roots are processes without a known parent.
pub fn process_tree(processes: &[Process]) -> Vec<ProcessNode> {
    let mut children: HashMap<Option<u32>, Vec<&Process>> = HashMap::new();
    for p in processes {
        children.entry(p.parent_id).or_default().push(p);
    }
    fn node(
        p: &Process,
        children: &HashMap<Option<u32>, Vec<&Process>>,
        depth: usize,
    ) -> ProcessNode {
        let kids = if depth > 1000 {
            Vec::new()
        } else {
            children
                .get(&Some(p.id))
                .map(|list| list.iter().map(|c| node(c, children, depth + 1)).collect())
                .unwrap_or_default()
        };
        ProcessNode {
            id: p.id,
            pid: p.pid,
            image: p.image.clone(),
            argv: p.argv.clone(),
            children: kids,
        }
    }
    children
        .get(&None)
        .map(|roots| roots.iter().map(|r| node(r, &children, 0)).collect())
        .unwrap_or_default()
}

/// The VirusTotal-style summary of the behaviour.
pub fn summarize(b: &Behaviour) -> Summary {
    let unique = |items: Vec<String>| -> Vec<String> {
        let mut seen = BTreeSet::new();
        items
            .into_iter()
            .filter(|i| seen.insert(i.clone()))
            .collect()
    };
    let files = &b.files;
    let written = files
        .created
        .iter()
        .chain(&files.modified)
        .map(|f| f.path.clone())
        .collect();
    let dropped = files
        .created
        .iter()
        .chain(&files.modified)
        .filter(|f| f.artifact.is_some())
        .map(|f| f.path.clone())
        .collect();
    let mut ip_traffic: Vec<IpTraffic> = b
        .network
        .connections
        .iter()
        .filter_map(|c| {
            Some(IpTraffic {
                destination_ip: c.dst_ip.clone()?,
                destination_port: c.dst_port?,
                transport_layer_protocol: c.protocol.clone(),
            })
        })
        .collect();
    ip_traffic.sort();
    ip_traffic.dedup();
    let mut dns_lookups: Vec<DnsLookup> = Vec::new();
    for q in b.network.dns.iter().flatten() {
        match dns_lookups.iter_mut().find(|l| l.hostname == q.query) {
            Some(l) => {
                for a in &q.answers {
                    if !l.resolved_ips.contains(a) {
                        l.resolved_ips.push(a.clone());
                    }
                }
            }
            None => dns_lookups.push(DnsLookup {
                hostname: q.query.clone(),
                resolved_ips: q.answers.clone(),
            }),
        }
    }
    let http_conversations = b
        .network
        .http
        .iter()
        .flatten()
        .map(|h| HttpConversation {
            url: h.url.clone(),
            request_method: h.method.clone(),
            request_headers: h.headers.iter().cloned().collect(),
            response_status_code: h.response_status,
        })
        .collect();
    Summary {
        files_written: unique(written),
        files_deleted: unique(files.deleted.iter().map(|f| f.path.clone()).collect()),
        files_dropped: unique(dropped),
        processes_created: unique(
            b.processes
                .iter()
                .skip(1)
                .map(|p| p.image.clone())
                .collect(),
        ),
        processes_terminated: unique(
            b.processes
                .iter()
                .filter(|p| p.ended_at.is_some())
                .map(|p| p.image.clone())
                .collect(),
        ),
        command_executions: unique(
            b.processes
                .iter()
                .filter(|p| p.execs > 0)
                .map(|p| p.argv.join(" "))
                .collect(),
        ),
        ip_traffic,
        dns_lookups,
        http_conversations,
        registry_keys_set: Vec::new(),
        registry_keys_deleted: Vec::new(),
        mutexes_created: Vec::new(),
        services_created: Vec::new(),
        counts: Counts {
            processes: b.processes.len(),
            files_created: files.created.len(),
            files_modified: files.modified.len(),
            files_deleted: files.deleted.len(),
            connections: b.network.connections.len(),
            events_of_note: b.events_of_note.len(),
            ..Counts::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome() -> SandboxOutcome {
        SandboxOutcome {
            started_ns: 1_000_000_000,
            ended_ns: 6_000_000_000,
            timed_out: true,
            ..Default::default()
        }
    }

    fn exec(t: u64, pid: i32, image: &str) -> Event {
        Event::Exec {
            t,
            pid,
            image: image.into(),
            argv: vec![image.into()],
            cwd: "/root".into(),
            uid: Some(0),
            image_sha256: None,
        }
    }

    #[test]
    fn pid_reuse_gives_two_processes_and_orphans_are_marked_reparented() {
        let argv = vec!["/root/s".to_string()];
        let o = outcome();
        let mut b = Builder::new(&o, &argv);
        b.feed(Event::Start {
            t: 1_000_000_000,
            pid: 2,
        });
        b.feed(exec(1_100_000_000, 2, "/usr/bin/bash"));
        b.feed(Event::Fork {
            t: 1_200_000_000,
            pid: 3,
            ppid: 2,
        });
        b.feed(Event::Fork {
            t: 1_300_000_000,
            pid: 4,
            ppid: 3,
        });
        b.feed(Event::Exit {
            t: 1_400_000_000,
            pid: 3,
            code: Some(0),
            signal: None,
        });
        b.feed(Event::Fork {
            t: 1_500_000_000,
            pid: 3,
            ppid: 2,
        });
        b.feed(Event::Thread {
            t: 1_600_000_000,
            pid: 4,
            tid: 9,
        });
        let beh = b.finish(&[]);
        let p = &beh.processes;
        assert_eq!(p.len(), 4);
        assert_eq!((p[1].id, p[1].pid, p[1].ended_at), (2, 3, Some(0.4)));
        assert_eq!((p[3].id, p[3].pid, p[3].parent_id), (4, 3, Some(1)));
        assert_eq!(p[2].parent_id, Some(2));
        assert!(p[2].reparented, "grandchild outlived its parent");
        assert!(!p[3].reparented);
        assert_eq!(p[2].threads, 2);
        assert_eq!(
            p[2].image, "/usr/bin/bash",
            "a fork without exec keeps the parent's image"
        );
        // Killed at the timeout: still-running processes end at the end of the run.
        assert_eq!(p[0].ended_at, Some(5.0));
        assert_eq!(p[0].signal.as_deref(), Some("SIGKILL"));
        let tree = process_tree(p);
        assert_eq!(tree.len(), 1);
        assert_eq!(
            tree[0].children.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![2, 4]
        );
        assert_eq!(tree[0].children[0].children[0].id, 3);
    }

    #[test]
    fn a_repeated_event_of_note_is_listed_once() {
        let o = outcome();
        let mut b = Builder::new(&o, &[]);
        b.feed(Event::Start {
            t: 1_000_000_000,
            pid: 2,
        });
        for t in [1_100_000_000, 1_200_000_000] {
            b.feed(Event::Note {
                t,
                pid: 2,
                kind: "tracerpid_check".into(),
                detail: "read of /proc/2/status".into(),
            });
        }
        b.feed(Event::Note {
            t: 1_300_000_000,
            pid: 2,
            kind: "tracerpid_check".into(),
            detail: "read of /proc/self/status".into(),
        });
        let beh = b.finish(&[]);
        assert_eq!(beh.events_of_note.len(), 2);
        assert_eq!(
            beh.events_of_note[0].time, 0.1,
            "the first occurrence is kept"
        );
    }

    #[test]
    fn files_merge_stream_and_collection() {
        let argv = vec![];
        let o = outcome();
        let mut b = Builder::new(&o, &argv);
        b.feed(Event::Start {
            t: 1_000_000_000,
            pid: 2,
        });
        let w = |path: &str, created| Event::FileWrite {
            t: 2_000_000_000,
            pid: 2,
            path: path.into(),
            created,
        };
        b.feed(w("/tmp/a", true));
        b.feed(w("/etc/crontab", false));
        b.feed(w("/etc/hosts", false));
        b.feed(Event::FileDelete {
            t: 3_000_000_000,
            pid: 2,
            path: "/root/s".into(),
            size: Some(5),
            sha256: Some("abc".into()),
            artifact: Some("dropped/abc".into()),
            note: None,
        });
        let collected = vec![
            CollectedFile {
                path: "/tmp/a".into(),
                state: FileState::Created,
                size: Some(3),
                sha256: Some("s1".into()),
                artifact: Some("dropped/s1".into()),
                note: None,
            },
            CollectedFile {
                path: "/etc/crontab".into(),
                state: FileState::Modified,
                size: Some(9),
                sha256: Some("s2".into()),
                artifact: None,
                note: None,
            },
            CollectedFile {
                path: "/usr/bin/gone".into(),
                state: FileState::Deleted,
                size: None,
                sha256: None,
                artifact: None,
                note: None,
            },
        ];
        let beh = b.finish(&collected);
        let f = &beh.files;
        assert_eq!(f.created.len(), 1);
        assert_eq!(f.created[0].path, "/tmp/a");
        assert_eq!(f.created[0].process_id, Some(1));
        assert_eq!(f.created[0].sha256.as_deref(), Some("s1"));
        assert!(f.created[0].exists_at_end);
        assert_eq!(f.modified.len(), 1, "unchanged /etc/hosts is not reported");
        assert_eq!(f.modified[0].path, "/etc/crontab");
        let deleted: Vec<_> = f.deleted.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(deleted, vec!["/root/s", "/usr/bin/gone"]);
        assert_eq!(f.deleted[0].sha256.as_deref(), Some("abc"));
        let s = summarize(&beh);
        assert_eq!(s.files_written, vec!["/tmp/a", "/etc/crontab"]);
        assert_eq!(s.files_dropped, vec!["/tmp/a"]);
    }
}
