//! Where a build happens before it becomes visible, and how images are swapped and deleted.
//!
//! A build writes into `images/.build-<name>-<pid>` and is renamed to `images/<name>` only
//! when complete. A replaced or removed image is first renamed to `images/.old-<name>-<pid>`,
//! then deleted. Both kinds of directory left behind by a process that died are "stale" and
//! removed at the start of the next build.

use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::ImageError;

const BUILD_PREFIX: &str = ".build-";
const OLD_PREFIX: &str = ".old-";
const LOCK_PREFIX: &str = ".lock-";

/// Takes the exclusive lock of one image, creating the images directory if needed. The lock
/// is released when the returned file is dropped (or the process dies).
pub(super) fn lock(images: &Path, name: &str) -> Result<File, ImageError> {
    fs::create_dir_all(images).map_err(ImageError::io("create", images))?;
    let path = images.join(format!("{LOCK_PREFIX}{name}"));
    let file = File::create(&path).map_err(ImageError::io("create", &path))?;
    file.lock().map_err(ImageError::io("lock", &path))?;
    Ok(file)
}

/// A build directory that is deleted on drop unless it was committed.
#[derive(Debug)]
pub(super) struct BuildDir {
    path: PathBuf,
    committed: bool,
}

impl BuildDir {
    /// Creates `images/.build-<name>-<our pid>`, mode 0755.
    pub(super) fn create(images: &Path, name: &str) -> Result<BuildDir, ImageError> {
        let path = images.join(format!("{BUILD_PREFIX}{name}-{}", std::process::id()));
        if path.exists() {
            // Our own pid: a build of ours that failed without cleaning up.
            remove_tree(&path)?;
        }
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .map_err(ImageError::io("create", &path))?;
        set_mode(&path, 0o755)?;
        Ok(BuildDir {
            path,
            committed: false,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the finished build to `images/<name>`, replacing (then deleting) what was there.
    /// The image is missing only between two renames, and a reader then sees "not built".
    pub(super) fn commit(mut self, images: &Path, name: &str) -> Result<(), ImageError> {
        let target = images.join(name);
        let old = images.join(format!("{OLD_PREFIX}{name}-{}", std::process::id()));
        let had_old = rename_if_exists(&target, &old)?;
        if let Err(err) = fs::rename(&self.path, &target) {
            if had_old {
                let _ = fs::rename(&old, &target); // put the previous image back
            }
            return Err(ImageError::io("rename into place", &self.path)(err));
        }
        self.committed = true;
        // The new image is in place: failing to delete the old one is not a failed build.
        if had_old {
            if let Err(err) = remove_tree(&old) {
                tracing::warn!(path = %old.display(), error = %err, "cannot remove replaced image");
            }
        }
        Ok(())
    }
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Err(err) = remove_tree(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %err, "cannot remove failed build");
        }
    }
}

/// Renames the image at `image` away, then deletes it.
pub(super) fn retire(images: &Path, image: &Path, name: &str) -> Result<(), ImageError> {
    let old = images.join(format!("{OLD_PREFIX}{name}-{}", std::process::id()));
    fs::rename(image, &old).map_err(ImageError::io("rename away", image))?;
    remove_tree(&old)
}

/// Deletes `.build-*` and `.old-*` directories whose owning process is gone.
pub(super) fn remove_stale(
    images: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ImageError> {
    let entries = fs::read_dir(images).map_err(ImageError::io("list", images))?;
    for entry in entries {
        let entry = entry.map_err(ImageError::io("list", images))?;
        let Some(pid) = entry.file_name().to_str().and_then(stale_pid) else {
            continue;
        };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let path = entry.path();
        progress(&format!(
            "removing stale build directory {}",
            path.display()
        ));
        tracing::info!(path = %path.display(), pid, "removing stale image build directory");
        remove_tree(&path)?;
    }
    Ok(())
}

/// The pid in `.build-<name>-<pid>` or `.old-<name>-<pid>`, else `None`.
fn stale_pid(file_name: &str) -> Option<u32> {
    let rest = file_name
        .strip_prefix(BUILD_PREFIX)
        .or_else(|| file_name.strip_prefix(OLD_PREFIX))?;
    let (_name, pid) = rest.rsplit_once('-')?;
    pid.parse().ok()
}

/// Whether a process with this pid exists (EPERM means it does, but is not ours to signal).
fn process_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    !matches!(kill(Pid::from_raw(raw), None), Err(Errno::ESRCH))
}

/// Renames `from` to `to`; `false` when `from` did not exist.
fn rename_if_exists(from: &Path, to: &Path) -> Result<bool, ImageError> {
    match fs::rename(from, to) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(ImageError::io("rename away", from)(err)),
    }
}

/// Deletes a directory tree, refusing if anything is mounted below it: a build killed by an
/// older version could have left mmdebstrap's bind mounts of `/dev` entries, and deleting
/// through those would delete host files.
pub(super) fn remove_tree(path: &Path) -> Result<(), ImageError> {
    let mounts = mounts_under(path)?;
    if let Some(first) = mounts.first() {
        return Err(ImageError::Mounted {
            path: path.to_path_buf(),
            count: mounts.len(),
            first: first.clone(),
        });
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(ImageError::io("remove", path)(err)),
    }
}

/// Mount points of this process's mount namespace at or below `path`.
fn mounts_under(path: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let Ok(real) = fs::canonicalize(path) else {
        return Ok(Vec::new()); // gone already: nothing can be mounted there
    };
    let table = "/proc/self/mountinfo";
    let text = fs::read_to_string(table).map_err(ImageError::io("read", Path::new(table)))?;
    Ok(mount_points(&text)
        .into_iter()
        .filter(|point| point.starts_with(&real))
        .collect())
}

/// The mount point column (the fifth) of each mountinfo line, octal escapes decoded.
fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_octal(field)))
        .collect()
}

/// Decodes the `\ooo` escapes the kernel uses for space, tab, newline and backslash.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = bytes.get(i + 1..i + 4).and_then(|digits| {
            let digits = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(digits, 8).ok()
        });
        match (bytes[i], code) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ImageError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(ImageError::io("chmod", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_pid_is_read_from_build_and_old_dirs() {
        assert_eq!(stale_pid(".build-linux-1234"), Some(1234));
        assert_eq!(stale_pid(".old-linux-99"), Some(99));
        assert_eq!(stale_pid(".build-linux-"), None);
        assert_eq!(stale_pid(".lock-linux"), None);
        assert_eq!(stale_pid("linux"), None);
        assert_eq!(stale_pid(".build-linux-12x"), None);
    }

    #[test]
    fn mount_points_are_unescaped() {
        let text =
            "36 35 98:0 /mnt1 /mnt\\040with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 0:5 / /proc rw - proc proc rw\n";
        assert_eq!(
            mount_points(text),
            vec![PathBuf::from("/mnt with space"), PathBuf::from("/proc")]
        );
    }

    #[test]
    fn stale_dirs_of_dead_processes_are_removed_and_live_ones_kept() {
        let scratch = tempfile::tempdir().unwrap();
        // pid_max is at most 2^22, so this pid cannot exist.
        let dead = scratch.path().join(".build-linux-99999999");
        let old = scratch.path().join(".old-linux-99999999");
        let ours = scratch
            .path()
            .join(format!(".build-linux-{}", std::process::id()));
        let live = scratch.path().join(".build-linux-1"); // init is always alive
        for dir in [&dead, &old, &ours, &live] {
            fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
        }
        remove_stale(scratch.path(), &mut |_| {}).unwrap();
        assert!(!dead.exists() && !old.exists());
        assert!(ours.exists() && live.exists());
    }

    #[test]
    fn commit_replaces_an_existing_image() {
        let scratch = tempfile::tempdir().unwrap();
        let target = scratch.path().join("linux");
        fs::create_dir_all(target.join("rootfs")).unwrap();
        fs::write(target.join("marker"), b"old").unwrap();
        let build = BuildDir::create(scratch.path(), "linux").unwrap();
        fs::write(build.path().join("marker"), b"new").unwrap();
        build.commit(scratch.path(), "linux").unwrap();
        assert_eq!(fs::read(target.join("marker")).unwrap(), b"new");
        assert_eq!(fs::read_dir(scratch.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_uncommitted_build_is_removed_on_drop() {
        let scratch = tempfile::tempdir().unwrap();
        let build = BuildDir::create(scratch.path(), "linux").unwrap();
        let path = build.path().to_path_buf();
        fs::write(path.join("half"), b"x").unwrap();
        drop(build);
        assert!(!path.exists());
    }
}
