//! Preparing and hardening the Windows prefix of the `windows` image, once, at build time.
//!
//! `wineboot --init` runs in the new root file system through `chroot`, inside
//! `unshare --mount --pid --fork --kill-child --uts --ipc --net`: its `/proc` and `/tmp`
//! mounts vanish with the namespace, it sees no network, the computer name it records is the
//! guest's, and a killed build kills every Wine process with it. Only Debian's own Wine runs
//! here, never a sample. The prefix belongs to guest root, which runs Wine in the sandbox;
//! it is never touched on the host side afterwards, and never copied per analysis.
//!
//! Hardening (Wine is not a sandbox: a default prefix maps the whole outer file system):
//! - every drive mapping but `c:` is removed from `dosdevices` (`z:` is `/`);
//! - the user folders Wine links to `$HOME` become real folders of the prefix;
//! - winemenubuilder is disabled (DllOverride and its RunServices entry), crash dialogs off,
//!   mscoree and mshtml disabled so no Mono or Gecko install prompt appears;
//! - PlugPlay and Eventlog start on demand instead of at boot (half a second less before the
//!   sample's first instruction);
//! - a realistic owner and a few decoy documents.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;

use super::ImageError;
use crate::windows::{COMPUTER_NAME, PREFIX, USER_NAME};

/// Registry settings imported with `regedit /S` after `wineboot --init`. `RelayInclude`
/// narrows `WINEDEBUG=+relay` (set for the sample) to export lookups by name, so that lookups
/// of `wine_get_version` and the other `wine_*` exports show (see `windows::relay`).
const HARDENING_REG: &str = r#"REGEDIT4

[HKEY_CURRENT_USER\Software\Wine\DllOverrides]
"winemenubuilder.exe"=""
"mscoree"=""
"mshtml"=""

[HKEY_CURRENT_USER\Software\Wine\WineDbg]
"ShowCrashDialog"=dword:00000000

[HKEY_CURRENT_USER\Software\Wine\Debug]
"RelayInclude"="kernel32.GetProcAddress;kernelbase.GetProcAddress"

[HKEY_LOCAL_MACHINE\Software\Microsoft\Windows\CurrentVersion\RunServices]
"winemenubuilder"=-

[HKEY_LOCAL_MACHINE\System\CurrentControlSet\Services\PlugPlay]
"Start"=dword:00000003

[HKEY_LOCAL_MACHINE\System\CurrentControlSet\Services\Eventlog]
"Start"=dword:00000003

[HKEY_LOCAL_MACHINE\Software\Microsoft\Windows NT\CurrentVersion]
"RegisteredOwner"="John Miller"
"RegisteredOrganization"="Northwind Traders"
"#;

/// Where the hardening file is put for the import (removed afterwards).
const HARDENING_FILE: &str = "root/aegis-hardening.reg";

/// The user folders Wine makes links to `$HOME` (paths below the profile); each becomes a
/// real folder.
const USER_FOLDERS: &[&str] = &[
    "Desktop",
    "Documents",
    "Downloads",
    "Music",
    "Pictures",
    "Videos",
    "AppData/Roaming/Microsoft/Windows/Templates",
];

/// Decoy documents: (folder below the user's profile, name, content).
const DECOYS: &[(&str, &str, &str)] = &[
    (
        "Documents",
        "Meeting notes 2024-09-12.txt",
        "Weekly sync - sales ops\r\n- Q3 numbers due Friday (Karen)\r\n- New CRM rollout \
         moved to October\r\n- Ask IT about the VPN token for the Berlin office\r\n",
    ),
    (
        "Documents",
        "Expenses Q3.csv",
        "date,description,amount\r\n2024-07-03,Taxi airport,42.50\r\n2024-07-04,Hotel \
         Lyon (2 nights),318.00\r\n2024-08-19,Client lunch,96.20\r\n",
    ),
    (
        "Desktop",
        "VPN setup.txt",
        "Server: vpn.northwind-traders.example\r\nUser: jmiller\r\nUse the token app, \
         not SMS.\r\n",
    ),
];

/// Prepares the prefix in `rootfs` (not yet ownership-shifted) and hardens it.
pub(super) fn prepare(
    unshare: &Path,
    rootfs: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ImageError> {
    let hardening = rootfs.join(HARDENING_FILE);
    fs::write(&hardening, HARDENING_REG).map_err(ImageError::io("write", &hardening))?;
    progress("preparing the Windows prefix (wineboot --init, then the hardening settings)");
    run_wineboot(unshare, rootfs, progress)?;
    fs::remove_file(&hardening).map_err(ImageError::io("remove", &hardening))?;

    let prefix = rootfs.join(PREFIX.trim_start_matches('/'));
    progress("hardening the prefix (drives, user folders, decoys)");
    remove_outer_drives(&prefix)?;
    make_user_folders_real(&prefix)?;
    write_decoys(&prefix)?;
    check_hardened(&prefix)
}

/// The script the namespace's first process (host `sh`) runs: `$1` is the root file system.
const BOOT_SCRIPT: &str = r#"set -e
echo "$2" > /proc/sys/kernel/hostname
mount -t proc proc "$1/proc"
mount -t tmpfs -o mode=1777 tmpfs "$1/tmp"
exec timeout 600 chroot "$1" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root \
  USER="$3" LOGNAME="$3" LANG=C.UTF-8 WINEPREFIX=/root/.wine WINEDEBUG=err+all \
  WINEDLLOVERRIDES="mscoree,mshtml=;winemenubuilder.exe=" \
  /bin/sh -c 'wineboot --init && /usr/lib/wine/wine64 regedit /S "Z:\\root\\aegis-hardening.reg" && wineserver -w'
"#;

fn run_wineboot(
    unshare: &Path,
    rootfs: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ImageError> {
    let mut cmd = Command::new(unshare);
    cmd.args(["--mount", "--propagation", "private"])
        .args(["--pid", "--fork", "--kill-child", "--uts", "--ipc", "--net"])
        .args(["--", "/bin/sh", "-c", BOOT_SCRIPT, "sh"])
        .arg(rootfs)
        .args([COMPUTER_NAME, USER_NAME])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs between fork and exec and makes one async-signal-safe prctl
    // call; a killed build takes the namespace, and every Wine process in it, along.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().map_err(ImageError::io("run", unshare))?;
    let mut tail = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            progress(&format!("wine: {line}"));
            tail.push(line);
        }
    }
    let status = child.wait().map_err(ImageError::io("wait for", unshare))?;
    if status.success() {
        return Ok(());
    }
    let start = tail.len().saturating_sub(15);
    Err(ImageError::Build {
        step: "wineboot",
        detail: format!("{status}; its last output:\n{}", tail[start..].join("\n")),
    })
}

/// `dosdevices` keeps `c:` only.
fn remove_outer_drives(prefix: &Path) -> Result<(), ImageError> {
    let dir = prefix.join("dosdevices");
    for entry in fs::read_dir(&dir).map_err(ImageError::io("list", &dir))? {
        let entry = entry.map_err(ImageError::io("list", &dir))?;
        if entry.file_name() != "c:" {
            let path = entry.path();
            fs::remove_file(&path).map_err(ImageError::io("remove", &path))?;
        }
    }
    let c = dir.join("c:");
    match fs::read_link(&c) {
        Ok(target) if target == Path::new("../drive_c") => Ok(()),
        other => Err(ImageError::Build {
            step: "harden prefix",
            detail: format!("{} should link to ../drive_c, found {other:?}", c.display()),
        }),
    }
}

fn profile(prefix: &Path) -> std::path::PathBuf {
    prefix.join("drive_c/users").join(USER_NAME)
}

/// Links to `$HOME` (or anywhere) become empty real folders.
fn make_user_folders_real(prefix: &Path) -> Result<(), ImageError> {
    for name in USER_FOLDERS {
        let path = profile(prefix).join(name);
        if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            fs::remove_file(&path).map_err(ImageError::io("remove link", &path))?;
        }
        if !path.is_dir() {
            fs::create_dir_all(&path).map_err(ImageError::io("create", &path))?;
        }
    }
    Ok(())
}

fn write_decoys(prefix: &Path) -> Result<(), ImageError> {
    for (folder, name, text) in DECOYS {
        let path = profile(prefix).join(folder).join(name);
        fs::write(&path, text).map_err(ImageError::io("write", &path))?;
    }
    Ok(())
}

/// No link anywhere in the prefix may point outside it (Wine makes more than the ones above
/// when the host has XDG folders; this catches any we did not expect).
fn check_hardened(prefix: &Path) -> Result<(), ImageError> {
    let mut outside = Vec::new();
    let mut stack = vec![prefix.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(ImageError::io("list", &dir))? {
            let entry = entry.map_err(ImageError::io("list", &dir))?;
            let kind = entry
                .file_type()
                .map_err(ImageError::io("stat", &entry.path()))?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_symlink() {
                let target = fs::read_link(entry.path())
                    .map_err(ImageError::io("read link", &entry.path()))?;
                if target.is_absolute() {
                    outside.push(format!(
                        "{} -> {}",
                        entry.path().display(),
                        target.display()
                    ));
                }
            }
        }
    }
    if outside.is_empty() {
        return Ok(());
    }
    Err(ImageError::Build {
        step: "harden prefix",
        detail: format!("links out of the prefix remain: {}", outside.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn drives_other_than_c_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dos = dir.path().join("dosdevices");
        fs::create_dir(&dos).unwrap();
        symlink("../drive_c", dos.join("c:")).unwrap();
        symlink("/", dos.join("z:")).unwrap();
        symlink("/dev/ttyS0", dos.join("com1")).unwrap();
        remove_outer_drives(dir.path()).unwrap();
        let left: Vec<_> = fs::read_dir(&dos)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec!["c:"]);
    }

    #[test]
    fn links_to_home_become_real_folders_and_stray_links_fail_the_build() {
        let dir = tempfile::tempdir().unwrap();
        let profile = profile(dir.path());
        fs::create_dir_all(&profile).unwrap();
        symlink("/root", profile.join("Desktop")).unwrap();
        make_user_folders_real(dir.path()).unwrap();
        assert!(fs::symlink_metadata(profile.join("Desktop"))
            .unwrap()
            .is_dir());
        assert!(profile.join("Videos").is_dir());
        check_hardened(dir.path()).unwrap();
        symlink("/etc", profile.join("Favorites")).unwrap();
        let err = check_hardened(dir.path()).unwrap_err().to_string();
        assert!(err.contains("Favorites -> /etc"), "{err}");
    }

    #[test]
    fn hardening_disables_the_prompts_and_the_crash_dialog() {
        for needle in [
            r#""winemenubuilder.exe"="""#,
            r#""mscoree"="""#,
            r#""mshtml"="""#,
            r#""ShowCrashDialog"=dword:00000000"#,
            r#""RelayInclude"="kernel32.GetProcAddress;kernelbase.GetProcAddress""#,
        ] {
            assert!(HARDENING_REG.contains(needle), "{needle}");
        }
    }
}
