//! The supervisor's part of a run under Wine: place the launcher, find it for the graceful
//! stop at the timeout, and copy the registry hives out of the writable layer afterwards.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::unistd::Pid;

use super::{RunLayout, SandboxError, SandboxOutcome, WineSandbox};

/// Largest hive copied out (a prefix's system.reg is about 3 MB).
const HIVE_MAX_BYTES: u64 = 256 << 20;

/// Writes the launcher into the guest, owned by guest root, executable.
pub(super) fn place_launcher(layout: &RunLayout, wine: &WineSandbox) -> Result<(), SandboxError> {
    let target = layout
        .root()
        .join(wine.launcher_path.trim_start_matches('/'));
    let io = |step: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| SandboxError::Io { step, path, source }
    };
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(io("mkdir", parent))?;
    }
    fs::write(&target, &wine.launcher_script).map_err(io("write launcher", &target))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
        .map_err(io("chmod", &target))?;
    crate::guest::chown_to_guest_root(&target).map_err(io("chown", &target))
}

/// The launcher's host pid: the child of the sandbox's init whose pid inside is 2 (the
/// monitor's first fork).
pub(super) fn launcher_pid(init: Pid) -> Option<Pid> {
    let children = fs::read_to_string(format!("/proc/{init}/task/{init}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .find(|pid| {
            fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("NSpid:"))
                        .and_then(|v| v.split_whitespace().last().map(str::to_string))
                })
                .as_deref()
                == Some("2")
        })
        .map(Pid::from_raw)
}

/// Copies the hives wineserver saved in the writable layer to `<run_dir>/wine/hives/`, and the
/// image's own for those the run did not change (`outcome.wine_hives` names the changed ones).
/// Links and non-regular files are refused: the writable layer is the sample's to shape.
pub(super) fn copy_hives(
    layout: &RunLayout,
    rootfs: &Path,
    wine: &WineSandbox,
    outcome: &mut SandboxOutcome,
) {
    let upper = layout
        .scratch()
        .join("upper")
        .join(wine.prefix.trim_start_matches('/'));
    let dest = layout.wine().join("hives");
    if let Err(e) = fs::create_dir_all(&dest) {
        outcome
            .collection_errors
            .push(format!("mkdir {}: {e}", dest.display()));
        return;
    }
    let lower = rootfs.join(wine.prefix.trim_start_matches('/'));
    for name in &wine.hives {
        let from = upper.join(name);
        // A hive the run did not change is the image's: the directory always holds all three.
        let copied = copy_regular(&from, &dest.join(name)).and_then(|changed| {
            if !changed {
                copy_regular(&lower.join(name), &dest.join(name))?;
            }
            Ok(changed)
        });
        match copied {
            Ok(true) => outcome.wine_hives.push(name.clone()),
            Ok(false) => {}
            Err(e) => outcome
                .collection_errors
                .push(format!("copy hive {}: {e}", from.display())),
        }
    }
}

/// Copies `from` when it is a regular file; `Ok(false)` when it is absent (unchanged).
fn copy_regular(from: &Path, to: &Path) -> std::io::Result<bool> {
    let file = match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(from)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > HIVE_MAX_BYTES {
        return Err(std::io::Error::other(format!(
            "{} bytes, more than the {HIVE_MAX_BYTES} kept",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(HIVE_MAX_BYTES).read_to_end(&mut bytes)?;
    fs::write(to, bytes)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn hive_links_are_refused_and_absent_hives_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        fs::write(&secret, "host file").unwrap();
        symlink(&secret, dir.path().join("user.reg")).unwrap();
        let to = dir.path().join("copy");
        assert!(copy_regular(&dir.path().join("user.reg"), &to).is_err());
        assert!(!to.exists());
        assert!(!copy_regular(&dir.path().join("system.reg"), &to).unwrap());
        fs::write(dir.path().join("userdef.reg"), "WINE REGISTRY").unwrap();
        assert!(copy_regular(&dir.path().join("userdef.reg"), &to).unwrap());
        assert_eq!(fs::read_to_string(&to).unwrap(), "WINE REGISTRY");
    }
}
