//! The image digest: one sha256 over a deterministic description of the whole tree.
//!
//! For each entry, in [`walk::entries`] order, a record of six NUL-terminated fields is
//! hashed: relative path (`.` for the root), type letter, permission bits in octal, uid, gid,
//! and a payload: the sha256 of the content for a regular file, the target for a symbolic
//! link, `major:minor` for a device node, empty otherwise. No field can contain NUL, so the
//! encoding is unambiguous. Timestamps are left out: they change on every copy.

use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use sha2::{Digest, Sha256};

use super::walk::{self, Entry};
use super::ImageError;

/// Content hash of one regular file.
type ContentHash = [u8; 32];

/// The digest and the counts recorded in `image.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Summary {
    /// `sha256:<hex>`.
    pub(super) digest: String,
    /// Entries of every kind, the root excluded.
    pub(super) file_count: u64,
    /// Sum of regular file sizes.
    pub(super) size_bytes: u64,
}

/// Walks `root` and digests it. File contents are hashed on all CPUs.
pub(super) fn compute(root: &Path) -> Result<Summary, ImageError> {
    let entries = walk::entries(root)?;
    let contents = hash_contents(root, &entries)?;
    let mut tree = Sha256::new();
    let mut size_bytes = 0;
    for (entry, content) in entries.iter().zip(&contents) {
        tree.update(record(root, entry, content.as_ref())?);
        if entry.meta.is_file() {
            size_bytes += entry.meta.len();
        }
    }
    Ok(Summary {
        digest: format!("sha256:{}", hex::encode(tree.finalize())),
        file_count: entries.len().saturating_sub(1) as u64,
        size_bytes,
    })
}

/// The bytes hashed for one entry (see the module documentation).
fn record(
    root: &Path,
    entry: &Entry,
    content: Option<&ContentHash>,
) -> Result<Vec<u8>, ImageError> {
    let meta = &entry.meta;
    let rel = entry.rel.as_os_str().as_bytes();
    let mut out = Vec::with_capacity(rel.len() + 120);
    push_field(&mut out, if rel.is_empty() { b"." } else { rel });
    push_field(&mut out, &[type_letter(meta.file_type())]);
    push_field(&mut out, format!("{:o}", meta.mode() & 0o7777).as_bytes());
    push_field(&mut out, meta.uid().to_string().as_bytes());
    push_field(&mut out, meta.gid().to_string().as_bytes());
    let payload = match content {
        Some(hash) => hex::encode(hash).into_bytes(),
        None => payload_without_content(root, entry)?,
    };
    push_field(&mut out, &payload);
    Ok(out)
}

fn payload_without_content(root: &Path, entry: &Entry) -> Result<Vec<u8>, ImageError> {
    let file_type = entry.meta.file_type();
    if file_type.is_symlink() {
        let path = root.join(&entry.rel);
        let target = std::fs::read_link(&path).map_err(ImageError::io("read link", &path))?;
        return Ok(target.into_os_string().into_vec());
    }
    if file_type.is_block_device() || file_type.is_char_device() {
        let rdev = entry.meta.rdev();
        let (major, minor) = (libc::major(rdev), libc::minor(rdev));
        return Ok(format!("{major}:{minor}").into_bytes());
    }
    Ok(Vec::new())
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(field);
    out.push(0);
}

fn type_letter(file_type: std::fs::FileType) -> u8 {
    match () {
        _ if file_type.is_dir() => b'd',
        _ if file_type.is_file() => b'f',
        _ if file_type.is_symlink() => b'l',
        _ if file_type.is_char_device() => b'c',
        _ if file_type.is_block_device() => b'b',
        _ if file_type.is_fifo() => b'p',
        _ if file_type.is_socket() => b's',
        _ => b'?',
    }
}

/// The content hash of every regular file, by entry index; `None` for other entries.
fn hash_contents(root: &Path, entries: &[Entry]) -> Result<Vec<Option<ContentHash>>, ImageError> {
    let files: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].meta.is_file())
        .collect();
    let next = AtomicUsize::new(0);
    let workers = thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let results: Vec<_> = thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| scope.spawn(|| hash_worker(root, entries, &files, &next)))
            .collect();
        handles.into_iter().map(|handle| handle.join()).collect()
    });
    let mut out = vec![None; entries.len()];
    for result in results {
        let hashed = result.map_err(|_| ImageError::Build {
            step: "digest",
            detail: "a hashing thread panicked".into(),
        })??;
        for (index, hash) in hashed {
            out[index] = Some(hash);
        }
    }
    Ok(out)
}

/// Takes file indices from the shared counter until none are left.
fn hash_worker(
    root: &Path,
    entries: &[Entry],
    files: &[usize],
    next: &AtomicUsize,
) -> Result<Vec<(usize, ContentHash)>, ImageError> {
    let mut done = Vec::new();
    while let Some(&index) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
        let path = root.join(&entries[index].rel);
        done.push((index, hash_file(&path)?));
    }
    Ok(done)
}

fn hash_file(path: &Path) -> Result<ContentHash, ImageError> {
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(ImageError::io("open", path))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(ImageError::io("read", path))?;
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    /// dir/, dir/file ("hello"), dir/script (0755), link -> dir/file, empty/
    fn small_tree(scratch: &tempfile::TempDir) -> std::path::PathBuf {
        let root = scratch.path().join("root");
        fs::create_dir_all(root.join("dir")).unwrap();
        fs::create_dir_all(root.join("empty")).unwrap();
        fs::write(root.join("dir/file"), b"hello").unwrap();
        fs::write(root.join("dir/script"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(root.join("dir/script"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(root.join("dir/file"), fs::Permissions::from_mode(0o644)).unwrap();
        symlink("dir/file", root.join("link")).unwrap();
        root
    }

    #[test]
    fn digest_is_stable_and_counts_entries_and_bytes() {
        let scratch = tempfile::tempdir().unwrap();
        let root = small_tree(&scratch);
        let first = compute(&root).unwrap();
        assert_eq!(compute(&root).unwrap(), first);
        assert!(first.digest.starts_with("sha256:"));
        assert_eq!(first.digest.len(), "sha256:".len() + 64);
        assert_eq!(first.file_count, 5);
        assert_eq!(first.size_bytes, 5 + 10);
    }

    #[test]
    fn digest_ignores_timestamps() {
        let scratch = tempfile::tempdir().unwrap();
        let root = small_tree(&scratch);
        let before = compute(&root).unwrap();
        let file = File::options()
            .write(true)
            .open(root.join("dir/file"))
            .unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(compute(&root).unwrap(), before);
    }

    #[test]
    fn digest_changes_when_one_byte_changes() {
        let scratch = tempfile::tempdir().unwrap();
        let root = small_tree(&scratch);
        let before = compute(&root).unwrap();
        fs::write(root.join("dir/file"), b"hellp").unwrap();
        assert_ne!(compute(&root).unwrap().digest, before.digest);
    }

    #[test]
    fn digest_changes_when_a_mode_changes() {
        let scratch = tempfile::tempdir().unwrap();
        let root = small_tree(&scratch);
        let before = compute(&root).unwrap();
        fs::set_permissions(root.join("dir/file"), fs::Permissions::from_mode(0o600)).unwrap();
        assert_ne!(compute(&root).unwrap().digest, before.digest);
    }

    #[test]
    fn digest_changes_when_a_symlink_target_changes() {
        let scratch = tempfile::tempdir().unwrap();
        let root = small_tree(&scratch);
        let before = compute(&root).unwrap();
        fs::remove_file(root.join("link")).unwrap();
        symlink("dir/script", root.join("link")).unwrap();
        assert_ne!(compute(&root).unwrap().digest, before.digest);
    }

    #[test]
    fn digest_changes_when_a_file_is_renamed() {
        let scratch = tempfile::tempdir().unwrap();
        let root = small_tree(&scratch);
        let before = compute(&root).unwrap();
        fs::rename(root.join("dir/script"), root.join("dir/script2")).unwrap();
        assert_ne!(compute(&root).unwrap().digest, before.digest);
    }

    #[test]
    fn digest_does_not_follow_symlinks_out_of_the_tree() {
        let scratch = tempfile::tempdir().unwrap();
        let root = small_tree(&scratch);
        let outside = scratch.path().join("outside");
        fs::write(&outside, b"one").unwrap();
        symlink(&outside, root.join("escape")).unwrap();
        let before = compute(&root).unwrap();
        fs::write(&outside, b"two").unwrap();
        assert_eq!(compute(&root).unwrap(), before);
    }

    #[test]
    fn records_are_nul_separated_fields() {
        let scratch = tempfile::tempdir().unwrap();
        let root = small_tree(&scratch);
        let entries = walk::entries(&root).unwrap();
        let link = entries.iter().find(|e| e.rel == Path::new("link")).unwrap();
        let uid = link.meta.uid();
        let gid = link.meta.gid();
        let expected = format!("link\0l\0777\0{uid}\0{gid}\0dir/file\0");
        assert_eq!(record(&root, link, None).unwrap(), expected.as_bytes());
    }
}
