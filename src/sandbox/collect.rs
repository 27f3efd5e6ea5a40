//! After the run: what the sample left in its writable layer, `/tmp` and `/run`, read from the
//! host side so nothing inside the sandbox can tamper with it.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{RunLayout, SandboxOutcome, SandboxSpec};
use crate::monitor::files::{read_content, Content};

/// Most entries collected from the writable layer.
pub const MAX_ENTRIES: usize = 10_000;

/// How an entry of the writable layer relates to the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    Created,
    Modified,
    Deleted,
}

/// One file that differs from the image at the end of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectedFile {
    /// Path inside the guest.
    pub path: String,
    pub state: FileState,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub artifact: Option<String>,
    pub note: Option<String>,
}

/// Walks the writable layer and the scratch directories and records every file that differs.
pub fn collect(spec: &SandboxSpec, layout: &RunLayout, outcome: &mut SandboxOutcome) {
    let scratch = layout.scratch();
    let mut walker = Walker::new(WalkSettings {
        rootfs: Some(spec.rootfs.clone()),
        artifact_max_bytes: spec.artifact_max_bytes,
        disk_bytes: spec.limits.disk_bytes,
        sample_guest_path: spec.sample_guest_path.clone(),
        placed_sample: layout.sample(),
        dropped_dir: layout.dropped(),
    });
    walker.walk(&scratch.join("upper"), "/", true);
    walker.walk(&scratch.join("tmp"), "/tmp/", false);
    walker.walk(&scratch.join("run"), "/run/", false);
    walker.finish(outcome);
}

/// What a walk compares against and where it keeps artifacts.
#[derive(Debug, Clone)]
pub struct WalkSettings {
    /// The image's root file system, for directories laid over it.
    pub rootfs: Option<PathBuf>,
    pub artifact_max_bytes: u64,
    /// Files larger than this can only be sparse: not read.
    pub disk_bytes: u64,
    pub sample_guest_path: String,
    /// The sample as placed, so that it is not reported as a file the sample made.
    pub placed_sample: PathBuf,
    /// Where the content of collected files goes, named by sha256.
    pub dropped_dir: PathBuf,
}

/// Records every file below directories that start empty (e.g. a container's `/tmp` tmpfs):
/// each one is a file the sample created.
pub fn collect_fresh(settings: WalkSettings, dirs: &[(&Path, &str)], outcome: &mut SandboxOutcome) {
    let mut walker = Walker::new(settings);
    for (dir, guest_prefix) in dirs {
        walker.walk(dir, guest_prefix, false);
    }
    walker.finish(outcome);
}

struct Walker {
    settings: WalkSettings,
    files: Vec<CollectedFile>,
    dropped: u64,
    errors: Vec<String>,
}

impl Walker {
    fn new(settings: WalkSettings) -> Self {
        Walker {
            settings,
            files: Vec::new(),
            dropped: 0,
            errors: Vec::new(),
        }
    }

    fn finish(self, outcome: &mut SandboxOutcome) {
        outcome.files.extend(self.files);
        outcome.files_dropped += self.dropped;
        outcome.collection_errors.extend(self.errors);
    }

    fn walk(&mut self, dir: &Path, guest_prefix: &str, over_image: bool) {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                self.errors.push(format!("read {}: {e}", dir.display()));
                return;
            }
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let guest = format!("{guest_prefix}{name}");
            let Ok(meta) = entry.metadata() else { continue };
            let ft = meta.file_type();
            if ft.is_dir() {
                self.walk(&entry.path(), &format!("{guest}/"), over_image);
                continue;
            }
            if self.files.len() >= MAX_ENTRIES {
                self.dropped += 1;
                continue;
            }
            let in_image = over_image && self.in_image(&guest);
            if ft.is_char_device() && meta.rdev() == 0 {
                // An overlay whiteout: the file was deleted from the image.
                self.push(guest, FileState::Deleted, None, None, None, None);
            } else if ft.is_symlink() {
                let target = fs::read_link(entry.path()).unwrap_or_default();
                let state = if in_image {
                    FileState::Modified
                } else {
                    FileState::Created
                };
                let note = format!("symbolic link to {}", target.display());
                self.push(guest, state, None, None, None, Some(note));
            } else if ft.is_file() {
                self.regular(&entry.path(), guest, in_image, meta.len());
            } else {
                let state = if in_image {
                    FileState::Modified
                } else {
                    FileState::Created
                };
                self.push(guest, state, None, None, None, Some("special file".into()));
            }
        }
    }

    fn in_image(&self, guest: &str) -> bool {
        self.settings
            .rootfs
            .as_ref()
            .is_some_and(|r| fs::symlink_metadata(r.join(guest.trim_start_matches('/'))).is_ok())
    }

    fn regular(&mut self, host: &Path, guest: String, in_image: bool, size: u64) {
        let cap = self.settings.artifact_max_bytes;
        if size > self.settings.disk_bytes {
            let note = Some(crate::monitor::files::sparse_note(size));
            let state = if in_image {
                FileState::Modified
            } else {
                FileState::Created
            };
            self.push(guest, state, Some(size), None, None, note);
            return;
        }
        let content = fs::File::open(host).and_then(|f| read_content(f, size, cap));
        let content = match content {
            Ok(c) => c,
            Err(e) => {
                self.errors.push(format!("read {guest}: {e}"));
                return;
            }
        };
        if guest == self.settings.sample_guest_path && self.is_placed_sample(host) {
            return; // the sample as we placed it
        }
        if in_image && self.same_as_image(&guest, &content) {
            return; // opened for writing, copied up, but not changed
        }
        let state = if in_image {
            FileState::Modified
        } else {
            FileState::Created
        };
        let (artifact, note) = match &content.bytes {
            Some(bytes) => (self.store(&content.sha256, bytes), None),
            None => (
                None,
                Some(format!("content not kept: over the {cap}-byte cap")),
            ),
        };
        self.push(
            guest,
            state,
            Some(content.size),
            Some(content.sha256),
            artifact,
            note,
        );
    }

    fn is_placed_sample(&self, host: &Path) -> bool {
        match (fs::read(host), fs::read(&self.settings.placed_sample)) {
            (Ok(now), Ok(placed)) => now == placed,
            _ => false,
        }
    }

    fn same_as_image(&self, guest: &str, content: &Content) -> bool {
        let Some(rootfs) = &self.settings.rootfs else {
            return false;
        };
        let original = rootfs.join(guest.trim_start_matches('/'));
        // Never follow a link of the image: absolute links resolve into the host's files.
        match fs::symlink_metadata(&original) {
            Ok(m) if m.is_file() && m.len() == content.size => fs::File::open(&original)
                .and_then(|f| read_content(f, m.len(), 0))
                .is_ok_and(|o| o.sha256 == content.sha256),
            _ => false,
        }
    }

    fn store(&mut self, sha: &str, content: &[u8]) -> Option<String> {
        let path = self.settings.dropped_dir.join(sha);
        if !path.exists() {
            if let Err(e) = fs::write(&path, content) {
                self.errors.push(format!("store artifact {sha}: {e}"));
                return None;
            }
        }
        Some(format!("dropped/{sha}"))
    }

    fn push(
        &mut self,
        path: String,
        state: FileState,
        size: Option<u64>,
        sha256: Option<String>,
        artifact: Option<String>,
        note: Option<String>,
    ) {
        self.files.push(CollectedFile {
            path,
            state,
            size,
            sha256,
            artifact,
            note,
        });
    }
}
