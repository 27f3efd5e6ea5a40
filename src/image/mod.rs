//! Guest images: the read-only root file systems a sample runs on.
//!
//! ```text
//! <data-dir>/images/<name>/rootfs      root file system, owned by host uids from UID_BASE
//! <data-dir>/images/<name>/image.json  ImageInfo
//! <data-dir>/images/.build-<name>-<pid> a build in progress (renamed into place when done)
//! <data-dir>/images/.old-<name>-<pid>   an image being replaced or removed
//! <data-dir>/images/.lock-<name>        serialises builds and removal of one image
//! ```
//!
//! Building `linux` is a checklist (see [`ImageStore::build`]): mmdebstrap a Debian minbase
//! system, customise it to look like a lived-in server, shift its ownership into the uid range
//! the sandbox's user namespace maps, then digest it. Nothing is visible under `<name>` until
//! every step has succeeded, so a killed build never leaves half an image behind.
//!
//! An image must not be rebuilt or removed while a sandbox uses it as its overlay lower layer:
//! nothing here knows about running analyses.

mod customize;
mod digest;
mod mmdebstrap;
mod ownership;
mod staging;
mod walk;
mod wineprefix;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub(crate) use mmdebstrap::locate as locate_tools;

use crate::guest::UID_BASE;
use crate::paths::DataDir;

/// The images `aegis image build` accepts.
pub const KNOWN_IMAGES: &[&str] = &["linux", "windows"];

/// What makes one guest image differ from another.
#[derive(Debug)]
pub(crate) struct Recipe {
    name: &'static str,
    /// dpkg architectures (the first is the native one).
    architectures: &'static [&'static str],
    /// Packages on top of the Linux image's, each with the reason in [`RECIPES`].
    packages: &'static [&'static str],
    /// The guest's host name.
    hostname: &'static str,
    /// A Wine prefix is prepared and hardened in the image.
    wine_prefix: bool,
}

/// One recipe per name of [`KNOWN_IMAGES`].
const RECIPES: &[Recipe] = &[
    Recipe {
        name: "linux",
        architectures: &["amd64"],
        packages: &[],
        hostname: crate::guest::HOSTNAME,
        wine_prefix: false,
    },
    Recipe {
        name: "windows",
        // i386 through multiarch: wine32 runs 32-bit Windows programs.
        architectures: &["amd64", "i386"],
        packages: &[
            "wine",        // the wine and wineboot commands used to prepare the prefix
            "wine64",      // the 64-bit loader, wineserver and Wine's PE DLLs
            "wine32:i386", // the 32-bit loader for PE32 programs
            "xvfb",        // a virtual X server for GUI programs
        ],
        hostname: crate::windows::COMPUTER_NAME,
        wine_prefix: true,
    },
];

/// The recipe of a known image.
fn recipe(name: &str) -> Result<&'static Recipe, ImageError> {
    check_name(name)?;
    RECIPES
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| ImageError::UnknownImage {
            name: name.to_string(),
            known: KNOWN_IMAGES.join(", "),
        })
}

/// The Debian release the `linux` image is built from.
const DEBIAN_SUITE: &str = "bookworm";

/// Name of the metadata file beside the root file system.
const METADATA_FILE: &str = "image.json";

/// Name of the root file system directory inside an image directory.
const ROOTFS_DIR: &str = "rootfs";

/// What went wrong with a guest image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A name that is not in [`KNOWN_IMAGES`].
    #[error("unknown guest image `{name}`; known images: {known}")]
    UnknownImage { name: String, known: String },
    /// `remove` of an image that does not exist.
    #[error("guest image `{name}` is not built; build it with `aegis image build {name}`")]
    NotBuilt { name: String },
    /// A program the build runs is not installed (aegis installs nothing itself).
    #[error("`{tool}` not found on PATH; install the Debian package `{package}` (apt-get install {package})")]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
    },
    /// A build step failed; `detail` says how (for mmdebstrap: its last output lines).
    #[error("image build failed at step `{step}`: {detail}")]
    Build { step: &'static str, detail: String },
    /// A file system operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// `image.json` is unreadable, for another image, or its rootfs is gone.
    #[error("image metadata {path} is not usable: {detail}")]
    Metadata { path: PathBuf, detail: String },
    /// A directory to delete has mounts below it (deleting through them would reach the host).
    #[error("refusing to remove {path}: {count} mount point(s) below it, first {first}")]
    Mounted {
        path: PathBuf,
        count: usize,
        first: PathBuf,
    },
}

impl ImageError {
    /// Wraps an I/O error with the operation and the path it concerned.
    fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ImageError {
        let path = path.to_path_buf();
        move |source| ImageError::Io { op, path, source }
    }
}

/// What `image.json` records about a built image.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageInfo {
    /// One of [`KNOWN_IMAGES`].
    pub name: String,
    /// The root file system. Always the current location (rewritten on read), so a moved
    /// data directory still works.
    pub rootfs: PathBuf,
    /// `sha256:<hex>` over the whole tree: paths, types, modes, owners, contents, link targets.
    pub digest: String,
    /// When the build finished, RFC 3339 in UTC.
    pub created_at: String,
    /// Sum of the sizes of the regular files.
    pub size_bytes: u64,
    /// Number of entries of every kind (files, directories, links, device nodes), root excluded.
    pub file_count: u64,
    /// Host uid (and gid) that guest uid 0 was shifted to.
    pub uid_base: u32,
    /// The Debian release, e.g. `bookworm`.
    pub debian_suite: String,
    /// Fingerprint of the recipe that built it ([`recipe_fingerprint`]); an image whose
    /// fingerprint differs from this binary's (or that has none) is rebuilt by
    /// [`ImageStore::ensure`].
    #[serde(default)]
    pub recipe: String,
}

/// Fingerprint of the way this binary builds image `name`: the recipe's packages,
/// architectures, host name and prefix, and the text of the code that builds and customises
/// the root file system. An image built by another version of that code is stale.
pub fn recipe_fingerprint(name: &str) -> Result<String, ImageError> {
    use sha2::{Digest, Sha256};
    let recipe = recipe(name)?;
    let mut hash = Sha256::new();
    hash.update(format!("{recipe:?}\n{DEBIAN_SUITE}\n{UID_BASE}\n"));
    for code in [
        include_str!("mmdebstrap.rs"),
        include_str!("customize.rs"),
        include_str!("wineprefix.rs"),
        include_str!("ownership.rs"),
    ] {
        hash.update(code);
    }
    Ok(hex::encode(&hash.finalize()[..8]))
}

/// The guest images under `<data-dir>/images`.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    /// The store of the given data directory. Nothing is created until a build.
    pub fn new(data: &DataDir) -> Self {
        ImageStore { dir: data.images() }
    }

    /// The image's metadata, or `None` when it is not built.
    pub fn get(&self, name: &str) -> Result<Option<ImageInfo>, ImageError> {
        check_name(name)?;
        let path = self.image_dir(name).join(METADATA_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(ImageError::io("read", &path)(err)),
        };
        let info = parse_metadata(&path, &text, name, self.rootfs_path(name))?;
        Ok(Some(info))
    }

    /// Builds the image from scratch, replacing any existing one only once the new one is
    /// complete. `progress` receives one human-readable line per step and per mmdebstrap line.
    pub fn build(
        &self,
        name: &str,
        progress: &mut dyn FnMut(&str),
    ) -> Result<ImageInfo, ImageError> {
        check_name(name)?;
        let tools = mmdebstrap::locate()?;
        let _lock = staging::lock(&self.dir, name)?;
        self.build_locked(name, &tools, progress)
    }

    /// The image's metadata, building it first when it is not built yet.
    pub fn ensure(
        &self,
        name: &str,
        progress: &mut dyn FnMut(&str),
    ) -> Result<ImageInfo, ImageError> {
        let current = recipe_fingerprint(name)?;
        match self.get(name)? {
            Some(info) if info.recipe == current => return Ok(info),
            Some(_) => progress(&format!(
                "guest image {name} was built by another version of aegis: rebuilding it"
            )),
            None => {}
        }
        let tools = mmdebstrap::locate()?;
        let _lock = staging::lock(&self.dir, name)?;
        // Another process may have built it while we waited for the lock.
        if let Some(info) = self.get(name)?.filter(|info| info.recipe == current) {
            return Ok(info);
        }
        self.build_locked(name, &tools, progress)
    }

    /// Every built image, sorted by name. Directories that are not known images are ignored.
    pub fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        let mut images = Vec::new();
        for name in KNOWN_IMAGES {
            if let Some(info) = self.get(name)? {
                images.push(info);
            }
        }
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(images)
    }

    /// Deletes a built image. It disappears at once (renamed away), then its files are deleted.
    pub fn remove(&self, name: &str) -> Result<(), ImageError> {
        check_name(name)?;
        if !self.image_dir(name).join(METADATA_FILE).exists() {
            return Err(ImageError::NotBuilt { name: name.into() });
        }
        let _lock = staging::lock(&self.dir, name)?;
        // Checked again under the lock: a concurrent remove may have won.
        if !self.image_dir(name).exists() {
            return Err(ImageError::NotBuilt { name: name.into() });
        }
        staging::retire(&self.dir, &self.image_dir(name), name)?;
        tracing::info!(image = name, "guest image removed");
        Ok(())
    }

    /// The steps of a build, in order. The caller holds the image's lock.
    fn build_locked(
        &self,
        name: &str,
        tools: &mmdebstrap::Tools,
        progress: &mut dyn FnMut(&str),
    ) -> Result<ImageInfo, ImageError> {
        let started = Instant::now();
        let recipe = recipe(name)?;
        tracing::info!(image = name, suite = DEBIAN_SUITE, "building guest image");
        staging::remove_stale(&self.dir, progress)?;
        let build = staging::BuildDir::create(&self.dir, name)?;
        let rootfs = build.path().join(ROOTFS_DIR);

        mmdebstrap::run(tools, DEBIAN_SUITE, &rootfs, recipe, progress)?;
        progress("customising the guest (hostname, user, decoys, systemd layout)");
        customize::apply(&rootfs, recipe.hostname)?;
        if recipe.wine_prefix {
            wineprefix::prepare(&tools.unshare, &rootfs, progress)?;
        }
        // Ownership last but one: customisation creates files as guest uids 0 and 1000.
        progress(&format!("shifting ownership to host uids from {UID_BASE}"));
        ownership::shift(&rootfs, UID_BASE)?;
        set_mode(&rootfs, 0o755)?;
        // The digest covers owners, so it comes after the shift.
        progress("computing the image digest");
        let summary = digest::compute(&rootfs)?;

        let info = self.info(name, summary);
        write_metadata(&build.path().join(METADATA_FILE), &info)?;
        build.commit(&self.dir, name)?;
        let secs = started.elapsed().as_secs();
        tracing::info!(image = name, digest = %info.digest, secs, "guest image built");
        progress(&format!(
            "built {name}: {} ({} entries, {} bytes)",
            info.digest, info.file_count, info.size_bytes
        ));
        Ok(info)
    }

    fn info(&self, name: &str, summary: digest::Summary) -> ImageInfo {
        ImageInfo {
            name: name.to_string(),
            rootfs: self.rootfs_path(name),
            digest: summary.digest,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            size_bytes: summary.size_bytes,
            file_count: summary.file_count,
            uid_base: UID_BASE,
            debian_suite: DEBIAN_SUITE.to_string(),
            recipe: recipe_fingerprint(name).unwrap_or_default(),
        }
    }

    fn image_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn rootfs_path(&self, name: &str) -> PathBuf {
        self.image_dir(name).join(ROOTFS_DIR)
    }
}

/// Accepts only the names in [`KNOWN_IMAGES`]; this also keeps `name` a single path component.
fn check_name(name: &str) -> Result<(), ImageError> {
    if KNOWN_IMAGES.contains(&name) {
        return Ok(());
    }
    Err(ImageError::UnknownImage {
        name: name.to_string(),
        known: KNOWN_IMAGES.join(", "),
    })
}

/// Parses `image.json` and checks it belongs to `name` and that its root file system exists.
fn parse_metadata(
    path: &Path,
    text: &str,
    name: &str,
    rootfs: PathBuf,
) -> Result<ImageInfo, ImageError> {
    let bad = |detail: String| ImageError::Metadata {
        path: path.to_path_buf(),
        detail,
    };
    let mut info: ImageInfo = serde_json::from_str(text).map_err(|err| bad(err.to_string()))?;
    if info.name != name {
        return Err(bad(format!("it describes image `{}`", info.name)));
    }
    if !rootfs.is_dir() {
        return Err(bad(format!(
            "its root file system {} is missing",
            rootfs.display()
        )));
    }
    info.rootfs = rootfs;
    Ok(info)
}

fn write_metadata(path: &Path, info: &ImageInfo) -> Result<(), ImageError> {
    let mut text = serde_json::to_string_pretty(info).map_err(|err| ImageError::Metadata {
        path: path.to_path_buf(),
        detail: err.to_string(),
    })?;
    text.push('\n');
    fs::write(path, text).map_err(ImageError::io("write", path))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(ImageError::io("chmod", path))
}

#[cfg(test)]
mod tests {
    use tempfile::TempDir;

    use super::*;

    fn sample_info(store: &ImageStore) -> ImageInfo {
        ImageInfo {
            name: "linux".into(),
            rootfs: store.rootfs_path("linux"),
            digest: format!("sha256:{}", "ab".repeat(32)),
            created_at: "2025-05-20T10:00:00Z".into(),
            size_bytes: 1234,
            file_count: 56,
            uid_base: UID_BASE,
            debian_suite: "bookworm".into(),
            recipe: recipe_fingerprint("linux").unwrap(),
        }
    }

    #[test]
    fn the_current_image_is_used_and_one_from_another_recipe_is_not() {
        let scratch = TempDir::new().unwrap();
        let (store, info) = fake_store(&scratch);
        // Current: ensure returns it without building (no mmdebstrap is run).
        let got = store.ensure("linux", &mut |_| {}).unwrap();
        assert_eq!(got, info);
        // An image.json written before fingerprints existed reads with an empty one: stale.
        let mut old: serde_json::Value = serde_json::to_value(&info).unwrap();
        old.as_object_mut().unwrap().remove("recipe");
        fs::write(
            store.image_dir("linux").join(METADATA_FILE),
            old.to_string(),
        )
        .unwrap();
        assert_eq!(store.get("linux").unwrap().unwrap().recipe, "");
        let linux = recipe_fingerprint("linux").unwrap();
        assert_eq!(linux.len(), 16);
        assert_eq!(linux, recipe_fingerprint("linux").unwrap());
        assert_ne!(linux, recipe_fingerprint("windows").unwrap());
    }

    /// A store with a hand-made `linux` image (an empty rootfs and its image.json).
    fn fake_store(scratch: &TempDir) -> (ImageStore, ImageInfo) {
        let store = ImageStore::new(&DataDir::new(scratch.path()));
        fs::create_dir_all(store.rootfs_path("linux")).unwrap();
        let info = sample_info(&store);
        write_metadata(&store.image_dir("linux").join(METADATA_FILE), &info).unwrap();
        (store, info)
    }

    #[test]
    fn known_name_is_accepted() {
        assert!(check_name("linux").is_ok());
        assert!(check_name("windows").is_ok());
    }

    #[test]
    fn every_known_image_has_a_recipe() {
        for name in KNOWN_IMAGES {
            assert_eq!(recipe(name).unwrap().name, *name);
        }
        let windows = recipe("windows").unwrap();
        assert!(windows.packages.contains(&"wine32:i386"));
        assert_eq!(windows.architectures, ["amd64", "i386"]);
    }

    #[test]
    fn unknown_names_are_rejected_with_the_accepted_names() {
        for name in [
            "",
            "Windows",
            "Linux",
            "../linux",
            "linux/",
            ".build-linux-1",
            "linux\0",
        ] {
            let err = check_name(name).unwrap_err();
            assert!(matches!(err, ImageError::UnknownImage { .. }), "{name:?}");
            assert!(
                err.to_string().contains("known images: linux, windows"),
                "{err}"
            );
        }
    }

    #[test]
    fn get_of_unknown_name_is_an_error_not_none() {
        let scratch = tempfile::tempdir().unwrap();
        let store = ImageStore::new(&DataDir::new(scratch.path()));
        assert!(matches!(
            store.get("../etc"),
            Err(ImageError::UnknownImage { .. })
        ));
    }

    #[test]
    fn image_json_round_trips() {
        let scratch = tempfile::tempdir().unwrap();
        let (store, info) = fake_store(&scratch);
        assert_eq!(store.get("linux").unwrap(), Some(info));
    }

    #[test]
    fn get_rewrites_a_stale_rootfs_path() {
        let scratch = tempfile::tempdir().unwrap();
        let (store, mut info) = fake_store(&scratch);
        info.rootfs = PathBuf::from("/elsewhere/rootfs");
        write_metadata(&store.image_dir("linux").join(METADATA_FILE), &info).unwrap();
        let got = store.get("linux").unwrap().unwrap();
        assert_eq!(got.rootfs, store.rootfs_path("linux"));
    }

    #[test]
    fn get_reports_corrupt_metadata() {
        let scratch = tempfile::tempdir().unwrap();
        let (store, _) = fake_store(&scratch);
        fs::write(store.image_dir("linux").join(METADATA_FILE), "{ not json").unwrap();
        assert!(matches!(
            store.get("linux"),
            Err(ImageError::Metadata { .. })
        ));
    }

    #[test]
    fn get_reports_a_missing_rootfs() {
        let scratch = tempfile::tempdir().unwrap();
        let (store, _) = fake_store(&scratch);
        fs::remove_dir(store.rootfs_path("linux")).unwrap();
        let err = store.get("linux").unwrap_err();
        assert!(err.to_string().contains("is missing"), "{err}");
    }

    #[test]
    fn empty_store_lists_nothing_and_gets_none() {
        let scratch = tempfile::tempdir().unwrap();
        let store = ImageStore::new(&DataDir::new(scratch.path().join("absent")));
        assert!(store.list().unwrap().is_empty());
        assert_eq!(store.get("linux").unwrap(), None);
    }

    #[test]
    fn list_shows_built_images_and_ignores_other_entries() {
        let scratch = tempfile::tempdir().unwrap();
        let (store, info) = fake_store(&scratch);
        fs::create_dir_all(store.dir.join("unrelated/rootfs")).unwrap();
        fs::create_dir_all(store.dir.join(".build-linux-1")).unwrap();
        assert_eq!(store.list().unwrap(), vec![info]);
    }

    #[test]
    fn remove_deletes_the_image_and_leaves_no_old_dir() {
        let scratch = tempfile::tempdir().unwrap();
        let (store, _) = fake_store(&scratch);
        fs::write(store.rootfs_path("linux").join("file"), b"x").unwrap();
        store.remove("linux").unwrap();
        assert_eq!(store.get("linux").unwrap(), None);
        assert!(!store.image_dir("linux").exists());
        let leftovers: Vec<_> = fs::read_dir(&store.dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| !name.starts_with(".lock-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn remove_of_an_unbuilt_image_says_how_to_build_it() {
        let scratch = tempfile::tempdir().unwrap();
        let store = ImageStore::new(&DataDir::new(scratch.path()));
        let err = store.remove("linux").unwrap_err();
        assert!(matches!(err, ImageError::NotBuilt { .. }));
        assert!(err.to_string().contains("aegis image build linux"), "{err}");
    }
}
