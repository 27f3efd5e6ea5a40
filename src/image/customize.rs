//! Making a fresh Debian tree look like a lived-in server.
//!
//! Runs on the host as root on a tree that is not yet ownership-shifted, so owners here are
//! guest ids. The tree holds absolute symbolic links (`/etc/alternatives/...`) that would point
//! at the host if followed, so every write goes through [`Guest`], which refuses to follow a
//! link anywhere on the way.

use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{fchown, lchown, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::guest::{USER_ID, USER_NAME};

use super::ImageError;

/// Owner of a file, in guest ids.
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

const ROOT: Owner = Owner { uid: 0, gid: 0 };
const USER: Owner = Owner {
    uid: USER_ID,
    gid: USER_ID,
};

/// A fixed id: every analysis sees the same machine. Random-looking, like a real one.
const MACHINE_ID: &str = "5c1e9a47d2b84f03a6e7c9d18f2b4a60\n";

/// Replaces the host's resolv.conf, which mmdebstrap copies in and which would show the
/// host's resolver to the sample. The resolver a cloud VPC gives its servers (base + 2): with
/// the simulated internet it answers (as every address does), with `none` it is unreachable.
const RESOLV_CONF: &str = "nameserver 172.31.0.2\noptions edns0 trust-ad\nsearch .\n";

/// Decoy shell history of the ordinary user: what an admin of a small web server types.
const BASH_HISTORY: &str = "\
sudo systemctl status nginx
df -h
free -m
sudo tail -n 100 /var/log/nginx/error.log
cd /srv/app
git pull
sudo systemctl restart app
ps aux | grep python
ss -tlnp
crontab -l
ls -la ~/backups
sudo apt update && sudo apt upgrade
exit
";

/// Decoy notes of the ordinary user.
const NOTES: &str = "\
web-prod-03
-----------
- app lives in /srv/app, restart with: sudo systemctl restart app
- nginx logs in /var/log/nginx, rotated weekly
- nightly backup from cron at 02:30 to ~/backups, keep 7 days
- TODO: renew TLS certificate before end of quarter
- TODO: move the staging database to the new host
";

/// Applies every customisation, in order.
pub(super) fn apply(rootfs: &Path, hostname: &str) -> Result<(), ImageError> {
    let guest = Guest::new(rootfs);
    set_identity(&guest, hostname)?;
    add_user(&guest)?;
    make_user_home(&guest)?;
    make_root_home(&guest)?;
    make_systemd_layout(&guest)?;
    make_cron_layout(&guest)?;
    guest.remove_file("etc/rc.local")?;
    clean_apt(&guest)
}

/// Hostname, hosts, machine id and resolver.
fn set_identity(guest: &Guest, hostname: &str) -> Result<(), ImageError> {
    let hosts = format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n\n\
         # The following lines are desirable for IPv6 capable hosts\n\
         ::1     localhost ip6-localhost ip6-loopback\n\
         ff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n"
    );
    guest.write(
        "etc/hostname",
        format!("{hostname}\n").as_bytes(),
        0o644,
        ROOT,
    )?;
    guest.write("etc/hosts", hosts.as_bytes(), 0o644, ROOT)?;
    guest.write("etc/machine-id", MACHINE_ID.as_bytes(), 0o444, ROOT)?;
    guest.write("etc/resolv.conf", RESOLV_CONF.as_bytes(), 0o644, ROOT)
}

/// The ordinary account, in the account databases directly (no guest binary runs on the
/// host). Key-only login: its password is locked, as on a server reached by ssh keys.
fn add_user(guest: &Guest) -> Result<(), ImageError> {
    let (name, id) = (USER_NAME, USER_ID);
    let changed = password_change_day();
    let passwd = format!("{name}:x:{id}:{id}:{name},,,:/home/{name}:/bin/bash");
    guest.edit("etc/passwd", |text| with_line(text, name, &passwd))?;
    guest.edit("etc/shadow", |text| {
        with_line(text, name, &format!("{name}:!:{changed}:0:99999:7:::"))
    })?;
    guest.edit("etc/group", |text| {
        let text = with_line(text, name, &format!("{name}:x:{id}:"));
        with_group_member(&text, "sudo", name)
    })?;
    guest.edit("etc/gshadow", |text| {
        let text = with_line(text, name, &format!("{name}:!::"));
        with_group_member(&text, "sudo", name)
    })
}

/// A day some months back, in days since the epoch, for the shadow file.
fn password_change_day() -> i64 {
    chrono::Utc::now().timestamp() / 86_400 - 120
}

/// `/home/deploy`: skeleton files, decoys, and the user systemd directory.
fn make_user_home(guest: &Guest) -> Result<(), ImageError> {
    let home = format!("home/{USER_NAME}");
    guest.ensure_dir(&home, 0o750, USER)?;
    for (name, mode) in guest.regular_files("etc/skel")? {
        let content = guest.read(&format!("etc/skel/{name}"))?;
        guest.write(&format!("{home}/{name}"), &content, mode, USER)?;
    }
    guest.write(
        &format!("{home}/.bash_history"),
        BASH_HISTORY.as_bytes(),
        0o600,
        USER,
    )?;
    guest.write(&format!("{home}/notes.txt"), NOTES.as_bytes(), 0o644, USER)?;
    guest.ensure_dir(&format!("{home}/.config/systemd/user"), 0o755, USER)
}

/// `/root` with Debian's dot files (base-files provides them; restored if missing).
fn make_root_home(guest: &Guest) -> Result<(), ImageError> {
    guest.ensure_dir("root", 0o700, ROOT)?;
    for name in ["bashrc", "profile"] {
        let target = format!("root/.{name}");
        if !guest.exists(&target)? {
            let content = guest.read(&format!("usr/share/base-files/dot.{name}"))?;
            guest.write(&target, &content, 0o644, ROOT)?;
        }
    }
    guest.ensure_dir("root/.config/systemd/user", 0o755, ROOT)
}

/// The unit directories a sample writes to for persistence.
fn make_systemd_layout(guest: &Guest) -> Result<(), ImageError> {
    let lib = guest.lib_dir()?;
    for dir in [
        "etc/systemd/system",
        "etc/systemd/system/multi-user.target.wants",
        "etc/systemd/user",
        &format!("{lib}/systemd/system"),
    ] {
        guest.ensure_dir(dir, 0o755, ROOT)?;
    }
    Ok(())
}

/// cron's directories (the cron package creates them; this only guards against their absence).
fn make_cron_layout(guest: &Guest) -> Result<(), ImageError> {
    guest.ensure_dir("etc/cron.d", 0o755, ROOT)?;
    guest.ensure_dir("var/spool/cron/crontabs", 0o1730, ROOT)
}

/// Package lists and apt's binary caches: large, and rebuilt by `apt update` if a sample
/// wants them.
fn clean_apt(guest: &Guest) -> Result<(), ImageError> {
    for dir in ["var/lib/apt/lists", "var/lib/apt/lists/partial"] {
        for (name, _) in guest.regular_files(dir)? {
            if name != "lock" {
                guest.remove_file(&format!("{dir}/{name}"))?;
            }
        }
    }
    for (name, _) in guest.regular_files("var/cache/apt")? {
        if name.ends_with(".bin") {
            guest.remove_file(&format!("var/cache/apt/{name}"))?;
        }
    }
    Ok(())
}

/// `text` with `line` appended, unless a line for `name` (`name:...`) is already there.
fn with_line(text: &str, name: &str, line: &str) -> String {
    let prefix = format!("{name}:");
    if text.lines().any(|existing| existing.starts_with(&prefix)) {
        return text.to_string();
    }
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(line);
    out.push('\n');
    out
}

/// `text` (group or gshadow format: members in the fourth field) with `member` added to
/// `group`'s members. Other lines are kept byte for byte.
fn with_group_member(text: &str, group: &str, member: &str) -> String {
    let prefix = format!("{group}:");
    let mut out = String::with_capacity(text.len() + member.len() + 1);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        if !body.starts_with(&prefix) {
            out.push_str(line);
            continue;
        }
        out.push_str(&add_member(body, member));
        if line.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

fn add_member(line: &str, member: &str) -> String {
    let mut fields: Vec<String> = line.split(':').map(String::from).collect();
    fields.resize(fields.len().max(4), String::new());
    let members = &mut fields[3];
    if members.split(',').any(|existing| existing == member) {
        return line.to_string();
    }
    if !members.is_empty() {
        members.push(',');
    }
    members.push_str(member);
    fields.join(":")
}

/// File operations confined to the guest tree: no symbolic link is followed on the way to a
/// path, and a link at the path itself is replaced (write), refused (dir, edit) or removed.
struct Guest {
    root: PathBuf,
}

impl Guest {
    fn new(root: &Path) -> Guest {
        Guest {
            root: root.to_path_buf(),
        }
    }

    /// `root/rel`, after checking that no existing parent component is a symbolic link.
    fn path(&self, rel: &str) -> Result<PathBuf, ImageError> {
        let rel = Path::new(rel);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(self.refuse(rel, "is not a plain relative path"));
        }
        let mut current = self.root.clone();
        let mut parents = rel.components().peekable();
        while let Some(component) = parents.next() {
            current.push(component);
            if parents.peek().is_none() {
                break;
            }
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(self.refuse(&current, "is a symbolic link"));
                }
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => break,
                Err(err) => return Err(ImageError::io("stat", &current)(err)),
            }
        }
        Ok(self.root.join(rel))
    }

    fn refuse(&self, path: &Path, why: &str) -> ImageError {
        ImageError::Build {
            step: "customise",
            detail: format!(
                "{} {why}; refusing to follow it out of the guest",
                path.display()
            ),
        }
    }

    fn exists(&self, rel: &str) -> Result<bool, ImageError> {
        Ok(fs::symlink_metadata(self.path(rel)?).is_ok())
    }

    fn read(&self, rel: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.path(rel)?;
        let mut file = open_nofollow(&path, false)?;
        let mut content = Vec::new();
        file.read_to_end(&mut content)
            .map_err(ImageError::io("read", &path))?;
        Ok(content)
    }

    /// Creates or replaces a file with this content, mode and owner.
    fn write(&self, rel: &str, content: &[u8], mode: u32, owner: Owner) -> Result<(), ImageError> {
        let path = self.path(rel)?;
        if fs::symlink_metadata(&path).is_ok_and(|meta| meta.file_type().is_symlink()) {
            fs::remove_file(&path).map_err(ImageError::io("remove link", &path))?;
        }
        let mut file = File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(ImageError::io("create", &path))?;
        file.write_all(content)
            .map_err(ImageError::io("write", &path))?;
        // The umask narrowed the mode at creation, and an existing file kept its old one.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(ImageError::io("chmod", &path))?;
        fchown(&file, Some(owner.uid), Some(owner.gid)).map_err(ImageError::io("chown", &path))
    }

    /// Rewrites a text file in place (mode and owner unchanged).
    fn edit(&self, rel: &str, change: impl FnOnce(&str) -> String) -> Result<(), ImageError> {
        let path = self.path(rel)?;
        let mut file = open_nofollow(&path, true)?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(ImageError::io("read", &path))?;
        let new = change(&text);
        if new == text {
            return Ok(());
        }
        file.set_len(0).map_err(ImageError::io("truncate", &path))?;
        file.rewind().map_err(ImageError::io("seek", &path))?;
        file.write_all(new.as_bytes())
            .map_err(ImageError::io("write", &path))
    }

    /// Creates the directory and any missing parents with this mode and owner. Existing
    /// directories are left as they are.
    fn ensure_dir(&self, rel: &str, mode: u32, owner: Owner) -> Result<(), ImageError> {
        self.path(rel)?;
        let mut current = self.root.clone();
        for component in Path::new(rel).components() {
            current.push(component);
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.is_dir() => continue,
                Ok(_) => return Err(self.refuse(&current, "is not a directory")),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(ImageError::io("stat", &current)(err)),
            }
            fs::create_dir(&current).map_err(ImageError::io("create", &current))?;
            fs::set_permissions(&current, fs::Permissions::from_mode(mode))
                .map_err(ImageError::io("chmod", &current))?;
            lchown(&current, Some(owner.uid), Some(owner.gid))
                .map_err(ImageError::io("chown", &current))?;
        }
        Ok(())
    }

    /// Removes a file or link if it exists.
    fn remove_file(&self, rel: &str) -> Result<(), ImageError> {
        let path = self.path(rel)?;
        match fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(ImageError::io("remove", &path)(err))
            }
            _ => Ok(()),
        }
    }

    /// Names and modes of the regular files directly in a directory (none if it is absent).
    fn regular_files(&self, rel: &str) -> Result<Vec<(String, u32)>, ImageError> {
        let dir = self.path(rel)?;
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(ImageError::io("list", &dir)(err)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(ImageError::io("list", &dir))?;
            let meta = entry
                .metadata()
                .map_err(ImageError::io("stat", &entry.path()))?;
            if let (true, Some(name)) = (meta.is_file(), entry.file_name().to_str()) {
                files.push((name.to_string(), meta.permissions().mode() & 0o7777));
            }
        }
        files.sort();
        Ok(files)
    }

    /// `usr/lib` when `/lib` is the merged-/usr link to it (bookworm), else `lib`.
    fn lib_dir(&self) -> Result<&'static str, ImageError> {
        let lib = self.root.join("lib");
        match fs::read_link(&lib) {
            Ok(target) if target == Path::new("usr/lib") => Ok("usr/lib"),
            Ok(target) => Err(self.refuse(&lib, &format!("points to {}", target.display()))),
            Err(_) => Ok("lib"),
        }
    }
}

fn open_nofollow(path: &Path, write: bool) -> Result<File, ImageError> {
    File::options()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(ImageError::io("open", path))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, MetadataExt};

    use super::*;

    #[test]
    fn with_line_appends_once() {
        let text = "root:x:0:0:root:/root:/bin/bash\n";
        let once = with_line(text, "deploy", "deploy:x:1000:1000::/home/deploy:/bin/bash");
        assert_eq!(once.lines().count(), 2);
        assert!(once.ends_with("/bin/bash\n"));
        assert_eq!(with_line(&once, "deploy", "deploy:other"), once);
        assert_eq!(with_line("a:1", "b", "b:2"), "a:1\nb:2\n");
    }

    #[test]
    fn with_line_matches_whole_names_only() {
        let text = "deployer:x:1001:\n";
        assert!(with_line(text, "deploy", "deploy:x:1000:").contains("deploy:x:1000:"));
    }

    #[test]
    fn group_member_is_added_to_the_right_line_only() {
        let text = "root:x:0:\nsudo:x:27:\nsudoers:x:28:\n";
        let out = with_group_member(text, "sudo", "deploy");
        assert_eq!(out, "root:x:0:\nsudo:x:27:deploy\nsudoers:x:28:\n");
        assert_eq!(with_group_member(&out, "sudo", "deploy"), out);
        let more = with_group_member("sudo:x:27:alice", "sudo", "deploy");
        assert_eq!(more, "sudo:x:27:alice,deploy");
    }

    #[test]
    fn gshadow_member_goes_in_the_fourth_field() {
        let out = with_group_member("sudo:*::\n", "sudo", "deploy");
        assert_eq!(out, "sudo:*::deploy\n");
    }

    #[test]
    fn writes_do_not_follow_a_symlinked_parent() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("rootfs");
        let outside = scratch.path().join("host-etc");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        symlink(&outside, root.join("etc")).unwrap();
        let guest = Guest::new(&root);
        let err = guest
            .write("etc/hostname", b"x\n", 0o644, ROOT)
            .unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(guest.ensure_dir("etc/systemd/system", 0o755, ROOT).is_err());
        assert!(guest.edit("etc/passwd", |t| t.to_string()).is_err());
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn paths_must_stay_relative() {
        let scratch = tempfile::tempdir().unwrap();
        let guest = Guest::new(scratch.path());
        assert!(guest.path("../etc/passwd").is_err());
        assert!(guest.path("/etc/passwd").is_err());
        assert!(guest.path("etc/passwd").is_ok());
    }

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_followed() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED a_symlink_at_the_target_is_replaced_not_followed: needs root");
            return;
        }
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("rootfs");
        fs::create_dir_all(root.join("etc")).unwrap();
        let outside = scratch.path().join("host-resolv.conf");
        fs::write(&outside, b"host\n").unwrap();
        symlink(&outside, root.join("etc/resolv.conf")).unwrap();
        Guest::new(&root)
            .write("etc/resolv.conf", b"guest\n", 0o644, ROOT)
            .unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"host\n");
        assert_eq!(fs::read(root.join("etc/resolv.conf")).unwrap(), b"guest\n");
    }

    /// The parts of a Debian tree that `apply` reads.
    fn fake_debian(root: &Path) {
        for dir in [
            "etc/skel",
            "root",
            "home",
            "usr/lib",
            "usr/share/base-files",
            "var/lib/apt/lists/partial",
            "var/cache/apt",
        ] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        symlink("usr/lib", root.join("lib")).unwrap();
        let files: &[(&str, &str)] = &[
            ("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"),
            ("etc/shadow", "root:*:20000:0:99999:7:::\n"),
            ("etc/group", "root:x:0:\nsudo:x:27:\n"),
            ("etc/gshadow", "root:*::\nsudo:*::\n"),
            ("etc/skel/.bashrc", "# skel bashrc\n"),
            ("etc/rc.local", "#!/bin/sh\n"),
            ("usr/share/base-files/dot.bashrc", "# root bashrc\n"),
            ("usr/share/base-files/dot.profile", "# root profile\n"),
            ("var/lib/apt/lists/deb.debian.org_InRelease", "x"),
            ("var/lib/apt/lists/lock", ""),
            ("var/cache/apt/pkgcache.bin", "x"),
        ];
        for (path, content) in files {
            fs::write(root.join(path), content).unwrap();
        }
    }

    #[test]
    fn apply_customises_a_fake_debian_tree() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED apply_customises_a_fake_debian_tree: needs root for chown");
            return;
        }
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("rootfs");
        fake_debian(&root);
        apply(&root, crate::guest::HOSTNAME).unwrap();
        apply(&root, crate::guest::HOSTNAME).unwrap(); // idempotent

        let read = |rel: &str| fs::read_to_string(root.join(rel)).unwrap();
        assert_eq!(read("etc/hostname"), "web-prod-03\n");
        assert!(read("etc/hosts").contains("127.0.1.1\tweb-prod-03\n"));
        assert_eq!(read("etc/passwd").matches("deploy:x:1000:1000:").count(), 1);
        assert!(read("etc/group").contains("sudo:x:27:deploy\n"));
        assert!(read("etc/gshadow").contains("sudo:*::deploy\n"));
        assert_eq!(read("home/deploy/.bashrc"), "# skel bashrc\n");
        assert_eq!(read("root/.profile"), "# root profile\n");
        let home = fs::metadata(root.join("home/deploy")).unwrap();
        assert_eq!((home.uid(), home.gid()), (1000, 1000));
        let history = fs::metadata(root.join("home/deploy/.bash_history")).unwrap();
        assert_eq!((history.uid(), history.mode() & 0o777), (1000, 0o600));
        for dir in [
            "etc/systemd/system/multi-user.target.wants",
            "lib/systemd/system",
            "etc/systemd/user",
            "root/.config/systemd/user",
            "home/deploy/.config/systemd/user",
            "etc/cron.d",
            "var/spool/cron/crontabs",
        ] {
            assert!(root.join(dir).is_dir(), "{dir}");
        }
        assert!(!root.join("etc/rc.local").exists());
        assert!(!root
            .join("var/lib/apt/lists/deb.debian.org_InRelease")
            .exists());
        assert!(root.join("var/lib/apt/lists/lock").exists());
        assert!(!root.join("var/cache/apt/pkgcache.bin").exists());
    }
}
