//! How each kind of Windows sample is started under Wine, and the guest's Windows identity.

use crate::sandbox::WineSandbox;

/// The guest image Windows samples run in.
pub const IMAGE: &str = "windows";

/// The computer name (and Linux host name) of the Windows guest: what a company laptop
/// imaged with Windows 10 is called by default.
pub const COMPUTER_NAME: &str = "DESKTOP-4F7QK2M";

/// The Windows user the sample runs as (Wine takes it from `USER`).
pub const USER_NAME: &str = "jmiller";

/// The Wine prefix inside the guest. Wine runs as guest root, which owns it.
pub const PREFIX: &str = "/root/.wine";

/// The user's Downloads folder, where the sample is placed, as Windows sees it.
pub const DOWNLOADS: &str = r"C:\users\jmiller\Downloads";

/// The launcher inside the guest, placed there for each run (not part of the image).
pub const LAUNCHER: &str = "/usr/lib/aegis/wine-launch";

/// The launcher's text.
pub const LAUNCHER_SCRIPT: &str = include_str!("launch.sh");

/// Wine's 64-bit loader; it hands 32-bit programs to the 32-bit loader itself.
pub const LOADER: &str = "/usr/lib/wine/wine64";

/// The wineserver binary the launcher starts.
pub const SERVER: &str = "/usr/lib/wine/wineserver64";

/// The registry hives wineserver saves in the prefix.
pub const HIVES: &[&str] = &["system.reg", "user.reg", "userdef.reg"];

/// How long the launcher gets at the timeout to stop the Windows processes and let
/// wineserver save the registry, before everything left is killed.
pub const STOP_GRACE_S: u64 = 10;

/// Most bytes of wineserver's trace kept for a run (a console program that does little
/// writes about 4 MB, mostly Wine's own start-up).
pub const SERVER_LOG_KEEP_BYTES: u64 = 256 << 20;

/// The supervisor's settings for a run under Wine.
pub fn sandbox() -> WineSandbox {
    WineSandbox {
        launcher_path: LAUNCHER.to_string(),
        launcher_script: LAUNCHER_SCRIPT.to_string(),
        prefix: PREFIX.to_string(),
        hives: HIVES.iter().map(|h| h.to_string()).collect(),
        stop_grace_s: STOP_GRACE_S,
        log_keep_bytes: SERVER_LOG_KEEP_BYTES,
    }
}

/// The Downloads folder inside the guest (a real folder of the prefix).
pub fn downloads_guest_dir() -> String {
    format!("{PREFIX}/drive_c/users/{USER_NAME}/Downloads")
}

/// The environment Wine and the sample get: nothing of the host's, nothing of the launcher's
/// beyond what a Windows session needs. Wine copies every variable into the Windows
/// environment block and adds its own `WINE*` ones (see docs/limits.md).
/// Wine's `fixme:` lines are off, except for the Windows Script Host, whose error handler is
/// one: it is how a script's runtime error shows ([`SCRIPT_ERROR_LINE`]).
pub fn environment(launch: &Launch) -> Vec<String> {
    let debug = match launch {
        Launch::Script => "WINEDEBUG=fixme-all,fixme+wscript",
        _ => "WINEDEBUG=fixme-all",
    };
    [
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "HOME=/root",
        "LANG=C.UTF-8",
        "WINEPREFIX=/root/.wine",
        debug,
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("USER={USER_NAME}"), format!("LOGNAME={USER_NAME}")])
    .collect()
}

/// What Wine 8.0's Windows Script Host prints (as a `fixme`) when a script stops at a runtime
/// error; it reports neither the error nor the line, and cscript still exits with 0.
pub const SCRIPT_ERROR_LINE: &str = ":fixme:wscript:ActiveScriptSite_OnScriptError";

/// How a Windows sample is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// A PE executable; `gui` when its subsystem is the Windows GUI.
    Exe { gui: bool, bits: u8 },
    /// A DLL through rundll32; the export is chosen at launch (the submission's first
    /// argument, else `first_export`).
    Dll {
        bits: u8,
        first_export: Option<String>,
    },
    /// `.bat` / `.cmd` through Wine's cmd.
    Batch,
    /// `.js` / `.vbs` through Wine's Windows Script Host.
    Script,
}

/// The argv the monitor starts: the launcher, then the Windows program and its arguments.
/// `name` is the sample's file name in the Downloads folder.
pub fn command(launch: &Launch, name: &str, arguments: &[String]) -> Result<Vec<String>, String> {
    let path = format!(r"{DOWNLOADS}\{name}");
    let system32 = r"C:\windows\system32";
    let display = match launch {
        Launch::Exe { gui: false, .. } | Launch::Batch => "console",
        _ => "gui",
    };
    let mut argv = vec![
        LAUNCHER.to_string(),
        display.to_string(),
        LOADER.to_string(),
    ];
    let rest: &[String] = match launch {
        Launch::Exe { .. } => {
            argv.push(path);
            arguments
        }
        Launch::Dll { bits, first_export } => {
            let (export, rest) = match (arguments.split_first(), first_export) {
                (Some((export, rest)), _) => (export.clone(), rest),
                (None, Some(first)) => (first.clone(), arguments),
                (None, None) => {
                    return Err("the DLL exports nothing and no export was given in the \
                                submission's arguments, so rundll32 has nothing to call"
                        .into())
                }
            };
            let dir = if *bits == 32 {
                r"C:\windows\syswow64"
            } else {
                system32
            };
            argv.push(format!(r"{dir}\rundll32.exe"));
            argv.push(format!("{path},{export}"));
            rest
        }
        Launch::Batch => {
            argv.extend([format!(r"{system32}\cmd.exe"), "/c".into(), path]);
            arguments
        }
        Launch::Script => {
            argv.extend([format!(r"{system32}\cscript.exe"), "//nologo".into(), path]);
            arguments
        }
    };
    argv.extend(rest.iter().cloned());
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exe_runs_through_the_loader_with_its_windows_path() {
        let argv = command(
            &Launch::Exe {
                gui: false,
                bits: 64,
            },
            "a.exe",
            &args(&["-x"]),
        );
        assert_eq!(
            argv.unwrap(),
            args(&[
                LAUNCHER,
                "console",
                LOADER,
                r"C:\users\jmiller\Downloads\a.exe",
                "-x"
            ])
        );
    }

    #[test]
    fn dll_export_comes_from_the_arguments_or_the_first_export() {
        let dll = Launch::Dll {
            bits: 32,
            first_export: Some("Start".into()),
        };
        let argv = command(&dll, "d.dll", &[]).unwrap();
        assert_eq!(argv[3], r"C:\windows\syswow64\rundll32.exe");
        assert_eq!(argv[4], r"C:\users\jmiller\Downloads\d.dll,Start");
        let argv = command(&dll, "d.dll", &args(&["Other", "p"])).unwrap();
        assert_eq!(
            argv[4..],
            args(&[r"C:\users\jmiller\Downloads\d.dll,Other", "p"])
        );
        let none = Launch::Dll {
            bits: 64,
            first_export: None,
        };
        assert!(command(&none, "d.dll", &[])
            .unwrap_err()
            .contains("exports nothing"));
        let argv = command(&none, "d.dll", &args(&["Run"])).unwrap();
        assert_eq!(argv[3], r"C:\windows\system32\rundll32.exe");
    }

    #[test]
    fn scripts_run_through_cmd_and_cscript() {
        let argv = command(&Launch::Batch, "x.cmd", &[]).unwrap();
        assert_eq!(
            argv[3..],
            args(&[
                r"C:\windows\system32\cmd.exe",
                "/c",
                r"C:\users\jmiller\Downloads\x.cmd"
            ])
        );
        let argv = command(&Launch::Script, "x.vbs", &[]).unwrap();
        assert_eq!(argv[3], r"C:\windows\system32\cscript.exe");
        assert_eq!(argv[1], "gui");
    }

    #[test]
    fn downloads_folder_belongs_to_the_user() {
        assert_eq!(DOWNLOADS, format!(r"C:\users\{USER_NAME}\Downloads"));
        assert!(downloads_guest_dir().ends_with(&format!("users/{USER_NAME}/Downloads")));
    }

    #[test]
    fn environment_names_the_windows_user_and_nothing_of_the_host() {
        let env = environment(&Launch::Batch);
        assert!(env.contains(&"USER=jmiller".to_string()));
        assert!(env.contains(&"WINEDEBUG=fixme-all".to_string()));
        let env = environment(&Launch::Script);
        assert!(env.contains(&"WINEDEBUG=fixme-all,fixme+wscript".to_string()));
        assert!(env.iter().all(|v| !v.starts_with("DISPLAY=")));
        assert!(LAUNCHER_SCRIPT.contains("wineserver64 -f -d2 -p1 "));
    }
}
