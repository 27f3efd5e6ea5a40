//! Shifting a root file system's owners into the host uid range of the sandbox.
//!
//! The sandbox maps guest uids `0..UID_COUNT` to host uids `UID_BASE..UID_BASE+UID_COUNT` in
//! its user namespace, so the files must be owned by the shifted ids on the host. Every entry
//! gets `uid + base` and `gid + base` with `lchown` (a symbolic link is changed itself, never
//! its target).
//!
//! `chown` clears the setuid and setgid bits of non-directories (even for root), so those
//! modes are recorded before and restored after. It also drops file capabilities
//! (`security.capability`); the bookworm image has none. An image that needs them would have
//! to store them again as version 3 capabilities whose root id is `base`.

use std::fs;
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::guest::UID_COUNT;

use super::walk::{self, Entry};
use super::ImageError;

/// Set-user-id and set-group-id bits.
const SETID_BITS: u32 = 0o6000;

/// Adds `base` to the uid and gid of every entry of `root`, `root` included. Refuses a tree
/// with any id outside `0..UID_COUNT`, which also refuses a tree that was already shifted.
pub(super) fn shift(root: &Path, base: u32) -> Result<(), ImageError> {
    let entries = walk::entries(root)?;
    for entry in &entries {
        check_in_guest_range(root, entry)?;
    }
    let mut restored = 0u64;
    for entry in &entries {
        restored += u64::from(shift_entry(root, entry, base)?);
    }
    tracing::debug!(root = %root.display(), base, entries = entries.len(), restored, "ownership shifted");
    Ok(())
}

fn check_in_guest_range(root: &Path, entry: &Entry) -> Result<(), ImageError> {
    let (uid, gid) = (entry.meta.uid(), entry.meta.gid());
    if uid < UID_COUNT && gid < UID_COUNT {
        return Ok(());
    }
    Err(ImageError::Build {
        step: "shift ownership",
        detail: format!(
            "{} is owned by {uid}:{gid}, outside the guest range 0..{UID_COUNT} (already shifted?)",
            root.join(&entry.rel).display()
        ),
    })
}

/// Shifts one entry; returns whether a setuid/setgid mode had to be restored.
fn shift_entry(root: &Path, entry: &Entry, base: u32) -> Result<bool, ImageError> {
    let path = root.join(&entry.rel);
    let uid = entry.meta.uid() + base;
    let gid = entry.meta.gid() + base;
    lchown(&path, Some(uid), Some(gid)).map_err(ImageError::io("lchown", &path))?;
    let mode = entry.meta.mode() & 0o7777;
    if entry.meta.file_type().is_symlink() || mode & SETID_BITS == 0 {
        return Ok(false);
    }
    // Not a symlink (checked above), so set_permissions cannot follow one.
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
        .map_err(ImageError::io("restore mode of", &path))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    const BASE: u32 = crate::guest::UID_BASE;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    fn owner(path: &Path) -> (u32, u32) {
        let meta = fs::symlink_metadata(path).unwrap();
        (meta.uid(), meta.gid())
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn shift_moves_every_owner_and_keeps_setid_bits() {
        if !is_root() {
            eprintln!("SKIPPED shift_moves_every_owner_and_keeps_setid_bits: needs root for chown");
            return;
        }
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("rootfs");
        fs::create_dir_all(root.join("home/deploy")).unwrap();
        fs::create_dir_all(root.join("var/mail")).unwrap();
        lchown(root.join("home/deploy"), Some(1000), Some(1000)).unwrap();
        fs::write(root.join("sudo"), b"\x7fELF").unwrap();
        fs::set_permissions(root.join("sudo"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::write(root.join("crontab"), b"\x7fELF").unwrap();
        lchown(root.join("crontab"), Some(0), Some(107)).unwrap();
        fs::set_permissions(root.join("crontab"), fs::Permissions::from_mode(0o2755)).unwrap();
        fs::set_permissions(root.join("var/mail"), fs::Permissions::from_mode(0o2775)).unwrap();
        // A link out of the tree: its target must stay untouched.
        let outside = scratch.path().join("outside");
        fs::write(&outside, b"host file").unwrap();
        symlink(&outside, root.join("escape")).unwrap();

        shift(&root, BASE).unwrap();

        assert_eq!(owner(&root), (BASE, BASE));
        assert_eq!(owner(&root.join("home/deploy")), (BASE + 1000, BASE + 1000));
        assert_eq!(owner(&root.join("crontab")), (BASE, BASE + 107));
        assert_eq!(owner(&root.join("escape")), (BASE, BASE));
        assert_eq!(owner(&outside), (0, 0));
        assert_eq!(mode(&root.join("sudo")), 0o4755);
        assert_eq!(mode(&root.join("crontab")), 0o2755);
        assert_eq!(mode(&root.join("var/mail")), 0o2775);
    }

    #[test]
    fn shift_refuses_an_already_shifted_tree() {
        if !is_root() {
            eprintln!("SKIPPED shift_refuses_an_already_shifted_tree: needs root for chown");
            return;
        }
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("rootfs");
        fs::create_dir_all(root.join("etc")).unwrap();
        shift(&root, BASE).unwrap();
        let err = shift(&root, BASE).unwrap_err();
        assert!(err.to_string().contains("already shifted"), "{err}");
        assert_eq!(owner(&root.join("etc")), (BASE, BASE));
    }
}
