//! The argument and reply lists of wineserver's request trace:
//! `hkey=0038, type=1, name=L"Run", objattr={rootdir=0000,name=L"\\??\\C:\\x"}, data={2a,00}`.
//!
//! Fields are `name=value` separated by commas at nesting depth 0; a value is a bare token, a
//! `{...}` group (nested, with its own fields), a `"..."` string or an `L"..."` UTF-16 string.

use super::escape::unquote;

/// The raw text of field `key` in `list`, at depth 0; `None` when absent or malformed.
pub fn field<'a>(list: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = list.trim_start();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let len = value_len(after)?;
        let value = &after[..len];
        if name.trim() == key {
            return Some(value);
        }
        rest = after[len..].trim_start_matches([',', ' ']);
    }
    None
}

/// The length of the value at the start of `s` (up to the separating comma or the end).
fn value_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let q = unquote(&s[i + 1..])?;
                i += 1 + q.consumed;
                continue;
            }
            b'{' => depth += 1,
            b'}' => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            b',' if depth == 0 => return Some(i),
            _ => {}
        }
        i += 1;
    }
    Some(i)
}

/// The inside of a `{...}` value.
pub fn group(value: &str) -> Option<&str> {
    value.trim().strip_prefix('{')?.strip_suffix('}')
}

/// A decoded `L"..."` or `"..."` value.
pub fn string(value: &str) -> Option<String> {
    let v = value.trim();
    let v = v.strip_prefix('L').unwrap_or(v);
    let q = unquote(v.strip_prefix('"')?)?;
    Some(q.text)
}

/// A hexadecimal handle or id (`0038`, `ffffffff`).
pub fn hex(value: &str) -> Option<u32> {
    u32::from_str_radix(value.trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real argument lists from a Wine 8.0 trace.
    const CREATE_FILE: &str = r#"access=40100080, sharing=00000000, create=5, options=00000060, attrs=00000080, objattr={rootdir=0000,attributes=00000040,sd={},name=L"\\??\\C:\\ProgramData\\AegisTest\\payload.bin"}, filename="/tmp/wintrace-MR0T/home/.wine/dosdevices/c:/ProgramData/AegisTest/payload.bin""#;
    const CREATE_KEY: &str = r#"access=000f003f, options=00000000, objattr={rootdir=0030,attributes=000000c0,sd={},name=L"Software\\AegisEsc\\caf\xe9 \"q\" [x]"}, class=L"""#;

    #[test]
    fn nested_groups_and_strings() {
        let objattr = group(field(CREATE_FILE, "objattr").unwrap()).unwrap();
        assert_eq!(
            string(field(objattr, "name").unwrap()).unwrap(),
            "\\??\\C:\\ProgramData\\AegisTest\\payload.bin"
        );
        assert_eq!(hex(field(objattr, "rootdir").unwrap()), Some(0));
        assert_eq!(
            string(field(CREATE_FILE, "filename").unwrap()).unwrap(),
            "/tmp/wintrace-MR0T/home/.wine/dosdevices/c:/ProgramData/AegisTest/payload.bin"
        );
        assert_eq!(field(CREATE_FILE, "create"), Some("5"));
    }

    #[test]
    fn quotes_commas_and_brackets_inside_strings_do_not_split() {
        let objattr = group(field(CREATE_KEY, "objattr").unwrap()).unwrap();
        assert_eq!(
            string(field(objattr, "name").unwrap()).unwrap(),
            "Software\\AegisEsc\\caf\u{e9} \"q\" [x]"
        );
        assert_eq!(string(field(CREATE_KEY, "class").unwrap()).unwrap(), "");
        let tricky = r#"name=L"a,b}c=d", hkey=0010"#;
        assert_eq!(string(field(tricky, "name").unwrap()).unwrap(), "a,b}c=d");
        assert_eq!(field(tricky, "hkey"), Some("0010"));
    }

    #[test]
    fn reply_fields() {
        let reply = "info=005c, pid=0100, handle=0060";
        assert_eq!(field(reply, "pid").and_then(hex), Some(0x100));
        assert_eq!(field(reply, "missing"), None);
        assert_eq!(field(r#"name=L"unterminated"#, "name"), None);
    }
}
