//! The monitor's output: events written as JSON lines, each category capped so a sample
//! cannot flood the host's disk or the report.

use std::collections::HashMap;
use std::io::Write;

use super::events::Event;

/// Most records kept per category.
pub const CAPS: &[(&str, u64)] = &[
    ("process", 5_000),
    ("file", 20_000),
    ("network", 10_000),
    ("note", 2_000),
];

/// Writes events and counts what was left out.
pub struct Sink<W: Write> {
    out: W,
    written: HashMap<&'static str, u64>,
    dropped: HashMap<&'static str, u64>,
    /// Write failures (the host side will see a short stream and say so).
    pub write_errors: u64,
}

fn category(ev: &Event) -> &'static str {
    match ev {
        Event::Start { .. }
        | Event::Fork { .. }
        | Event::Thread { .. }
        | Event::Exec { .. }
        | Event::ExecFailed { .. }
        | Event::Exit { .. } => "process",
        Event::FileWrite { .. }
        | Event::FileDelete { .. }
        | Event::FileRename { .. }
        | Event::FileExecutable { .. }
        | Event::FileTimes { .. } => "file",
        Event::Net { .. } => "network",
        Event::Note { .. } => "note",
        Event::Dropped { .. } | Event::Done { .. } => "control",
    }
}

fn cap(cat: &str) -> u64 {
    CAPS.iter()
        .find(|(c, _)| *c == cat)
        .map_or(u64::MAX, |(_, n)| *n)
}

impl<W: Write> Sink<W> {
    pub fn new(out: W) -> Self {
        Sink {
            out,
            written: HashMap::new(),
            dropped: HashMap::new(),
            write_errors: 0,
        }
    }

    /// Writes `ev` unless its category is full. Process exits are always written: the host
    /// needs them to close the records it has.
    pub fn emit(&mut self, ev: Event) {
        let cat = category(&ev);
        let count = self.written.entry(cat).or_insert(0);
        let always = matches!(ev, Event::Exit { .. });
        if *count >= cap(cat) && !always {
            let dropped = self.dropped.entry(cat).or_insert(0);
            *dropped += 1;
            if *dropped == 1 || dropped.is_multiple_of(1000) {
                let n = *dropped;
                self.write(&Event::Dropped {
                    category: cat.to_string(),
                    count: n,
                });
            }
            return;
        }
        *count += 1;
        self.write(&ev);
    }

    fn write(&mut self, ev: &Event) {
        let mut line = serde_json::to_vec(ev).unwrap_or_default();
        line.push(b'\n');
        // One write per event: the monitor can be killed at any moment (the timeout kills
        // the whole cgroup), and what was written before stays readable.
        if self
            .out
            .write_all(&line)
            .and_then(|_| self.out.flush())
            .is_err()
        {
            self.write_errors += 1;
        }
    }

    /// Final totals of dropped records.
    pub fn finish(&mut self, t: u64) {
        let dropped: Vec<_> = self.dropped.iter().map(|(c, n)| (*c, *n)).collect();
        for (cat, n) in dropped {
            self.write(&Event::Dropped {
                category: cat.to_string(),
                count: n,
            });
        }
        self.write(&Event::Done { t });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_capped_and_counted_but_exits_always_pass() {
        let mut sink = Sink::new(Vec::new());
        for i in 0..2_003 {
            sink.emit(Event::Note {
                t: i,
                pid: 2,
                kind: "x".into(),
                detail: String::new(),
            });
        }
        sink.emit(Event::Exit {
            t: 9,
            pid: 2,
            code: Some(0),
            signal: None,
        });
        sink.finish(10);
        let text = String::from_utf8(sink.out.clone()).unwrap();
        let (events, bad) = crate::monitor::events::parse_stream(&text);
        assert_eq!(bad, 0);
        let notes = events
            .iter()
            .filter(|e| matches!(e, Event::Note { .. }))
            .count();
        assert_eq!(notes, 2_000);
        assert!(events.iter().any(|e| matches!(e, Event::Exit { .. })));
        let last_dropped = events.iter().rev().find_map(|e| match e {
            Event::Dropped { category, count } if category == "note" => Some(*count),
            _ => None,
        });
        assert_eq!(last_dropped, Some(3));
        assert_eq!(events.last(), Some(&Event::Done { t: 10 }));
    }
}
