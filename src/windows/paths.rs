//! Names as a Windows analyst reads them: guest Unix paths under the prefix as `C:\...`, and
//! wineserver's registry roots as `HKEY_LOCAL_MACHINE\...`, `HKEY_CURRENT_USER\...`,
//! `HKEY_USERS\...`.

/// The SID Wine gives the (only) local user; `user.reg` holds `REGISTRY\User\<this SID>`.
pub const WINE_USER_SID: &str = "S-1-5-21-0-0-0-1000";

/// Maps a guest Unix path under the prefix to its Windows path.
///
/// `<prefix>/drive_c/x/y` → `C:\x\y`; `<prefix>/dosdevices/d:/x` → `D:\x`. Paths outside the
/// prefix (or through other `dosdevices` entries, such as devices) give `None`.
pub fn windows_path(unix: &str, prefix: &str) -> Option<String> {
    let prefix = prefix.trim_end_matches('/');
    let rest = unix.strip_prefix(prefix)?.strip_prefix('/')?;
    let (drive, tail) = if let Some(tail) = strip_dir(rest, "drive_c") {
        ('C', tail)
    } else {
        let dev = rest.strip_prefix("dosdevices/")?;
        let mut chars = dev.chars();
        let letter = chars.next().filter(char::is_ascii_alphabetic)?;
        let tail = strip_dir(chars.as_str(), ":")?;
        (letter.to_ascii_uppercase(), tail)
    };
    Some(format!("{drive}:\\{}", tail.replace('/', "\\")))
}

/// `name` or `name/...` at the start of `s`: the rest after the slash ("" for `name` alone).
fn strip_dir<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let rest = s.strip_prefix(name)?;
    if rest.is_empty() {
        return Some("");
    }
    rest.strip_prefix('/')
}

/// An NT path from the trace (`\??\C:\ProgramData\x`) as a Windows path (`C:\ProgramData\x`).
pub fn dos_path(nt: &str) -> String {
    nt.strip_prefix("\\??\\")
        .or_else(|| nt.strip_prefix("\\DosDevices\\"))
        .unwrap_or(nt)
        .to_string()
}

/// Maps a wineserver key path (`\Registry\Machine\...` or `REGISTRY\User\<sid>\...`) to the
/// names of the predefined keys. Anything else is returned unchanged.
pub fn hkey_path(path: &str, user_sid: &str) -> String {
    let p = path.strip_prefix('\\').unwrap_or(path);
    let Some((first, rest)) = p.split_once('\\') else {
        return path.to_string();
    };
    if !first.eq_ignore_ascii_case("registry") {
        return path.to_string();
    }
    let (hive, rest) = rest.split_once('\\').unwrap_or((rest, ""));
    if hive.eq_ignore_ascii_case("machine") {
        return join("HKEY_LOCAL_MACHINE", rest);
    }
    if !hive.eq_ignore_ascii_case("user") {
        return path.to_string();
    }
    let (sid, rest) = rest.split_once('\\').unwrap_or((rest, ""));
    if sid.eq_ignore_ascii_case(user_sid) {
        return join("HKEY_CURRENT_USER", rest);
    }
    if sid.is_empty() {
        return "HKEY_USERS".into();
    }
    join(&format!("HKEY_USERS\\{sid}"), rest)
}

fn join(root: &str, rest: &str) -> String {
    if rest.is_empty() {
        root.to_string()
    } else {
        format!("{root}\\{rest}")
    }
}

pub(super) fn strip_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "/home/analyst/.wine";

    #[test]
    fn drive_c_and_dosdevices_map_to_drive_letters() {
        // The Unix path wineserver printed for CreateFile("C:\ProgramData\AegisTest\payload.bin").
        let traced = "/home/analyst/.wine/dosdevices/c:/ProgramData/AegisTest/payload.bin";
        assert_eq!(
            windows_path(traced, PREFIX).as_deref(),
            Some("C:\\ProgramData\\AegisTest\\payload.bin")
        );
        assert_eq!(
            windows_path("/home/analyst/.wine/drive_c/users/analyst/x.txt", PREFIX).as_deref(),
            Some("C:\\users\\analyst\\x.txt")
        );
        assert_eq!(
            windows_path("/home/analyst/.wine/drive_c", "/home/analyst/.wine/").as_deref(),
            Some("C:\\")
        );
        assert_eq!(
            windows_path("/home/analyst/.wine/dosdevices/d:/a", PREFIX).as_deref(),
            Some("D:\\a")
        );
    }

    #[test]
    fn paths_outside_the_prefix_are_not_mapped() {
        assert_eq!(windows_path("/tmp/x", PREFIX), None);
        assert_eq!(
            windows_path("/home/analyst/.winefoo/drive_c/x", PREFIX),
            None
        );
        assert_eq!(windows_path("/home/analyst/.wine/system.reg", PREFIX), None);
        assert_eq!(windows_path("/home/analyst/.wine/drive_cx/y", PREFIX), None);
        assert_eq!(
            windows_path("/home/analyst/.wine/dosdevices/com1", PREFIX),
            None
        );
    }

    #[test]
    fn nt_paths_lose_their_prefix() {
        assert_eq!(dos_path("\\??\\C:\\ProgramData\\x"), "C:\\ProgramData\\x");
        assert_eq!(dos_path("\\Device\\Null"), "\\Device\\Null");
    }

    #[test]
    fn registry_roots_become_predefined_keys() {
        let sid = WINE_USER_SID;
        assert_eq!(
            hkey_path("REGISTRY\\User\\S-1-5-21-0-0-0-1000\\Software\\Run", sid),
            "HKEY_CURRENT_USER\\Software\\Run"
        );
        assert_eq!(
            hkey_path("\\Registry\\Machine\\System\\CurrentControlSet", sid),
            "HKEY_LOCAL_MACHINE\\System\\CurrentControlSet"
        );
        assert_eq!(
            hkey_path("\\REGISTRY\\USER\\.Default\\Control Panel", sid),
            "HKEY_USERS\\.Default\\Control Panel"
        );
        assert_eq!(hkey_path("REGISTRY\\Machine", sid), "HKEY_LOCAL_MACHINE");
        assert_eq!(hkey_path("Software\\X", sid), "Software\\X");
    }
}
