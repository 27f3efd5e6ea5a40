//! Tar streams to and from the engine: the guest image's root file system for import, the
//! files placed in a container before its start, and the monitor's output after its end.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::monitor::container::{AEGIS_DIR, OUT_OWNER, SPEC_PATH};

/// Most bytes of the monitor's output directory accepted back from a container.
pub const OUT_MAX_BYTES: u64 = 4 << 30;

/// The guest image's root file system as a tar, owners shifted back from the native
/// backend's unprivileged range (`uid_base`) to the guest's own ids.
pub fn image_layer(rootfs: &Path, uid_base: u32) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    append_tree(&mut tar, rootfs, Path::new(""), uid_base)?;
    tar.into_inner()
}

fn append_tree(
    tar: &mut tar::Builder<Vec<u8>>,
    root: &Path,
    rel: &Path,
    uid_base: u32,
) -> std::io::Result<()> {
    let dir = root.join(rel);
    let mut entries: Vec<_> = fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let rel = rel.join(entry.file_name());
        let meta = entry.metadata()?;
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        header.set_uid(u64::from(meta.uid().saturating_sub(uid_base)));
        header.set_gid(u64::from(meta.gid().saturating_sub(uid_base)));
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(entry.path())?;
            header.set_size(0);
            header.set_entry_type(tar::EntryType::Symlink);
            tar.append_link(&mut header, &rel, &target)?;
        } else if ft.is_dir() {
            header.set_size(0);
            tar.append_data(&mut header, &rel, std::io::empty())?;
            append_tree(tar, root, &rel, uid_base)?;
        } else if ft.is_file() {
            tar.append_data(&mut header, &rel, fs::File::open(entry.path())?)?;
        }
        // Device nodes and sockets are not part of a guest image (its /dev is the engine's).
    }
    Ok(())
}

/// The files placed into a container before its start, relative to `/`: the monitor's spec,
/// its output directory (owned by an unprivileged uid, mode 0700) and the sample (0755).
pub fn placement(spec_json: &[u8], sample_guest_path: &str, sample: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let aegis = AEGIS_DIR.trim_start_matches('/');
    let entries: [(String, tar::EntryType, u32, u32, &[u8]); 3] = [
        (
            SPEC_PATH.trim_start_matches('/').to_string(),
            tar::EntryType::Regular,
            0o600,
            0,
            spec_json,
        ),
        (
            format!("{aegis}/out"),
            tar::EntryType::Directory,
            0o700,
            OUT_OWNER,
            &[],
        ),
        (
            sample_guest_path.trim_start_matches('/').to_string(),
            tar::EntryType::Regular,
            0o755,
            0,
            sample,
        ),
    ];
    for (path, kind, mode, owner, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(u64::from(owner));
        h.set_gid(u64::from(owner));
        h.set_mtime(chrono::Utc::now().timestamp().unsigned_abs());
        h.set_size(data.len() as u64);
        // Writing into a Vec cannot fail; a path with NUL cannot come from our own names.
        let _ = tar.append_data(&mut h, path, data);
    }
    tar.into_inner().unwrap_or_default()
}

/// One file of a tar: its header facts and up to `keep` bytes of content.
#[derive(Debug)]
pub struct TarFile {
    /// Path inside the archive, without a leading `./` or `/`.
    pub path: String,
    pub kind: tar::EntryType,
    pub size: u64,
    pub link: Option<String>,
    /// The content when it was read (regular files of at most `keep` bytes).
    pub content: Option<Vec<u8>>,
}

/// Reads the entries of a tar; regular files up to `keep` bytes are read whole.
pub fn entries(reader: impl Read, keep: u64) -> std::io::Result<Vec<TarFile>> {
    let mut archive = tar::Archive::new(reader);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let header = entry.header();
        let kind = header.entry_type();
        let size = header.size()?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let link = entry.link_name()?.map(|l| l.to_string_lossy().into_owned());
        let content = if kind.is_file() && size <= keep {
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            entry.read_to_end(&mut bytes)?;
            Some(bytes)
        } else {
            None
        };
        out.push(TarFile {
            path: path.trim_start_matches("./").trim_start_matches('/').into(),
            kind,
            size,
            link,
            content,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_puts_spec_out_dir_and_sample_with_their_owners_and_modes() {
        let tar = placement(b"{}", "/root/x.sh", b"#!/bin/sh\n");
        let mut archive = tar::Archive::new(tar.as_slice());
        let facts: Vec<(String, u32, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            facts,
            vec![
                (".aegis/spec.json".to_string(), 0o600, 0),
                (".aegis/out".to_string(), 0o700, 65534),
                ("root/x.sh".to_string(), 0o755, 0),
            ]
        );
    }

    #[test]
    fn entries_keep_small_files_and_only_describe_large_ones() {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, data) in [("a", &b"abc"[..]), ("b", &[0u8; 100][..])] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            tar.append_data(&mut h, name, data).unwrap();
        }
        let bytes = tar.into_inner().unwrap();
        let files = entries(bytes.as_slice(), 10).unwrap();
        assert_eq!(files[0].content.as_deref(), Some(&b"abc"[..]));
        assert_eq!(files[1].size, 100);
        assert!(files[1].content.is_none());
    }
}
