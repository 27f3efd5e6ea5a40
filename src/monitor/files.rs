//! Hashing files the sample is about to delete or has executed, and keeping dropped-file
//! artifacts, from inside the sandbox.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use sha2::{Digest, Sha256};

use super::syscalls::DeletedFile;

/// Reads a regular file without following a final symlink and without blocking on a FIFO.
fn open_regular(path: &str) -> Option<(std::fs::File, u64)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    meta.is_file().then_some((file, meta.len()))
}

/// Hash and (when small enough) content of a file.
pub struct Content {
    pub size: u64,
    pub sha256: String,
    pub bytes: Option<Vec<u8>>,
}

/// Reads a file whole when it is at most `keep_max` bytes, otherwise only hashes it.
pub fn read_content(mut file: impl Read, size: u64, keep_max: u64) -> std::io::Result<Content> {
    let mut hasher = Sha256::new();
    let mut kept = (size <= keep_max).then(|| Vec::with_capacity(size as usize));
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
        if let Some(k) = kept.as_mut() {
            if total <= keep_max {
                k.extend_from_slice(&buf[..n]);
            } else {
                kept = None;
            }
        }
    }
    Ok(Content {
        size: total,
        sha256: hex::encode(hasher.finalize()),
        bytes: kept,
    })
}

/// Stores an artifact named after its sha256 in `dir`; returns the name.
pub fn store_artifact(dir: &OwnedFd, sha256: &str, bytes: &[u8]) -> Option<String> {
    let name = format!("dropped/{sha256}");
    let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
    let mode = Mode::from_bits_truncate(0o600);
    match nix::fcntl::openat(Some(dir.as_raw_fd()), sha256, flags, mode) {
        Ok(fd) => {
            // SAFETY: `fd` was just returned by openat and is owned by nothing else.
            let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            std::io::Write::write_all(&mut file, bytes).ok()?;
            Some(name)
        }
        Err(nix::Error::EEXIST) => Some(name),
        Err(_) => None,
    }
}

/// Captures a file before its deletion: hash always, content when under the cap.
pub fn capture_deleted(
    path: &str,
    artifacts: &OwnedFd,
    keep_max: u64,
    hash_max: u64,
) -> DeletedFile {
    let mut out = DeletedFile {
        path: path.to_string(),
        size: None,
        sha256: None,
        artifact: None,
        note: None,
    };
    let Some((file, size)) = open_regular(path) else {
        out.note = Some("not a regular file, or unreadable".into());
        return out;
    };
    if size > hash_max {
        out.size = Some(size);
        out.note = Some(sparse_note(size));
        return out;
    }
    match read_content(file, size, keep_max) {
        Ok(c) => {
            out.size = Some(c.size);
            match &c.bytes {
                Some(bytes) => out.artifact = store_artifact(artifacts, &c.sha256, bytes),
                None => out.note = Some(format!("content not kept: over the {keep_max}-byte cap")),
            }
            out.sha256 = Some(c.sha256);
        }
        Err(e) => out.note = Some(format!("read failed: {e}")),
    }
    out
}

/// Why a file was not hashed: its apparent size is beyond what the disk quota can hold, so
/// it is sparse, and reading it would stall the monitor on zeros.
pub fn sparse_note(size: u64) -> String {
    format!("not hashed: apparent size {size} bytes exceeds the disk quota (a sparse file)")
}

/// sha256 of executed images, cached by identity so a shell run 500 times is hashed once.
pub struct ImageHashes {
    cache: HashMap<(u64, u64, u64, i64), String>,
    hash_max: u64,
}

impl ImageHashes {
    pub fn new(hash_max: u64) -> Self {
        ImageHashes {
            cache: HashMap::new(),
            hash_max,
        }
    }

    /// Hash of the executable of `pid` (through `/proc/<pid>/exe`, so deleted and memfd
    /// images work too).
    pub fn of_process(&mut self, pid: i32) -> Option<String> {
        let path = format!("/proc/{pid}/exe");
        let meta = std::fs::metadata(&path).ok()?;
        let key = (
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime_nsec() + meta.mtime(),
        );
        if let Some(h) = self.cache.get(&key) {
            return Some(h.clone());
        }
        if meta.len() > self.hash_max {
            return None;
        }
        let file = std::fs::File::open(&path).ok()?;
        let content = read_content(file, meta.len(), 0).ok()?;
        self.cache.insert(key, content.sha256.clone());
        Some(content.sha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_kept_only_under_the_cap() {
        let data = vec![7u8; 1000];
        let c = read_content(&data[..], 1000, 1000).unwrap();
        assert_eq!(c.size, 1000);
        assert_eq!(c.bytes.as_deref(), Some(&data[..]));
        let c = read_content(&data[..], 1000, 999).unwrap();
        assert!(c.bytes.is_none());
        assert_eq!(c.sha256, hex::encode(Sha256::digest(&data)));
    }
}
