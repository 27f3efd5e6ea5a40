//! Wine's quoting of UTF-16 strings, shared by the request trace (`L"..."`), the registry dump
//! lines of `wineserver -d2` and the `.reg` files: all three are written by Wine's `dump_strW`.
//!
//! Escapes: `\\`, `\"`, `\n`, `\r`, `\t`, `\a`, `\b`, `\e`, `\f`, `\v`, `\[`, `\]` (in key
//! names), `\xH` .. `\xHHHH` (one UTF-16 unit, up to four hex digits) and `\O` .. `\OOO` (octal,
//! up to three digits; `\0` separates the strings of a REG_MULTI_SZ). Any other escaped character
//! stands for itself, as in Wine's reader.

use std::iter::Peekable;
use std::str::CharIndices;

/// A quoted string: the decoded text and the bytes consumed, closing quote included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted {
    pub text: String,
    pub consumed: usize,
}

/// Decodes `s` up to the first unescaped `"`; `None` when no quote closes it.
///
/// `s` starts just after the opening quote. UTF-16 units from `\x` escapes are joined, so a
/// surrogate pair written as two escapes becomes one character; a lone surrogate becomes U+FFFD.
pub fn unquote(s: &str) -> Option<Quoted> {
    let mut units: Vec<u16> = Vec::with_capacity(s.len());
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let text = String::from_utf16_lossy(&units);
                return Some(Quoted {
                    text,
                    consumed: i + 1,
                });
            }
            '\\' => {
                let (_, e) = chars.next()?;
                units.push(escaped_unit(e, &mut chars));
            }
            _ => {
                let mut buf = [0u16; 2];
                units.extend_from_slice(c.encode_utf16(&mut buf));
            }
        }
    }
    None
}

/// Decodes a string written without surrounding quotes (the key path of a dump line), where a
/// `"` stands for itself.
pub fn unescape(s: &str) -> String {
    let mut units: Vec<u16> = Vec::with_capacity(s.len());
    let mut chars = s.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some((_, e)) => units.push(escaped_unit(e, &mut chars)),
                None => units.push(u16::from(b'\\')),
            }
        } else {
            let mut buf = [0u16; 2];
            units.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    String::from_utf16_lossy(&units)
}

/// The UTF-16 unit an escape stands for; `e` is the character after the backslash.
fn escaped_unit(e: char, chars: &mut Peekable<CharIndices<'_>>) -> u16 {
    match e {
        'x' => take_digits(chars, 16, 4, 0).0,
        '0'..='7' => take_digits(chars, 8, 2, e.to_digit(8).unwrap_or(0)).0,
        'n' => 0x0a,
        'r' => 0x0d,
        't' => 0x09,
        'a' => 0x07,
        'b' => 0x08,
        'e' => 0x1b,
        'f' => 0x0c,
        'v' => 0x0b,
        other => {
            let mut buf = [0u16; 2];
            other.encode_utf16(&mut buf)[0]
        }
    }
}

/// Reads up to `max` digits of `radix` after a value `start`; the value and the digits read.
fn take_digits(
    chars: &mut Peekable<CharIndices<'_>>,
    radix: u32,
    max: usize,
    start: u32,
) -> (u16, usize) {
    let mut value = start;
    let mut n = 0;
    while n < max {
        let Some(d) = chars.peek().and_then(|(_, c)| c.to_digit(radix)) else {
            break;
        };
        value = value * radix + d;
        chars.next();
        n += 1;
    }
    ((value & 0xffff) as u16, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> String {
        unquote(s).expect("closing quote").text
    }

    #[test]
    fn backslash_and_quote_escapes() {
        // From a real trace: "C:\\Path\\with \"quotes\"" as Wine writes it.
        assert_eq!(
            q(r#"C:\\Path\\with \"quotes\"" rest"#),
            r#"C:\Path\with "quotes""#
        );
    }

    #[test]
    fn hex_escapes_take_up_to_four_digits() {
        assert_eq!(q(r#"caf\xe9 \x4e2d""#), "caf\u{e9} \u{4e2d}");
        // Wine pads to four digits when a hex digit follows: \x00e9 then "a".
        assert_eq!(q(r#"\x00e9a""#), "\u{e9}a");
    }

    #[test]
    fn surrogate_pairs_join_and_lone_surrogates_are_replaced() {
        assert_eq!(q(r#"\xd83d\xde00""#), "\u{1f600}");
        assert_eq!(q(r#"\xd83dx""#), "\u{fffd}x");
    }

    #[test]
    fn octal_escapes_and_multi_sz_separators() {
        assert_eq!(q(r#"one\0two\0""#), "one\0two\0");
        assert_eq!(q(r#"\033[""#), "\u{1b}[");
        assert_eq!(q(r#"a\1b""#), "a\u{1}b");
    }

    #[test]
    fn c_escapes_and_unknown_escapes() {
        assert_eq!(q(r#"a\tb\nc\rd\[e\]""#), "a\tb\nc\rd[e]");
    }

    #[test]
    fn consumed_counts_the_closing_quote() {
        let got = unquote(r#"ab\"c", next"#).expect("closed");
        assert_eq!(got.consumed, 6);
    }

    #[test]
    fn unterminated_string_is_none() {
        assert_eq!(unquote(r#"abc\""#), None);
        assert_eq!(unquote("abc\\"), None);
    }

    #[test]
    fn key_paths_keep_bare_quotes() {
        // A real -d2 dump line's key: Software\\AegisEsc\\caf\xe9 "q" \[x\]
        assert_eq!(
            unescape(r#"Software\\AegisEsc\\caf\xe9 "q" \[x\]"#),
            "Software\\AegisEsc\\caf\u{e9} \"q\" [x]"
        );
    }
}
