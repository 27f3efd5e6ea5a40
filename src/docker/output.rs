//! The sample's stdout and stderr, read from the engine's attach stream as they come: the
//! first bytes kept in a file, the rest counted (as the native supervisor's drains do).

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use bollard::container::LogOutput;
use futures_util::{Stream, StreamExt};

use crate::sandbox::Captured;

/// One stream being kept.
struct Kept {
    file: Option<File>,
    keep: u64,
    captured: Captured,
    error: Option<String>,
}

impl Kept {
    fn new(path: PathBuf, keep: u64) -> Self {
        let (file, error) = match File::create(&path) {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(format!("create {}: {e}", path.display()))),
        };
        Kept {
            file,
            keep,
            captured: Captured::default(),
            error,
        }
    }

    fn add(&mut self, bytes: &[u8]) {
        self.captured.bytes += bytes.len() as u64;
        let room = self.keep.saturating_sub(self.captured.kept);
        let take = &bytes[..bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
        if take.is_empty() {
            return;
        }
        if let Some(file) = &mut self.file {
            match file.write_all(take) {
                Ok(()) => self.captured.kept += take.len() as u64,
                Err(e) => {
                    self.error = Some(format!("keep output: {e}"));
                    self.file = None;
                }
            }
        }
    }
}

/// What the streams carried.
#[derive(Debug, Default)]
pub struct Streams {
    pub stdout: Captured,
    pub stderr: Captured,
    pub errors: Vec<String>,
}

/// Reads the attach stream to its end (the container's exit).
pub async fn drain(
    mut stream: impl Stream<Item = Result<LogOutput, bollard::errors::Error>> + Unpin,
    stdout: PathBuf,
    stderr: PathBuf,
    keep: u64,
) -> Streams {
    let mut out = Kept::new(stdout, keep);
    let mut err = Kept::new(stderr, keep);
    let mut errors = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                out.add(&message)
            }
            Ok(LogOutput::StdErr { message }) => err.add(&message),
            Ok(LogOutput::StdIn { .. }) => {}
            Err(e) => {
                errors.push(format!("output stream: {e}"));
                break;
            }
        }
    }
    errors.extend(out.error.take());
    errors.extend(err.error.take());
    Streams {
        stdout: out.captured,
        stderr: err.captured,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_all() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = vec![
            Ok(LogOutput::StdOut {
                message: "hello ".into(),
            }),
            Ok(LogOutput::StdErr {
                message: "oops".into(),
            }),
            Ok(LogOutput::StdOut {
                message: "world".into(),
            }),
        ];
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let s = rt.block_on(drain(
            futures_util::stream::iter(chunks),
            dir.path().join("o"),
            dir.path().join("e"),
            8,
        ));
        assert_eq!((s.stdout.bytes, s.stdout.kept), (11, 8));
        assert_eq!((s.stderr.bytes, s.stderr.kept), (4, 4));
        assert_eq!(std::fs::read(dir.path().join("o")).unwrap(), b"hello wo");
        assert!(s.errors.is_empty());
    }
}
