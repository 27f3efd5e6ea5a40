//! A seam over the kernel calls that build the guest's view, so that their order is tested
//! without root: [`RealKernel`] makes the calls, [`RecordingKernel`] writes them down.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// A kernel call that failed, with what it was called on.
#[derive(Debug, thiserror::Error)]
#[error("{call} {path}: {source}")]
pub struct KernelError {
    pub call: &'static str,
    pub path: PathBuf,
    pub source: nix::Error,
}

/// The calls the guest set-up makes.
pub trait Kernel {
    fn mount(
        &mut self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), KernelError>;
    fn umount(&mut self, target: &Path, flags: MntFlags) -> Result<(), KernelError>;
    fn mkdir(&mut self, path: &Path, mode: u32) -> Result<(), KernelError>;
    fn create_file(&mut self, path: &Path) -> Result<(), KernelError>;
    fn symlink(&mut self, target: &str, link: &Path) -> Result<(), KernelError>;
    fn chdir(&mut self, path: &Path) -> Result<(), KernelError>;
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> Result<(), KernelError>;
    fn sethostname(&mut self, name: &str) -> Result<(), KernelError>;
}

fn err<'a>(call: &'static str, path: &'a Path) -> impl FnOnce(nix::Error) -> KernelError + 'a {
    move |source| KernelError {
        call,
        path: path.to_path_buf(),
        source,
    }
}

/// Makes the calls for real.
pub struct RealKernel;

impl Kernel for RealKernel {
    fn mount(
        &mut self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), KernelError> {
        nix::mount::mount(source, target, fstype, flags, data).map_err(err("mount", target))
    }

    fn umount(&mut self, target: &Path, flags: MntFlags) -> Result<(), KernelError> {
        nix::mount::umount2(target, flags).map_err(err("umount", target))
    }

    fn mkdir(&mut self, path: &Path, mode: u32) -> Result<(), KernelError> {
        match nix::unistd::mkdir(path, nix::sys::stat::Mode::from_bits_truncate(mode)) {
            Ok(()) | Err(nix::Error::EEXIST) => Ok(()),
            Err(e) => Err(err("mkdir", path)(e)),
        }
    }

    fn create_file(&mut self, path: &Path) -> Result<(), KernelError> {
        use nix::fcntl::OFlag;
        let flags = OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(path, flags, nix::sys::stat::Mode::from_bits_truncate(0o644))
            .map_err(err("create", path))?;
        nix::unistd::close(fd).map_err(err("close", path))
    }

    fn symlink(&mut self, target: &str, link: &Path) -> Result<(), KernelError> {
        nix::unistd::symlinkat(target, None, link).map_err(err("symlink", link))
    }

    fn chdir(&mut self, path: &Path) -> Result<(), KernelError> {
        nix::unistd::chdir(path).map_err(err("chdir", path))
    }

    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> Result<(), KernelError> {
        nix::unistd::pivot_root(new_root, put_old).map_err(err("pivot_root", new_root))
    }

    fn sethostname(&mut self, name: &str) -> Result<(), KernelError> {
        nix::unistd::sethostname(name).map_err(err("sethostname", Path::new(name)))
    }
}

/// Writes every call down as one line; fails nothing.
#[derive(Debug, Default)]
pub struct RecordingKernel {
    pub calls: Vec<String>,
}

impl Kernel for RecordingKernel {
    fn mount(
        &mut self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), KernelError> {
        self.calls.push(format!(
            "mount {} {} {} {:?} {}",
            source.unwrap_or("-"),
            target.display(),
            fstype.unwrap_or("-"),
            flags,
            data.unwrap_or("-")
        ));
        Ok(())
    }

    fn umount(&mut self, target: &Path, flags: MntFlags) -> Result<(), KernelError> {
        self.calls
            .push(format!("umount {} {:?}", target.display(), flags));
        Ok(())
    }

    fn mkdir(&mut self, path: &Path, mode: u32) -> Result<(), KernelError> {
        self.calls
            .push(format!("mkdir {} {mode:o}", path.display()));
        Ok(())
    }

    fn create_file(&mut self, path: &Path) -> Result<(), KernelError> {
        self.calls.push(format!("create {}", path.display()));
        Ok(())
    }

    fn symlink(&mut self, target: &str, link: &Path) -> Result<(), KernelError> {
        self.calls
            .push(format!("symlink {} -> {target}", link.display()));
        Ok(())
    }

    fn chdir(&mut self, path: &Path) -> Result<(), KernelError> {
        self.calls.push(format!("chdir {}", path.display()));
        Ok(())
    }

    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> Result<(), KernelError> {
        self.calls.push(format!(
            "pivot_root {} {}",
            new_root.display(),
            put_old.display()
        ));
        Ok(())
    }

    fn sethostname(&mut self, name: &str) -> Result<(), KernelError> {
        self.calls.push(format!("sethostname {name}"));
        Ok(())
    }
}
