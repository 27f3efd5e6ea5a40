//! Turning raw bytes a sample printed into JSON text without loss.

/// Encodes `bytes` for the report: exact text when it is UTF-8 (`"utf-8"`), otherwise an
/// escaped form (`"escaped"`) where each byte that is not part of valid UTF-8 becomes `\xNN`
/// and a backslash becomes `\\`, so [`unescape`] recovers the bytes.
pub fn encode(bytes: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_string(), "utf-8"),
        Err(_) => (escape(bytes), "escaped"),
    }
}

/// The escaped form alone: `\xNN` for each byte that is not UTF-8, `\\` for a backslash.
pub fn escape(mut bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 16);
    while !bytes.is_empty() {
        match std::str::from_utf8(bytes) {
            Ok(valid) => {
                push_escaped_text(&mut out, valid);
                break;
            }
            Err(err) => {
                let (valid, rest) = bytes.split_at(err.valid_up_to());
                // `valid_up_to` guarantees that this prefix is UTF-8.
                push_escaped_text(&mut out, std::str::from_utf8(valid).unwrap_or_default());
                let bad = err.error_len().unwrap_or(rest.len());
                for b in &rest[..bad] {
                    out.push_str(&format!("\\x{b:02x}"));
                }
                bytes = &rest[bad..];
            }
        }
    }
    out
}

fn push_escaped_text(out: &mut String, text: &str) {
    for c in text.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
}

/// Reverses the `escaped` encoding.
pub fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') && i + 3 < bytes.len() {
            let hex = &text[i + 2..i + 4];
            out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stays_exact() {
        assert_eq!(
            encode("héllo \\ world".as_bytes()),
            ("héllo \\ world".into(), "utf-8")
        );
    }

    #[test]
    fn invalid_bytes_are_escaped_and_recoverable() {
        let raw = b"ok\xff\xfe tail \\ \xc3\xa9 \xc3";
        let (text, enc) = encode(raw);
        assert_eq!(enc, "escaped");
        assert_eq!(text, "ok\\xff\\xfe tail \\\\ \u{e9} \\xc3");
        assert_eq!(unescape(&text), raw.to_vec());
    }
}
