//! Builds the file-system view the sample sees, from inside the new namespaces.
//!
//! Runs in the sandbox's init process after it entered its user, mount, pid, network, ipc,
//! uts and cgroup namespaces, before the monitor starts the sample.

use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

use super::kernel::{Kernel, KernelError};

/// Device nodes bound from the host into the guest's minimal `/dev`.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Where the host-side scratch directories appear in the guest.
pub const SCRATCH_BINDS: &[(&str, &str)] = &[("tmp", "tmp"), ("run", "run")];

/// Builds the view under `root` (the overlay mount) and makes it `/`.
///
/// `scratch` holds the size-limited `tmp` and `run` directories that become `/tmp` and `/run`;
/// they live outside the overlay so that the host can collect what they hold afterwards.
pub fn enter_guest_root(
    k: &mut dyn Kernel,
    root: &Path,
    scratch: &Path,
    hostname: &str,
) -> Result<(), KernelError> {
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let none = None::<&str>;

    // Private first, so nothing mounted below propagates back to the host's namespace.
    k.mount(
        none,
        Path::new("/"),
        none,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        none,
    )?;
    k.sethostname(hostname)?;
    // The overlay was mounted by the host, so it is locked in this namespace and pivot_root
    // refuses it; a bind of it onto itself, made here, is ours.
    let root_str = path_str(root);
    k.mount(
        Some(root_str),
        root,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )?;

    // proc after entering the pid namespace: it then shows only the sandbox's processes.
    let noexec = nosuid_nodev | MsFlags::MS_NOEXEC;
    k.mkdir(&root.join("proc"), 0o555)?;
    k.mount(Some("proc"), &root.join("proc"), Some("proc"), noexec, none)?;
    k.mkdir(&root.join("sys"), 0o555)?;
    k.mount(
        Some("sysfs"),
        &root.join("sys"),
        Some("sysfs"),
        noexec | MsFlags::MS_RDONLY,
        none,
    )?;

    build_dev(k, root)?;

    for (from, to) in SCRATCH_BINDS {
        let target = root.join(to);
        k.mkdir(&target, 0o755)?;
        k.mount(
            Some(path_str(&scratch.join(from))),
            &target,
            none,
            MsFlags::MS_BIND,
            none,
        )?;
    }

    // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves the
    // host's tree unreachable from the guest.
    k.chdir(root)?;
    k.pivot_root(Path::new("."), Path::new("."))?;
    k.umount(Path::new("."), MntFlags::MNT_DETACH)?;
    k.chdir(Path::new("/"))
}

fn build_dev(k: &mut dyn Kernel, root: &Path) -> Result<(), KernelError> {
    let dev = root.join("dev");
    let none = None::<&str>;
    k.mkdir(&dev, 0o755)?;
    let tmpfs_flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    k.mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        tmpfs_flags,
        Some("mode=755,size=64k"),
    )?;

    // A user namespace cannot mknod: bind the host's harmless devices onto empty files.
    for name in DEVICES {
        let node = dev.join(name);
        k.create_file(&node)?;
        let host = format!("/dev/{name}");
        k.mount(Some(&host), &node, none, MsFlags::MS_BIND, none)?;
    }

    let pts = dev.join("pts");
    k.mkdir(&pts, 0o755)?;
    let pts_opts = Some("newinstance,ptmxmode=0666,mode=0620");
    k.mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        pts_opts,
    )?;
    k.symlink("pts/ptmx", &dev.join("ptmx"))?;

    let shm = dev.join("shm");
    k.mkdir(&shm, 0o1777)?;
    let shm_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    k.mount(
        Some("tmpfs"),
        &shm,
        Some("tmpfs"),
        shm_flags,
        Some("mode=1777,size=64m"),
    )?;

    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        k.symlink(target, &dev.join(link))?;
    }
    Ok(())
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or("/nonexistent")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::kernel::RecordingKernel;

    #[test]
    fn guest_view_is_built_in_a_safe_order() {
        let mut k = RecordingKernel::default();
        enter_guest_root(&mut k, Path::new("/r"), Path::new("/s"), "web-prod-03").unwrap();
        let pos = |needle: &str| {
            k.calls
                .iter()
                .position(|c| c.starts_with(needle))
                .unwrap_or_else(|| panic!("no call {needle}: {:#?}", k.calls))
        };
        assert_eq!(k.calls[0], "mount - / - MsFlags(MS_REC | MS_PRIVATE) -");
        assert!(pos("mount /r /r -") < pos("mount proc /r/proc proc"));
        assert!(pos("mount proc /r/proc proc") < pos("pivot_root"));
        assert!(pos("mount /dev/null /r/dev/null") < pos("pivot_root"));
        assert!(pos("mount /s/tmp /r/tmp") < pos("pivot_root"));
        assert!(pos("mount devpts /r/dev/pts devpts") > pos("mount tmpfs /r/dev tmpfs"));
        assert_eq!(pos("pivot_root . ."), pos("chdir /r") + 1);
        assert_eq!(
            k.calls[pos("pivot_root") + 1],
            "umount . MntFlags(MNT_DETACH)"
        );
        assert_eq!(k.calls.last().unwrap(), "chdir /");
        assert!(k.calls.contains(&"sethostname web-prod-03".to_string()));
        assert!(k
            .calls
            .iter()
            .any(|c| c.starts_with("mount sysfs /r/sys sysfs") && c.contains("MS_RDONLY")));
    }
}
