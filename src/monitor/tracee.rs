//! Reading what a stopped tracee points at: strings, argv arrays, socket addresses, and the
//! paths behind its fds and working directory.
//!
//! Everything read here is hostile input: lengths are capped and a failed read is a value,
//! not an error that stops the monitor.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Component, Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;

/// Longest string read from a tracee.
pub const MAX_STRING: usize = 4096;
/// Most argv entries kept.
pub const MAX_ARGS: usize = 256;
const PAGE: usize = 4096;

/// Set once `process_vm_readv` is refused (a container engine's seccomp profile allows it
/// only with CAP_SYS_PTRACE); reads then go through `/proc/<pid>/mem`, which a tracer may
/// read without that capability.
static VM_READ_REFUSED: AtomicBool = AtomicBool::new(false);

/// Reads `len` bytes at `addr`; fewer when the memory ends.
pub fn read_bytes(pid: Pid, addr: u64, len: usize) -> Vec<u8> {
    if VM_READ_REFUSED.load(Ordering::Relaxed) {
        return read_bytes_from_proc(pid, addr, len);
    }
    let mut out = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let at = addr as usize + done;
        let chunk = (PAGE - at % PAGE).min(len - done);
        let remote = [RemoteIoVec {
            base: at,
            len: chunk,
        }];
        let mut local = [std::io::IoSliceMut::new(&mut out[done..done + chunk])];
        match process_vm_readv(pid, &mut local, &remote) {
            Ok(n) if n > 0 => done += n,
            Err(nix::Error::EPERM | nix::Error::ENOSYS) if done == 0 => {
                VM_READ_REFUSED.store(true, Ordering::Relaxed);
                return read_bytes_from_proc(pid, addr, len);
            }
            _ => break,
        }
    }
    out.truncate(done);
    out
}

fn read_bytes_from_proc(pid: Pid, addr: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let Ok(mem) = std::fs::File::open(format!("/proc/{pid}/mem")) else {
        return Vec::new();
    };
    let mut out = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match mem.read_at(&mut out[done..], addr + done as u64) {
            Ok(n) if n > 0 => done += n,
            _ => break,
        }
    }
    out.truncate(done);
    out
}

/// Reads a NUL-terminated string at `addr` (lossy UTF-8); `None` for a null pointer.
pub fn read_string(pid: Pid, addr: u64) -> Option<String> {
    if addr == 0 {
        return None;
    }
    let mut bytes = Vec::new();
    let mut at = addr;
    while bytes.len() < MAX_STRING {
        let chunk = PAGE - (at as usize % PAGE);
        let part = read_bytes(pid, at, chunk.min(MAX_STRING - bytes.len()));
        if part.is_empty() {
            break;
        }
        if let Some(end) = part.iter().position(|b| *b == 0) {
            bytes.extend_from_slice(&part[..end]);
            return Some(String::from_utf8_lossy(&bytes).into_owned());
        }
        at += part.len() as u64;
        bytes.extend_from_slice(&part);
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Reads a NULL-terminated array of string pointers (argv), with `word` bytes per pointer.
pub fn read_string_array(pid: Pid, addr: u64, word: usize) -> Vec<String> {
    let mut out = Vec::new();
    if addr == 0 {
        return out;
    }
    let raw = read_bytes(pid, addr, MAX_ARGS * word);
    for ptr in raw.chunks_exact(word) {
        let p = if word == 8 {
            u64::from_le_bytes(ptr.try_into().unwrap_or_default())
        } else {
            u64::from(u32::from_le_bytes(ptr.try_into().unwrap_or_default()))
        };
        if p == 0 {
            break;
        }
        out.push(read_string(pid, p).unwrap_or_default());
    }
    out
}

/// A decoded `struct sockaddr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SockAddr {
    Inet { ip: String, port: u16 },
    Unix { path: String },
    Other { family: u16 },
}

/// Decodes a socket address of `len` bytes at `addr`.
pub fn read_sockaddr(pid: Pid, addr: u64, len: u64) -> Option<SockAddr> {
    if addr == 0 || len < 2 {
        return None;
    }
    let bytes = read_bytes(pid, addr, (len as usize).min(128));
    decode_sockaddr(&bytes)
}

/// Decodes socket-address bytes (pure; tested without a tracee).
pub fn decode_sockaddr(b: &[u8]) -> Option<SockAddr> {
    let family = u16::from_le_bytes(b.get(0..2)?.try_into().ok()?);
    let port = |b: &[u8]| u16::from_be_bytes([b[2], b[3]]);
    match i32::from(family) {
        libc::AF_INET if b.len() >= 8 => Some(SockAddr::Inet {
            ip: Ipv4Addr::new(b[4], b[5], b[6], b[7]).to_string(),
            port: port(b),
        }),
        libc::AF_INET6 if b.len() >= 24 => {
            let octets: [u8; 16] = b[8..24].try_into().ok()?;
            Some(SockAddr::Inet {
                ip: Ipv6Addr::from(octets).to_string(),
                port: port(b),
            })
        }
        libc::AF_UNIX => {
            let raw = &b[2..];
            let path = if raw.first() == Some(&0) {
                // Abstract socket: a leading NUL, shown with '@' as ss(8) does.
                let end = raw[1..]
                    .iter()
                    .position(|c| *c == 0)
                    .map_or(raw.len(), |p| p + 1);
                format!("@{}", String::from_utf8_lossy(&raw[1..end]))
            } else {
                let end = raw.iter().position(|c| *c == 0).unwrap_or(raw.len());
                String::from_utf8_lossy(&raw[..end]).into_owned()
            };
            Some(SockAddr::Unix { path })
        }
        _ => Some(SockAddr::Other { family }),
    }
}

/// The path an fd of a tracee refers to.
pub fn fd_path(pid: Pid, fd: i64) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// The working directory of a tracee.
pub fn cwd(pid: Pid) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// `AT_FDCWD` as the kernel passes it in a register.
pub const AT_FDCWD: i64 = libc::AT_FDCWD as i64;

/// Resolves `path` the way the kernel would for `dirfd` (lexically: `.` and `..` folded).
pub fn resolve(pid: Pid, dirfd: i64, path: &str) -> String {
    if path.starts_with('/') {
        return normalize(Path::new(path));
    }
    let base = if dirfd == AT_FDCWD {
        cwd(pid)
    } else {
        fd_path(pid, dirfd)
    };
    let base = base.unwrap_or_else(|| "/".to_string());
    normalize(&Path::new(&base).join(path))
}

/// Folds `.` and `..` without touching the file system.
pub fn normalize(path: &Path) -> String {
    let mut out = PathBuf::from("/");
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out.to_string_lossy().into_owned()
}

/// Reads a small /proc file with one `read` (the monitor's hot path avoids the size probe
/// and the second read that `read_to_string` makes).
pub fn read_proc(path: &str) -> Option<String> {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    let n = std::fs::File::open(path).ok()?.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Reads `key:` from the text of a `/proc/<pid>/status` file.
pub fn field(status: &str, key: &str) -> Option<String> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim().to_string())
    })
}

/// Reads `key:` from `/proc/<pid>/status`.
pub fn status_field(pid: Pid, key: &str) -> Option<String> {
    field(&read_proc(&format!("/proc/{pid}/status"))?, key)
}

/// Effective uid of a task: the owner of its /proc directory.
pub fn euid(pid: Pid) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
}

/// The thread-group id of a task.
pub fn tgid(pid: Pid) -> Option<i32> {
    status_field(pid, "Tgid")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddrs_decode() {
        let mut v4 = vec![2u8, 0, 0x01, 0xbb, 192, 0, 2, 7];
        v4.extend([0; 8]);
        assert_eq!(
            decode_sockaddr(&v4),
            Some(SockAddr::Inet {
                ip: "192.0.2.7".into(),
                port: 443
            })
        );
        let mut v6 = vec![10u8, 0, 0, 80, 0, 0, 0, 0];
        v6.extend([0; 15]);
        v6.push(1);
        assert_eq!(
            decode_sockaddr(&v6),
            Some(SockAddr::Inet {
                ip: "::1".into(),
                port: 80
            })
        );
        let mut un = vec![1u8, 0];
        un.extend(b"/run/x.sock\0junk");
        assert_eq!(
            decode_sockaddr(&un),
            Some(SockAddr::Unix {
                path: "/run/x.sock".into()
            })
        );
        let mut abs = vec![1u8, 0, 0];
        abs.extend(b"hidden");
        assert_eq!(
            decode_sockaddr(&abs),
            Some(SockAddr::Unix {
                path: "@hidden".into()
            })
        );
        assert_eq!(
            decode_sockaddr(&[2u8, 0, 1]),
            Some(SockAddr::Other { family: 2 })
        );
        assert_eq!(decode_sockaddr(&[1u8]), None);
    }

    #[test]
    fn paths_fold_dots() {
        assert_eq!(normalize(Path::new("/a/b/../c/./d")), "/a/c/d");
        assert_eq!(normalize(Path::new("/../../etc")), "/etc");
        assert_eq!(resolve(Pid::this(), AT_FDCWD, "/x/../y"), "/y");
    }

    #[test]
    fn own_memory_reads_back() {
        let s = std::ffi::CString::new("hello tracee").unwrap();
        let pid = Pid::this();
        assert_eq!(
            read_string(pid, s.as_ptr() as u64).as_deref(),
            Some("hello tracee")
        );
        let a = std::ffi::CString::new("a").unwrap();
        let b = std::ffi::CString::new("bb").unwrap();
        let arr: [u64; 3] = [a.as_ptr() as u64, b.as_ptr() as u64, 0];
        assert_eq!(
            read_string_array(pid, arr.as_ptr() as u64, 8),
            vec!["a", "bb"]
        );
        assert_eq!(read_string(pid, 0), None);
    }
}
