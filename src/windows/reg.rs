//! Wine's registry text format: the `.reg` hive files of a prefix (`system.reg`, `user.reg`,
//! `userdef.reg`) and the value part of `wineserver -d2` dump lines, which Wine writes with the
//! same code.
//!
//! A hive file: a `WINE REGISTRY Version 2` header, `;; All keys relative to <root>`, `#arch=`,
//! then keys as `[Key\\Path] <unix time>` followed by `#time=`, `#class=` or `#link` lines and
//! values `"name"=<data>` or `@=<data>`. Data forms: `"text"` (REG_SZ), `str(2):"..."`,
//! `str(7):"..."`, `dword:0000002a`, `hex:01,02` (REG_BINARY) and `hex(N):..` (type N, hex);
//! long `hex` lines continue on the next line after a trailing `\`. A key with subkeys but no
//! values is not written, so key existence is derived from the keys and all their ancestors.

use std::collections::{BTreeMap, BTreeSet};

use super::escape::{unescape, unquote};

pub const REG_NONE: u32 = 0;
pub const REG_SZ: u32 = 1;
pub const REG_EXPAND_SZ: u32 = 2;
pub const REG_BINARY: u32 = 3;
pub const REG_DWORD: u32 = 4;
pub const REG_DWORD_BIG_ENDIAN: u32 = 5;
pub const REG_LINK: u32 = 6;
pub const REG_MULTI_SZ: u32 = 7;
pub const REG_QWORD: u32 = 11;

/// Longest rendering of a value's data kept in the report, in characters.
pub const DATA_CHARS_MAX: usize = 4096;

/// One registry value: its type code and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegValue {
    pub ty: u32,
    pub data: ValueData,
}

/// Value data as Wine wrote it: a string form, a dword, or raw bytes (`hex` forms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueData {
    Text(String),
    Dword(u32),
    Bytes(Vec<u8>),
}

/// Parses the data part of a value (what follows `=`), continuation lines already joined.
pub fn parse_data(s: &str) -> Option<RegValue> {
    let s = s.trim_end();
    if let Some(rest) = s.strip_prefix('"') {
        let q = unquote(rest)?;
        return Some(RegValue {
            ty: REG_SZ,
            data: ValueData::Text(q.text),
        });
    }
    if let Some(rest) = s.strip_prefix("str(") {
        let (ty, rest) = rest.split_once("):\"")?;
        let q = unquote(rest)?;
        return Some(RegValue {
            ty: u32::from_str_radix(ty, 16).ok()?,
            data: ValueData::Text(q.text),
        });
    }
    if let Some(hex) = s.strip_prefix("dword:") {
        return Some(RegValue {
            ty: REG_DWORD,
            data: ValueData::Dword(u32::from_str_radix(hex.trim(), 16).ok()?),
        });
    }
    let (ty, bytes) = if let Some(rest) = s.strip_prefix("hex:") {
        (REG_BINARY, rest)
    } else {
        let rest = s.strip_prefix("hex(")?;
        let (ty, bytes) = rest.split_once("):")?;
        (u32::from_str_radix(ty, 16).ok()?, bytes)
    };
    Some(RegValue {
        ty,
        data: ValueData::Bytes(parse_hex_bytes(bytes)?),
    })
}

/// `01,ff,\  0a` (continuations joined or not) → bytes.
fn parse_hex_bytes(s: &str) -> Option<Vec<u8>> {
    s.split(',')
        .map(|b| b.trim().trim_start_matches('\\').trim())
        .filter(|b| !b.is_empty())
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect()
}

/// Splits `"name"=data` or `@=data` into the value name ("" for the default value) and data.
pub fn parse_value_line(line: &str) -> Option<(String, RegValue)> {
    if let Some(data) = line.strip_prefix("@=") {
        return Some((String::new(), parse_data(data)?));
    }
    let q = unquote(line.strip_prefix('"')?)?;
    let data = line[1 + q.consumed..].strip_prefix('=')?;
    Some((q.text, parse_data(data)?))
}

/// The report's name of a type code: `REG_SZ`, `REG_DWORD`, ... or `REG_TYPE_<n>`.
pub fn type_name(ty: u32) -> String {
    let name = match ty {
        REG_NONE => "REG_NONE",
        REG_SZ => "REG_SZ",
        REG_EXPAND_SZ => "REG_EXPAND_SZ",
        REG_BINARY => "REG_BINARY",
        REG_DWORD => "REG_DWORD",
        REG_DWORD_BIG_ENDIAN => "REG_DWORD_BIG_ENDIAN",
        REG_LINK => "REG_LINK",
        REG_MULTI_SZ => "REG_MULTI_SZ",
        8 => "REG_RESOURCE_LIST",
        9 => "REG_FULL_RESOURCE_DESCRIPTOR",
        10 => "REG_RESOURCE_REQUIREMENTS_LIST",
        REG_QWORD => "REG_QWORD",
        other => return format!("REG_TYPE_{other}"),
    };
    name.into()
}

/// The report's rendering of the data: strings as text (REG_MULTI_SZ items one per line),
/// numbers as `0x0000002a (42)`, anything else as space-separated hex bytes. At most
/// [`DATA_CHARS_MAX`] characters, then `...` and the full size.
pub fn render(v: &RegValue) -> String {
    let text = match (&v.data, v.ty) {
        (ValueData::Dword(d), _) => format!("0x{d:08x} ({d})"),
        (ValueData::Text(t), REG_MULTI_SZ) => multi_sz(t),
        (ValueData::Text(t), _) => t.clone(),
        (ValueData::Bytes(b), REG_SZ | REG_EXPAND_SZ | REG_LINK) => utf16(b),
        (ValueData::Bytes(b), REG_MULTI_SZ) => multi_sz(&utf16(b)),
        (ValueData::Bytes(b), REG_DWORD) if b.len() == 4 => {
            let d = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            format!("0x{d:08x} ({d})")
        }
        (ValueData::Bytes(b), REG_DWORD_BIG_ENDIAN) if b.len() == 4 => {
            let d = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            format!("0x{d:08x} ({d})")
        }
        (ValueData::Bytes(b), REG_QWORD) if b.len() == 8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            let q = u64::from_le_bytes(a);
            format!("0x{q:016x} ({q})")
        }
        (ValueData::Bytes(b), _) => hex_bytes(b),
    };
    cap(text)
}

fn cap(text: String) -> String {
    if text.chars().count() <= DATA_CHARS_MAX {
        return text;
    }
    let kept: String = text.chars().take(DATA_CHARS_MAX).collect();
    format!("{kept}... ({} characters)", text.chars().count())
}

fn hex_bytes(b: &[u8]) -> String {
    let shown = b.len().min(DATA_CHARS_MAX / 3 + 1);
    let mut s: Vec<String> = b[..shown].iter().map(|x| format!("{x:02x}")).collect();
    if shown < b.len() {
        s.push(format!("... ({} bytes)", b.len()));
    }
    s.join(" ")
}

fn utf16(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let mut s = String::from_utf16_lossy(&units);
    if s.ends_with('\0') {
        s.pop();
    }
    s
}

fn multi_sz(t: &str) -> String {
    let items: Vec<&str> = t.split('\0').collect();
    let end = items
        .iter()
        .rposition(|i| !i.is_empty())
        .map_or(0, |i| i + 1);
    items[..end].join("\n")
}

/// One key of a hive file: its path as written (relative to the hive's root) and its values.
#[derive(Debug, Clone, Default)]
pub struct HiveKey {
    pub path: String,
    /// Lower-case name -> (name as written, value).
    pub values: BTreeMap<String, (String, RegValue)>,
}

/// A parsed hive file.
#[derive(Debug, Clone, Default)]
pub struct Hive {
    /// `REGISTRY\Machine`, `REGISTRY\User\S-1-5-21-0-0-0-1000`, ... from the header comment.
    pub root: String,
    /// Lower-case relative path -> key.
    pub keys: BTreeMap<String, HiveKey>,
    /// Lines that could not be read (counted, not fatal).
    pub bad_lines: u64,
}

/// Why a hive file was not read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HiveError {
    #[error("not a Wine registry file (no `WINE REGISTRY Version 2` header)")]
    NotWineRegistry,
}

impl Hive {
    /// Parses a hive file's text.
    pub fn parse(text: &str) -> Result<Hive, HiveError> {
        let mut lines = text.lines();
        if lines.next().map(str::trim_end) != Some("WINE REGISTRY Version 2") {
            return Err(HiveError::NotWineRegistry);
        }
        let mut hive = Hive::default();
        let mut current: Option<String> = None;
        let mut pending = String::new();
        for line in lines {
            if !pending.is_empty() {
                pending.push_str(line.trim_start());
                if pending.ends_with('\\') {
                    pending.pop();
                    continue;
                }
                let joined = std::mem::take(&mut pending);
                hive.value_line(current.as_deref(), &joined);
                continue;
            }
            if let Some(root) = line.strip_prefix(";; All keys relative to ") {
                hive.root = unescape(root.trim_end());
            } else if line.starts_with('[') {
                current = hive.key_line(line);
            } else if line.starts_with('"') || line.starts_with('@') {
                if is_continued(line) {
                    pending = line[..line.len() - 1].to_string();
                } else {
                    hive.value_line(current.as_deref(), line);
                }
            }
        }
        Ok(hive)
    }

    fn key_line(&mut self, line: &str) -> Option<String> {
        let Some(path) = key_header(line) else {
            self.bad_lines += 1;
            return None;
        };
        let lower = path.to_lowercase();
        self.keys.entry(lower.clone()).or_insert_with(|| HiveKey {
            path,
            values: BTreeMap::new(),
        });
        Some(lower)
    }

    fn value_line(&mut self, key: Option<&str>, line: &str) {
        let parsed = parse_value_line(line);
        match (key.and_then(|k| self.keys.get_mut(k)), parsed) {
            (Some(k), Some((name, value))) => {
                k.values.insert(name.to_lowercase(), (name, value));
            }
            _ => self.bad_lines += 1,
        }
    }

    /// Every key that exists: the keys written and all their ancestors (lower-case).
    pub fn existing_keys(&self) -> BTreeSet<String> {
        let mut all = BTreeSet::new();
        for k in self.keys.keys() {
            let mut path = k.as_str();
            all.insert(path.to_string());
            while let Some((parent, _)) = path.rsplit_once('\\') {
                all.insert(parent.to_string());
                path = parent;
            }
        }
        all
    }

    /// The value `name` of the key at `path` (relative to the root), if present.
    pub fn value(&self, path: &str, name: &str) -> Option<&RegValue> {
        let key = self.keys.get(&path.to_lowercase())?;
        key.values.get(&name.to_lowercase()).map(|(_, v)| v)
    }
}

/// A value line continues when it is a `hex` form ending in a backslash.
fn is_continued(line: &str) -> bool {
    line.ends_with('\\')
        && line
            .split_once("=hex")
            .is_some_and(|(_, rest)| rest.starts_with(':') || rest.starts_with('('))
}

/// `[Software\\Foo \[x\]] 1796408791` → `Software\Foo [x]`.
fn key_header(line: &str) -> Option<String> {
    let inner = line.strip_prefix('[')?;
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ']' => return Some(unescape(&inner[..i])),
            _ => {}
        }
    }
    None
}

/// What changed between two versions of one hive; key paths relative to the hive's root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HiveDiff {
    pub keys_created: Vec<String>,
    pub keys_deleted: Vec<String>,
    /// (key, value name, value) of values added or changed.
    pub values_set: Vec<(String, String, RegValue)>,
    /// (key, value name, old value) of values removed from keys that still exist.
    pub values_deleted: Vec<(String, String, RegValue)>,
}

/// Compares two versions of a hive. Values of deleted keys are not listed one by one.
pub fn diff(before: &Hive, after: &Hive) -> HiveDiff {
    let had = before.existing_keys();
    let has = after.existing_keys();
    let display = |lower: &str, hive: &Hive| -> String {
        hive.keys
            .get(lower)
            .map_or_else(|| lower.to_string(), |k| k.path.clone())
    };
    let mut d = HiveDiff {
        keys_created: has.difference(&had).map(|k| display(k, after)).collect(),
        keys_deleted: had.difference(&has).map(|k| display(k, before)).collect(),
        ..Default::default()
    };
    for (lower, key) in &after.keys {
        let old = before.keys.get(lower);
        for (lname, (name, value)) in &key.values {
            let previous = old.and_then(|o| o.values.get(lname)).map(|(_, v)| v);
            if previous != Some(value) {
                d.values_set
                    .push((key.path.clone(), name.clone(), value.clone()));
            }
        }
        if let Some(old) = old {
            for (lname, (name, value)) in &old.values {
                if !key.values.contains_key(lname) {
                    d.values_deleted
                        .push((key.path.clone(), name.clone(), value.clone()));
                }
            }
        }
    }
    // A key that lost all its values but kept subkeys is no longer written at all.
    for (lower, key) in &before.keys {
        if has.contains(lower) && !after.keys.contains_key(lower) {
            for (name, value) in key.values.values() {
                d.values_deleted
                    .push((key.path.clone(), name.clone(), value.clone()));
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(path: &str) -> String {
        let full = format!("{}/tests/data/wine/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(full).expect("fixture exists")
    }

    fn hive(path: &str) -> Hive {
        Hive::parse(&data(path)).expect("a Wine hive")
    }

    fn bytes(b: &[u8], ty: u32) -> RegValue {
        RegValue {
            ty,
            data: ValueData::Bytes(b.to_vec()),
        }
    }

    #[test]
    fn every_data_form_parses() {
        let cases: &[(&str, RegValue)] = &[
            (
                r#""a\\b \"q\" \x4e2d""#,
                RegValue {
                    ty: REG_SZ,
                    data: ValueData::Text("a\\b \"q\" \u{4e2d}".into()),
                },
            ),
            (
                r#"str(2):"%TEMP%\\x""#,
                RegValue {
                    ty: REG_EXPAND_SZ,
                    data: ValueData::Text("%TEMP%\\x".into()),
                },
            ),
            (
                r#"str(7):"a\0b\0""#,
                RegValue {
                    ty: REG_MULTI_SZ,
                    data: ValueData::Text("a\0b\0".into()),
                },
            ),
            (
                "dword:0000002a",
                RegValue {
                    ty: REG_DWORD,
                    data: ValueData::Dword(42),
                },
            ),
            ("hex:01,ff", bytes(&[1, 0xff], REG_BINARY)),
            ("hex(2):41,00,00,00", bytes(&[0x41, 0, 0, 0], REG_EXPAND_SZ)),
            (
                "hex(7):61,00,00,00,00,00",
                bytes(&[0x61, 0, 0, 0, 0, 0], REG_MULTI_SZ),
            ),
            (
                "hex(b):88,77,66,55,44,33,22,11",
                bytes(&[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11], REG_QWORD),
            ),
            ("hex(0):", bytes(&[], REG_NONE)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_data(text).as_ref(), Some(want), "{text}");
        }
        assert_eq!(parse_data("dword:zz"), None);
        assert_eq!(parse_data("hex:0g"), None);
        assert_eq!(parse_data(r#""unterminated"#), None);
    }

    #[test]
    fn rendering_for_the_report() {
        let r = |s: &str| render(&parse_data(s).expect("parses"));
        assert_eq!(r("dword:0000002a"), "0x0000002a (42)");
        assert_eq!(r(r#"str(7):"one\0two\0three\0""#), "one\ntwo\nthree");
        assert_eq!(r("hex(2):25,00,41,00,00,00"), "%A");
        assert_eq!(r("hex(7):61,00,00,00,62,00,00,00,00,00"), "a\nb");
        assert_eq!(
            r("hex(b):88,77,66,55,44,33,22,11"),
            "0x1122334455667788 (1234605616436508552)"
        );
        assert_eq!(r("hex:00,07,ff"), "00 07 ff");
        assert_eq!(r("hex(4):2a,00,00,00"), "0x0000002a (42)");
        let long = format!("\"{}\"", "x".repeat(DATA_CHARS_MAX + 1));
        assert!(r(&long).ends_with(&format!("... ({} characters)", DATA_CHARS_MAX + 1)));
        assert_eq!(type_name(REG_QWORD), "REG_QWORD");
        assert_eq!(type_name(0x20), "REG_TYPE_32");
    }

    #[test]
    fn a_real_hive_with_escaped_names_and_continued_hex() {
        let h = hive("escapes-after-user.reg");
        assert_eq!(h.root, "REGISTRY\\User\\S-1-5-21-0-0-0-1000");
        assert_eq!(h.bad_lines, 0);
        let key = "Software\\AegisEsc\\caf\u{e9} \"q\" [x]";
        assert_eq!(
            h.value(key, "Str\\Name"),
            Some(&RegValue {
                ty: REG_SZ,
                data: ValueData::Text("C:\\Path\\with \"quotes\" and caf\u{e9} \u{4e2d}".into()),
            })
        );
        let binary: Vec<u8> = (0..64u32).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(h.value(key, "binary"), Some(&bytes(&binary, REG_BINARY)));
        assert_eq!(
            h.value(key, "").map(render).as_deref(),
            Some("0xdeadbeef (3735928559)")
        );
        assert_eq!(h.value(key, "Empty").map(render).as_deref(), Some(""));
        // The parent key has no values and is not written, but it exists.
        assert!(!h.keys.contains_key("software\\aegisesc"));
        assert!(h.existing_keys().contains("software\\aegisesc"));
    }

    #[test]
    fn truncated_hive_lines_never_panic() {
        let text = data("escapes-after-user.reg");
        for line in text.lines().filter(|l| !l.is_empty()) {
            for (cut, _) in line.char_indices() {
                let hive = format!("WINE REGISTRY Version 2\n[A] 1\n{}\n", &line[..cut]);
                let _ = Hive::parse(&hive).expect("a hive");
                let _ = parse_value_line(&line[..cut]);
            }
        }
    }

    #[test]
    fn not_a_hive_is_an_error() {
        assert_eq!(
            Hive::parse("REGEDIT4\n").unwrap_err(),
            HiveError::NotWineRegistry
        );
    }

    #[test]
    fn diff_of_the_run_key_written_by_a_program() {
        let d = diff(
            &hive("runkey64-before-user.reg"),
            &hive("runkey64-after-user.reg"),
        );
        assert!(d.keys_created.is_empty() && d.keys_deleted.is_empty());
        assert!(d.values_deleted.is_empty());
        let set: Vec<(String, String, String)> = d
            .values_set
            .iter()
            .map(|(k, n, v)| (k.clone(), n.clone(), render(v)))
            .collect();
        let run = "Software\\Microsoft\\Windows\\CurrentVersion\\Run";
        let ours: Vec<_> = set.iter().filter(|(k, _, _)| k == run).collect();
        assert_eq!(
            ours,
            [
                &(run.into(), "AegisCount".into(), "0x0000002a (42)".into()),
                &(
                    run.into(),
                    "AegisUpdater".into(),
                    "C:\\ProgramData\\AegisTest\\updater.exe /quiet \"x\"".into()
                ),
            ]
        );
        // The rest is Wine's own: the hives before were saved by a Wine started as another Unix
        // user, and Wine rewrites the profile paths of the current user at every start.
        let others: BTreeSet<&str> = set
            .iter()
            .filter(|(k, _, _)| k != run)
            .map(|(k, _, _)| k.as_str())
            .collect();
        assert_eq!(
            others,
            BTreeSet::from([
                "Software\\Microsoft\\Windows\\CurrentVersion\\Explorer\\Shell Folders",
                "Volatile Environment"
            ])
        );
    }

    #[test]
    fn diff_of_reg_add_and_reg_delete() {
        let d = diff(
            &hive("regcmd-before-user.reg"),
            &hive("regcmd-after-user.reg"),
        );
        // `reg add` created AegisCmd and AegisCmd\Sub; `reg delete` removed Sub and AegisCmd's
        // only value, so the final state has an empty AegisCmd and a new Run value.
        assert_eq!(d.keys_created, ["Software\\AegisCmd"]);
        assert!(d.keys_deleted.is_empty());
        assert!(d.values_deleted.is_empty());
        assert_eq!(d.values_set.len(), 1);
        assert_eq!(d.values_set[0].1, "AegisCmd");
        assert_eq!(
            render(&d.values_set[0].2),
            "C:\\ProgramData\\AegisTest\\run.bat"
        );
    }

    #[test]
    fn diff_finds_a_service_key_with_its_values() {
        let d = diff(&hive("sc-before-system.reg"), &hive("sc-after-system.reg"));
        assert_eq!(
            d.keys_created,
            ["System\\CurrentControlSet\\Services\\AegisSvc"]
        );
        let image = d
            .values_set
            .iter()
            .find(|(_, n, _)| n == "ImagePath")
            .map(|(_, _, v)| render(v));
        assert_eq!(
            image.as_deref(),
            Some("C:\\ProgramData\\AegisTest\\svc.exe --service")
        );
        assert_eq!(d.values_set.len(), 8);
    }

    #[test]
    fn diff_sees_deleted_keys_and_values() {
        let before = Hive::parse(
            "WINE REGISTRY Version 2\n;; All keys relative to REGISTRY\\\\Machine\n\n\
             [A\\\\B] 1\n\"v\"=\"1\"\n\"w\"=dword:00000001\n\n[A\\\\B\\\\C] 1\n\"x\"=\"y\"\n\n[D] 1\n\"k\"=\"z\"\n",
        )
        .expect("hive");
        let after = Hive::parse(
            "WINE REGISTRY Version 2\n;; All keys relative to REGISTRY\\\\Machine\n\n\
             [A\\\\B] 1\n\"v\"=\"2\"\n\n[E\\\\F] 1\n\"k\"=\"z\"\n",
        )
        .expect("hive");
        let d = diff(&before, &after);
        assert_eq!(d.keys_created, ["e", "E\\F"]);
        assert_eq!(d.keys_deleted, ["A\\B\\C", "D"]);
        assert_eq!(d.values_set.len(), 2);
        assert_eq!(
            (d.values_set[0].0.as_str(), d.values_set[0].1.as_str()),
            ("A\\B", "v")
        );
        assert_eq!(d.values_deleted.len(), 1);
        assert_eq!(d.values_deleted[0].1, "w");
    }
}
