//! Reading a text file line by line with a bound on what one line may cost.
//!
//! wineserver prints request data in full (a sample's 10 MB registry value is a 30 MB line), so
//! a line is kept up to [`LINE_MAX`] bytes and the rest skipped without being stored.

use std::io::{self, BufRead};

/// Bytes of one line that are kept; longer lines are cut (and counted by the reader).
pub const LINE_MAX: usize = 256 * 1024;

/// Lines of a reader, each cut to [`LINE_MAX`] bytes, decoded lossily as UTF-8.
pub struct CappedLines<R> {
    inner: R,
    /// Lines that were longer than [`LINE_MAX`].
    pub cut: u64,
    /// The last read ended without a newline (the writer stopped mid-line).
    pub ended_mid_line: bool,
}

impl<R: BufRead> CappedLines<R> {
    pub fn new(inner: R) -> Self {
        CappedLines {
            inner,
            cut: 0,
            ended_mid_line: false,
        }
    }

    /// The next line without its newline; `None` at the end.
    pub fn next_line(&mut self) -> io::Result<Option<String>> {
        let mut kept: Vec<u8> = Vec::new();
        let mut any = false;
        let mut was_cut = false;
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                self.ended_mid_line |= any;
                break;
            }
            any = true;
            let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            let room = LINE_MAX.saturating_sub(kept.len());
            if chunk.len() > room {
                was_cut = true;
            }
            kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            let used = done.unwrap_or(buf.len());
            self.inner.consume(used);
            if done.is_some() {
                break;
            }
        }
        if was_cut {
            self.cut += 1;
        }
        if !any {
            return Ok(None);
        }
        Ok(Some(String::from_utf8_lossy(&kept).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_and_counted() {
        let long = "x".repeat(LINE_MAX + 10);
        let text = format!("a\n{long}\nb");
        let mut lines = CappedLines::new(io::BufReader::with_capacity(64, text.as_bytes()));
        assert_eq!(lines.next_line().unwrap().as_deref(), Some("a"));
        assert_eq!(lines.next_line().unwrap().map(|l| l.len()), Some(LINE_MAX));
        assert_eq!(lines.next_line().unwrap().as_deref(), Some("b"));
        assert!(lines.ended_mid_line);
        assert_eq!(lines.next_line().unwrap(), None);
        assert_eq!(lines.cut, 1);
    }
}
