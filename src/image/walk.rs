//! A deterministic walk of a directory tree that never follows symbolic links.

use std::fs::{self, Metadata};
use std::path::{Path, PathBuf};

use super::ImageError;

/// One entry of the tree, with its `lstat` metadata.
#[derive(Debug)]
pub(super) struct Entry {
    /// Path relative to the root; the root itself is `""`.
    pub(super) rel: PathBuf,
    pub(super) meta: Metadata,
}

/// Every entry below `root` and `root` itself, depth first, siblings sorted by the bytes of
/// their names, so two walks of the same tree give the same order.
pub(super) fn entries(root: &Path) -> Result<Vec<Entry>, ImageError> {
    let meta = fs::symlink_metadata(root).map_err(ImageError::io("stat", root))?;
    let mut out = vec![Entry {
        rel: PathBuf::new(),
        meta,
    }];
    walk_dir(root, Path::new(""), &mut out)?;
    Ok(out)
}

fn walk_dir(root: &Path, rel: &Path, out: &mut Vec<Entry>) -> Result<(), ImageError> {
    let dir = root.join(rel);
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).map_err(ImageError::io("list", &dir))? {
        names.push(entry.map_err(ImageError::io("list", &dir))?.file_name());
    }
    names.sort();
    for name in names {
        let child = rel.join(&name);
        let path = root.join(&child);
        let meta = fs::symlink_metadata(&path).map_err(ImageError::io("stat", &path))?;
        let is_dir = meta.is_dir();
        out.push(Entry {
            rel: child.clone(),
            meta,
        });
        if is_dir {
            walk_dir(root, &child, out)?;
        }
    }
    Ok(())
}
