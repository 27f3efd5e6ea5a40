//! After the run: what the sample left in the container's writable layer, from the engine's
//! list of changes against the image and the files' content read back through the engine.

use std::fs;
use std::path::{Path, PathBuf};

use bollard::container::DownloadFromContainerOptions;
use bollard::models::{ChangeType, FilesystemChange};
use bollard::Docker;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::archive;
use crate::monitor::container::{AEGIS_DIR, FRESH_DIRS};
use crate::sandbox::collect::MAX_ENTRIES;
use crate::sandbox::{CollectedFile, FileState, SandboxOutcome};

/// What the comparison needs.
pub struct LayerSettings<'a> {
    /// The guest image's root file system on this host (to tell unchanged copies).
    pub rootfs: &'a Path,
    pub artifact_max_bytes: u64,
    pub disk_bytes: u64,
    pub sample_guest_path: &'a str,
    pub sample: &'a [u8],
    pub dropped_dir: PathBuf,
}

/// Paths the backend itself made or mounted: not the sample's doing.
fn ours(path: &str) -> bool {
    let under = |dir: &str| path == dir || path.starts_with(&format!("{dir}/"));
    under(AEGIS_DIR) || FRESH_DIRS.iter().any(|d| under(d))
}

/// The changed entries worth a look, in path order.
pub fn relevant(changes: Vec<FilesystemChange>) -> Vec<FilesystemChange> {
    let mut list: Vec<_> = changes.into_iter().filter(|c| !ours(&c.path)).collect();
    list.sort_by(|a, b| a.path.cmp(&b.path));
    list
}

/// Adds the writable layer's files to the outcome.
pub async fn collect(
    docker: &Docker,
    container: &str,
    settings: &LayerSettings<'_>,
    outcome: &mut SandboxOutcome,
) {
    let changes = match docker.container_changes(container).await {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => {
            outcome
                .collection_errors
                .push(format!("list the writable layer's changes: {e}"));
            return;
        }
    };
    tracing::debug!(container, changes = changes.len(), "changes listed");
    for change in relevant(changes) {
        if outcome.files.len() >= MAX_ENTRIES {
            outcome.files_dropped += 1;
            continue;
        }
        let in_image = fs::symlink_metadata(image_path(settings.rootfs, &change.path)).is_ok();
        if change.kind == ChangeType::_2 {
            outcome.files.push(file(
                change.path,
                FileState::Deleted,
                None,
                None,
                None,
                None,
            ));
            continue;
        }
        if in_image && change.kind == ChangeType::_0 && image_is_dir(settings.rootfs, &change.path)
        {
            continue; // a directory of the image whose content changed: its files are listed
        }
        tracing::debug!(container, path = change.path, "reading a changed file");
        match read_entry(docker, container, &change.path, settings).await {
            Ok(Some(entry)) => {
                if let Some(f) = judge(entry, change.path, in_image, settings, outcome) {
                    outcome.files.push(f);
                }
            }
            Ok(None) => {}
            Err(e) => outcome
                .collection_errors
                .push(format!("read {}: {e}", change.path)),
        }
    }
}

fn image_is_dir(rootfs: &Path, guest: &str) -> bool {
    // Never follow a link of the image: absolute links resolve into the host's files.
    fs::symlink_metadata(image_path(rootfs, guest)).is_ok_and(|m| m.is_dir())
}

fn image_path(rootfs: &Path, guest: &str) -> PathBuf {
    rootfs.join(guest.trim_start_matches('/'))
}

/// The first tar entry of `path` (the path itself); a directory's content is not read.
async fn read_entry(
    docker: &Docker,
    container: &str,
    path: &str,
    settings: &LayerSettings<'_>,
) -> Result<Option<archive::TarFile>, String> {
    let options = DownloadFromContainerOptions {
        path: path.to_string(),
    };
    let mut stream = docker.download_from_container(container, Some(options));
    let keep = settings.artifact_max_bytes.max(settings.disk_bytes);
    // Only the first entry matters, and its header says how much content follows: the
    // stream is read until that entry is whole, never a directory's whole tree or a huge
    // sparse file.
    let mut buf: Vec<u8> = Vec::new();
    let mut needed: Option<usize> = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        buf.extend_from_slice(&chunk);
        if needed.is_none() {
            needed = first_entry_len(&buf, keep)?;
        }
        if needed.is_some_and(|n| buf.len() >= n) {
            break;
        }
    }
    drop(stream);
    if buf.len() < 512 {
        return Ok(None);
    }
    // Only what the first entry spans, then two zero blocks: a complete tar of one entry.
    let n = needed.unwrap_or(buf.len()).min(buf.len());
    buf.truncate(n);
    buf.extend_from_slice(&[0u8; 1024]);
    let mut files = archive::entries(buf.as_slice(), keep).map_err(|e| e.to_string())?;
    Ok((!files.is_empty()).then(|| files.remove(0)))
}

/// How many bytes the first entry takes (extension headers for long names included): its
/// header, and its content when it will be read. `None` while `buf` is too short to tell.
fn first_entry_len(buf: &[u8], keep: u64) -> Result<Option<usize>, String> {
    let mut offset = 0usize;
    loop {
        let Some(block) = buf.get(offset..offset + 512) else {
            return Ok(None);
        };
        let mut header = [0u8; 512];
        header.copy_from_slice(block);
        let h = tar::Header::from_byte_slice(&header);
        let size = h.entry_size().map_err(|e| e.to_string())?;
        let padded = usize::try_from(size.div_ceil(512) * 512).map_err(|e| e.to_string())?;
        let kind = h.entry_type();
        let extension = kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink();
        if extension {
            offset = offset.saturating_add(512).saturating_add(padded);
            continue;
        }
        if !kind.is_file() || size > keep {
            return Ok(Some(offset + 512));
        }
        return Ok(Some(offset + 512 + padded));
    }
}

fn judge(
    entry: archive::TarFile,
    path: String,
    in_image: bool,
    settings: &LayerSettings<'_>,
    outcome: &mut SandboxOutcome,
) -> Option<CollectedFile> {
    let state = if in_image {
        FileState::Modified
    } else {
        FileState::Created
    };
    if entry.kind.is_dir() {
        return None;
    }
    if entry.kind.is_symlink() {
        let note = format!("symbolic link to {}", entry.link.unwrap_or_default());
        return Some(file(path, state, None, None, None, Some(note)));
    }
    if !entry.kind.is_file() {
        return Some(file(
            path,
            state,
            None,
            None,
            None,
            Some("special file".into()),
        ));
    }
    let Some(bytes) = entry.content else {
        let note = if entry.size > settings.disk_bytes {
            crate::monitor::files::sparse_note(entry.size)
        } else {
            format!(
                "content not kept: over the {}-byte cap",
                settings.artifact_max_bytes
            )
        };
        return Some(file(path, state, Some(entry.size), None, None, Some(note)));
    };
    if path == settings.sample_guest_path && bytes == settings.sample {
        return None; // the sample as we placed it
    }
    let sha = hex::encode(Sha256::digest(&bytes));
    if in_image && same_as_image(&image_path(settings.rootfs, &path), &sha, bytes.len()) {
        return None; // opened for writing, copied up, but not changed
    }
    let (artifact, note) = if bytes.len() as u64 <= settings.artifact_max_bytes {
        match store(&settings.dropped_dir, &sha, &bytes) {
            Ok(a) => (Some(a), None),
            Err(e) => {
                outcome.collection_errors.push(e);
                (None, None)
            }
        }
    } else {
        let cap = settings.artifact_max_bytes;
        (
            None,
            Some(format!("content not kept: over the {cap}-byte cap")),
        )
    };
    Some(file(
        path,
        state,
        Some(bytes.len() as u64),
        Some(sha),
        artifact,
        note,
    ))
}

fn same_as_image(original: &Path, sha: &str, len: usize) -> bool {
    // Never follow a link of the image: absolute links resolve into the host's files.
    match fs::symlink_metadata(original) {
        Ok(m) if m.is_file() && m.len() == len as u64 => {
            fs::read(original).is_ok_and(|b| hex::encode(Sha256::digest(&b)) == sha)
        }
        _ => false,
    }
}

fn store(dir: &Path, sha: &str, bytes: &[u8]) -> Result<String, String> {
    let path = dir.join(sha);
    if !path.exists() {
        fs::write(&path, bytes).map_err(|e| format!("store artifact {sha}: {e}"))?;
    }
    Ok(format!("dropped/{sha}"))
}

fn file(
    path: String,
    state: FileState,
    size: Option<u64>,
    sha256: Option<String>,
    artifact: Option<String>,
    note: Option<String>,
) -> CollectedFile {
    CollectedFile {
        path,
        state,
        size,
        sha256,
        artifact,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, kind: ChangeType) -> FilesystemChange {
        FilesystemChange {
            path: path.into(),
            kind,
        }
    }

    #[test]
    fn the_backends_own_paths_are_left_out_and_the_rest_sorted() {
        let list = relevant(vec![
            change("/root/b", ChangeType::_1),
            change("/.aegis", ChangeType::_1),
            change("/.aegis/out/events.jsonl", ChangeType::_1),
            change("/tmp", ChangeType::_0),
            change("/tmpfile", ChangeType::_1),
            change("/etc/crontab", ChangeType::_0),
            change("/run/x", ChangeType::_1),
        ]);
        let paths: Vec<&str> = list.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, vec!["/etc/crontab", "/root/b", "/tmpfile"]);
    }

    #[test]
    fn a_large_first_entry_is_described_from_its_header_alone() {
        let mut h = tar::Header::new_gnu();
        h.set_size(1 << 40);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        assert_eq!(first_entry_len(h.as_bytes(), 1 << 20).unwrap(), Some(512));
        h.set_size(10);
        h.set_cksum();
        assert_eq!(first_entry_len(h.as_bytes(), 1 << 20).unwrap(), Some(1024));
        assert_eq!(
            first_entry_len(&h.as_bytes()[..100], 1 << 20).unwrap(),
            None
        );
    }
}
