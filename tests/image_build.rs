//! Builds the real `linux` guest image with mmdebstrap into a scratch data directory.
//!
//! Needs root (mmdebstrap root mode, chown to the guest uid range) and the host's Debian
//! mirror; takes about a minute.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use aegis::guest::{HOSTNAME, UID_BASE, USER_ID};
use aegis::image::ImageStore;
use aegis::paths::DataDir;

/// Owner and permission bits of a path itself (a symbolic link is not followed).
fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    (meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

/// Whether the entry exists, without following it: `/usr/bin/nc` is an absolute link into
/// `/etc/alternatives`, which from the host would resolve against the host's root.
fn exists(rootfs: &Path, rel: &str) -> bool {
    fs::symlink_metadata(rootfs.join(rel)).is_ok()
}

#[test]
fn linux_image_builds_with_guest_identity_and_shifted_owners() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED linux_image_builds_with_guest_identity_and_shifted_owners: needs root");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path();
    let store = ImageStore::new(&DataDir::new(data));
    let mut lines = Vec::new();
    let started = Instant::now();
    let info = store
        .build("linux", &mut |line: &str| lines.push(line.to_string()))
        .unwrap_or_else(|err| panic!("build failed: {err}"));
    eprintln!(
        "linux image built in {:.1} s: {info:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        lines.iter().any(|line| line.starts_with("mmdebstrap: ")),
        "{lines:?}"
    );

    let rootfs = data.join("images/linux/rootfs");
    assert_eq!(info.rootfs, rootfs);
    assert!(
        info.digest.starts_with("sha256:") && info.digest.len() == 71,
        "{}",
        info.digest
    );
    assert_eq!(
        (info.uid_base, info.debian_suite.as_str()),
        (UID_BASE, "bookworm")
    );
    assert!(
        info.file_count > 5_000 && info.size_bytes > 100_000_000,
        "{info:?}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(data.join("images/linux/image.json")).unwrap())
            .unwrap();
    assert_eq!(json["digest"], info.digest.as_str());

    // Identity.
    let etc = |name: &str| fs::read_to_string(rootfs.join("etc").join(name)).unwrap();
    assert_eq!(etc("hostname"), format!("{HOSTNAME}\n"));
    assert!(etc("hosts").contains(&format!("127.0.1.1\t{HOSTNAME}\n")));
    assert!(etc("passwd").contains("deploy:x:1000:1000:deploy,,,:/home/deploy:/bin/bash\n"));
    assert!(etc("group")
        .lines()
        .any(|l| l.starts_with("sudo:") && l.ends_with("deploy")));
    assert_eq!(etc("machine-id").trim().len(), 32);
    assert!(!exists(&rootfs, "etc/rc.local"));

    // Ownership: guest root is UID_BASE, the user UID_BASE+1000, setuid bits survived chown.
    assert_eq!(owner_and_mode(&rootfs), (UID_BASE, UID_BASE, 0o755));
    let (uid, _, mode) = owner_and_mode(&rootfs.join("usr/bin/sudo"));
    assert_eq!(uid, UID_BASE);
    assert_ne!(mode & 0o4000, 0, "sudo lost its setuid bit: {mode:o}");
    let deploy = UID_BASE + USER_ID;
    let (uid, gid, _) = owner_and_mode(&rootfs.join("home/deploy"));
    assert_eq!((uid, gid), (deploy, deploy));
    assert_eq!(
        owner_and_mode(&rootfs.join("home/deploy/notes.txt")).0,
        deploy
    );
    assert_eq!(
        owner_and_mode(&rootfs.join("bin")).0,
        UID_BASE,
        "the /bin link itself"
    );

    // Layout and tools a sample expects.
    for rel in [
        "etc/systemd/system",
        "etc/systemd/system/multi-user.target.wants",
        "lib/systemd/system",
        "etc/systemd/user",
        "root/.config/systemd/user",
        "home/deploy/.config/systemd/user",
        "etc/cron.d",
        "var/spool/cron/crontabs",
    ] {
        assert!(rootfs.join(rel).is_dir(), "{rel} missing");
    }
    for rel in [
        "bin/bash",
        "usr/bin/python3",
        "usr/bin/curl",
        "root/.bashrc",
        "root/.profile",
    ] {
        assert!(exists(&rootfs, rel), "{rel} missing");
    }
    assert!(
        exists(&rootfs, "bin/nc") || exists(&rootfs, "usr/bin/nc"),
        "nc missing"
    );
    let apt_lists = fs::read_dir(rootfs.join("var/lib/apt/lists")).unwrap();
    assert!(apt_lists
        .flatten()
        .all(|e| e.file_name() == "lock" || e.file_name() == "partial"));

    // Nothing left beside the image but its lock file.
    for entry in fs::read_dir(data.join("images")).unwrap().flatten() {
        let name = entry.file_name().into_string().unwrap();
        assert!(
            name == "linux" || name.starts_with(".lock-"),
            "leftover {name}"
        );
    }

    // Reading it back, and ensure() not rebuilding it.
    let again = store
        .get("linux")
        .unwrap()
        .expect("image is listed after the build");
    assert_eq!(again.digest, info.digest);
    let ensured = store
        .ensure("linux", &mut |line: &str| panic!("ensure rebuilt: {line}"))
        .unwrap();
    assert_eq!(
        (ensured.digest, ensured.created_at),
        (info.digest.clone(), info.created_at)
    );
    assert_eq!(store.list().unwrap().len(), 1);
}
