//! Decoding the traced system calls: what to record at entry, what to finish at exit.
//!
//! Registers hold raw bits; reading them as `int`, `pid_t` or a return value is a bit-for-bit
//! reinterpretation, so the sign and wrap casts below are the point, not an accident.
#![allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)]

use nix::unistd::Pid;

use super::tracee::{self, SockAddr, AT_FDCWD};
use crate::sandbox::seccomp::{Arch, Sys};

/// The registers of a syscall stop, independent of the ABI the call came through.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub arch: Arch,
    pub nr: u64,
    pub args: [u64; 6],
}

impl Call {
    /// Reads the call from the registers: x86-64 passes rdi, rsi, rdx, r10, r8, r9; the i386
    /// ABI (a code segment of 0x23) passes ebx, ecx, edx, esi, edi, ebp.
    pub fn from_regs(regs: &libc::user_regs_struct) -> Call {
        if regs.cs == 0x23 {
            let low = |r: u64| r & 0xffff_ffff;
            Call {
                arch: Arch::I386,
                nr: low(regs.orig_rax),
                args: [regs.rbx, regs.rcx, regs.rdx, regs.rsi, regs.rdi, regs.rbp].map(low),
            }
        } else {
            Call {
                arch: Arch::X86_64,
                nr: regs.orig_rax,
                args: [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9],
            }
        }
    }

    /// Pointer size of the ABI.
    pub fn word(&self) -> usize {
        match self.arch {
            Arch::X86_64 => 8,
            Arch::I386 => 4,
        }
    }

    /// An `int` argument (fd, pid, signal, flags): the low 32 bits, sign-extended; the
    /// upper half of the register is undefined for an `int` on x86-64.
    pub fn int(&self, i: usize) -> i64 {
        i64::from(self.args[i] as u32 as i32)
    }
}

/// A syscall return value, sign-extended from the ABI's width.
pub fn return_value(arch: Arch, rax: u64) -> i64 {
    match arch {
        Arch::X86_64 => rax as i64,
        Arch::I386 => i64::from(rax as u32 as i32),
    }
}

/// What the monitor must finish when the call returns.
#[derive(Debug, Clone)]
pub enum Pending {
    Exec {
        path: String,
        argv: Vec<String>,
    },
    OpenWrite {
        path: String,
        existed: bool,
    },
    Delete(DeletedFile),
    Rename {
        from: String,
        to: String,
    },
    Executable {
        path: String,
        mode: u32,
    },
    Times {
        path: String,
    },
    Socket {
        domain: i64,
        kind: i64,
    },
    Address {
        op: &'static str,
        fd: i64,
        addr: Option<SockAddr>,
    },
    /// The call was skipped at entry; the tracee must see this return value.
    Refused {
        value: i64,
    },
}

/// A file as it was just before its deletion.
#[derive(Debug, Clone)]
pub struct DeletedFile {
    pub path: String,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub artifact: Option<String>,
    pub note: Option<String>,
}

/// Something the entry alone tells (no need to wait for the return).
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub kind: &'static str,
    pub detail: String,
}

/// The decision at a syscall-entry stop.
#[derive(Debug, Default)]
pub struct Entry {
    pub pending: Option<Pending>,
    pub note: Option<Note>,
    /// Skip the call and make it return `Pending::Refused`'s value.
    pub refuse: bool,
}

/// Paths that are not files a sample drops.
pub fn is_pseudo_path(path: &str) -> bool {
    ["/proc/", "/sys/", "/dev/"]
        .iter()
        .any(|p| path.starts_with(p))
        || path == "/dev"
        || path == "/proc"
}

fn note(kind: &'static str, detail: String) -> Option<Note> {
    Some(Note { kind, detail })
}

const WRITE_FLAGS: i64 = (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC) as i64;

/// Decodes a call at its seccomp stop.
pub fn on_entry(pid: Pid, tgid: i32, sys: Sys, c: &Call) -> Entry {
    let s = |i: usize| tracee::read_string(pid, c.args[i]).unwrap_or_default();
    let path_at = |dirfd: i64, i: usize| tracee::resolve(pid, dirfd, &s(i));
    let mut e = Entry::default();
    match sys {
        Sys::Execve => {
            let argv = tracee::read_string_array(pid, c.args[1], c.word());
            e.pending = Some(Pending::Exec { path: s(0), argv });
        }
        Sys::Execveat => {
            let argv = tracee::read_string_array(pid, c.args[2], c.word());
            let mut path = s(1);
            if path.is_empty() {
                path = tracee::fd_path(pid, c.int(0)).unwrap_or_default();
            }
            e.pending = Some(Pending::Exec { path, argv });
        }
        Sys::Open | Sys::Openat => {
            let (dirfd, at) = if sys == Sys::Open {
                (AT_FDCWD, 0)
            } else {
                (c.int(0), 1)
            };
            let flags = c.int(at + 1);
            let raw = s(at);
            if flags & WRITE_FLAGS != 0 {
                e.pending = open_write(pid, tracee::resolve(pid, dirfd, &raw), flags);
            } else if raw.ends_with("status") {
                // Read-only opens are the hot path (loaders, tar): resolve only candidates.
                e.note = status_check(&tracee::resolve(pid, dirfd, &raw), pid, tgid);
            }
        }
        Sys::Creat => e.pending = open_write(pid, path_at(AT_FDCWD, 0), WRITE_FLAGS),
        Sys::Openat2 => {
            let how = tracee::read_bytes(pid, c.args[2], 8);
            let flags = how.try_into().map(i64::from_le_bytes).unwrap_or(0);
            e.pending = open_write(pid, path_at(c.int(0), 1), flags);
        }
        Sys::Unlink => e.pending = delete(path_at(AT_FDCWD, 0)),
        Sys::Unlinkat if c.int(2) & i64::from(libc::AT_REMOVEDIR) == 0 => {
            e.pending = delete(path_at(c.int(0), 1));
        }
        Sys::Rename => e.pending = rename(path_at(AT_FDCWD, 0), path_at(AT_FDCWD, 1)),
        Sys::Renameat | Sys::Renameat2 => {
            e.pending = rename(path_at(c.int(0), 1), path_at(c.int(2), 3));
        }
        Sys::Chmod => e.pending = executable(path_at(AT_FDCWD, 0), c.args[1]),
        Sys::Fchmodat | Sys::Fchmodat2 => e.pending = executable(path_at(c.int(0), 1), c.args[2]),
        Sys::Fchmod => {
            let path = tracee::fd_path(pid, c.int(0)).unwrap_or_default();
            e.pending = executable(path, c.args[1]);
        }
        Sys::Utime | Sys::Utimes => e.pending = times(path_at(AT_FDCWD, 0)),
        Sys::Futimesat => e.pending = times(path_at(c.int(0), 1)),
        Sys::Utimensat => {
            let path = if c.args[1] == 0 {
                tracee::fd_path(pid, c.int(0)).unwrap_or_default()
            } else {
                path_at(c.int(0), 1)
            };
            e.pending = times(path);
        }
        Sys::Socket => {
            e.pending = Some(Pending::Socket {
                domain: c.int(0),
                kind: c.int(1) & 0xf,
            });
        }
        Sys::Connect | Sys::Bind => {
            let op = if sys == Sys::Connect {
                "connect"
            } else {
                "bind"
            };
            let addr = tracee::read_sockaddr(pid, c.args[1], c.args[2]);
            e.pending = Some(Pending::Address {
                op,
                fd: c.int(0),
                addr,
            });
        }
        Sys::Listen => {
            e.pending = Some(Pending::Address {
                op: "listen",
                fd: c.int(0),
                addr: None,
            });
        }
        Sys::Sendto if c.args[4] != 0 => {
            let addr = tracee::read_sockaddr(pid, c.args[4], c.args[5]);
            e.pending = Some(Pending::Address {
                op: "sendto",
                fd: c.int(0),
                addr,
            });
        }
        Sys::Sendmsg => e.pending = sendmsg(pid, c),
        Sys::Socketcall => e.pending = socketcall(pid, c),
        Sys::Ptrace => ptrace_entry(&mut e, c),
        Sys::Prctl => e.note = prctl_note(pid, c),
        Sys::Mount => {
            let detail = format!("mount {} on {} type {}", s(0), s(1), s(2));
            refuse(&mut e, "mount_attempt", detail, -i64::from(libc::EPERM));
        }
        Sys::Umount2 => {
            refuse(
                &mut e,
                "mount_attempt",
                format!("umount {}", s(0)),
                -i64::from(libc::EPERM),
            );
        }
        Sys::InitModule | Sys::FinitModule | Sys::DeleteModule => {
            let what = match sys {
                Sys::DeleteModule => format!("delete_module {}", s(0)),
                Sys::FinitModule => format!(
                    "finit_module from {}",
                    tracee::fd_path(pid, c.int(0)).unwrap_or_default()
                ),
                _ => "init_module from memory".to_string(),
            };
            refuse(&mut e, "module_load_attempt", what, -i64::from(libc::EPERM));
        }
        Sys::Kill | Sys::Tkill | Sys::Tgkill => e.note = kill_note(tgid, sys, c),
        Sys::Setuid
        | Sys::Setgid
        | Sys::Setreuid
        | Sys::Setregid
        | Sys::Setresuid
        | Sys::Setresgid => {
            let n = if matches!(sys, Sys::Setuid | Sys::Setgid) {
                1
            } else {
                2
            };
            let n = if matches!(sys, Sys::Setresuid | Sys::Setresgid) {
                3
            } else {
                n
            };
            let values: Vec<String> = (0..n).map(|i| c.int(i).to_string()).collect();
            let name = format!("{sys:?}").to_lowercase();
            e.note = note("privilege_change", format!("{name}({})", values.join(", ")));
        }
        Sys::Chroot => e.note = note("chroot", format!("chroot {}", s(0))),
        Sys::MemfdCreate => e.note = note("memfd_create", format!("memfd_create {:?}", s(0))),
        _ => {}
    }
    e
}

fn refuse(e: &mut Entry, kind: &'static str, detail: String, value: i64) {
    e.note = note(kind, format!("{detail} (refused)"));
    e.pending = Some(Pending::Refused { value });
    e.refuse = true;
}

fn open_write(pid: Pid, path: String, flags: i64) -> Option<Pending> {
    if flags & WRITE_FLAGS == 0 || is_pseudo_path(&path) {
        return None;
    }
    let _ = pid;
    let existed = std::fs::symlink_metadata(&path).is_ok();
    Some(Pending::OpenWrite { path, existed })
}

fn status_check(path: &str, pid: Pid, tgid: i32) -> Option<Note> {
    let own = [
        "/proc/self/status".to_string(),
        "/proc/thread-self/status".to_string(),
        format!("/proc/{tgid}/status"),
        format!("/proc/{pid}/status"),
        format!("/proc/self/task/{pid}/status"),
        format!("/proc/{tgid}/task/{pid}/status"),
    ];
    own.contains(&path.to_string()).then(|| Note {
        kind: "tracerpid_check",
        detail: format!("read of {path}, where TracerPid reveals a debugger"),
    })
}

fn delete(path: String) -> Option<Pending> {
    if is_pseudo_path(&path) {
        return None;
    }
    Some(Pending::Delete(DeletedFile {
        path,
        size: None,
        sha256: None,
        artifact: None,
        note: None,
    }))
}

fn rename(from: String, to: String) -> Option<Pending> {
    Some(Pending::Rename { from, to })
}

fn executable(path: String, mode: u64) -> Option<Pending> {
    let mode = (mode & 0o7777) as u32;
    (mode & 0o111 != 0 && !is_pseudo_path(&path)).then_some(Pending::Executable { path, mode })
}

fn times(path: String) -> Option<Pending> {
    (!is_pseudo_path(&path)).then_some(Pending::Times { path })
}

fn sendmsg(pid: Pid, c: &Call) -> Option<Pending> {
    // struct msghdr starts with msg_name (pointer) and msg_namelen (u32).
    let w = c.word();
    let head = tracee::read_bytes(pid, c.args[1], w + 4);
    if head.len() < w + 4 {
        return None;
    }
    let name = if w == 8 {
        u64::from_le_bytes(head[0..8].try_into().ok()?)
    } else {
        u64::from(u32::from_le_bytes(head[0..4].try_into().ok()?))
    };
    if name == 0 {
        return None;
    }
    let len = u32::from_le_bytes(head[w..w + 4].try_into().ok()?);
    let addr = tracee::read_sockaddr(pid, name, u64::from(len));
    Some(Pending::Address {
        op: "sendto",
        fd: c.int(0),
        addr,
    })
}

/// i386 `socketcall(call, args)`: the arguments sit in an array of 32-bit words.
fn socketcall(pid: Pid, c: &Call) -> Option<Pending> {
    let raw = tracee::read_bytes(pid, c.args[1], 24);
    let arg = |i: usize| -> u64 {
        raw.get(i * 4..i * 4 + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, |b| u64::from(u32::from_le_bytes(b)))
    };
    let fd = i64::from(arg(0) as u32 as i32);
    match c.args[0] {
        1 => Some(Pending::Socket {
            domain: arg(0) as i64,
            kind: (arg(1) & 0xf) as i64,
        }),
        2 | 3 => Some(Pending::Address {
            op: if c.args[0] == 3 { "connect" } else { "bind" },
            fd,
            addr: tracee::read_sockaddr(pid, arg(1), arg(2)),
        }),
        4 => Some(Pending::Address {
            op: "listen",
            fd,
            addr: None,
        }),
        11 if arg(4) != 0 => Some(Pending::Address {
            op: "sendto",
            fd,
            addr: tracee::read_sockaddr(pid, arg(4), arg(5)),
        }),
        _ => None,
    }
}

fn ptrace_entry(e: &mut Entry, c: &Call) {
    let request = c.int(0);
    if request == i64::from(libc::PTRACE_TRACEME) {
        // The sample is already traced, so the kernel would refuse; a sample that checks for a
        // debugger this way must see success and go on to its payload.
        e.note = note(
            "ptrace_traceme",
            "ptrace(PTRACE_TRACEME): anti-debugging check; answered with success".into(),
        );
        e.pending = Some(Pending::Refused { value: 0 });
        e.refuse = true;
        return;
    }
    let name = match request as u32 {
        libc::PTRACE_ATTACH => "PTRACE_ATTACH",
        libc::PTRACE_SEIZE => "PTRACE_SEIZE",
        libc::PTRACE_POKETEXT | libc::PTRACE_POKEDATA => "PTRACE_POKEDATA",
        libc::PTRACE_PEEKTEXT | libc::PTRACE_PEEKDATA => "PTRACE_PEEKDATA",
        libc::PTRACE_SETREGS => "PTRACE_SETREGS",
        libc::PTRACE_CONT => "PTRACE_CONT",
        libc::PTRACE_DETACH => "PTRACE_DETACH",
        _ => "other request",
    };
    e.note = note(
        "ptrace",
        format!("ptrace({name} [{request}], pid {})", c.int(1)),
    );
}

fn prctl_note(pid: Pid, c: &Call) -> Option<Note> {
    let option = c.int(0) as i32;
    let detail = match option {
        libc::PR_SET_NAME => {
            let name = tracee::read_string(pid, c.args[1]).unwrap_or_default();
            return note("process_renamed", format!("prctl(PR_SET_NAME, {name:?})"));
        }
        libc::PR_SET_DUMPABLE => format!("prctl(PR_SET_DUMPABLE, {})", c.int(1)),
        libc::PR_SET_SECCOMP => "prctl(PR_SET_SECCOMP)".to_string(),
        libc::PR_SET_PTRACER => format!("prctl(PR_SET_PTRACER, {})", c.int(1)),
        libc::PR_SET_CHILD_SUBREAPER => "prctl(PR_SET_CHILD_SUBREAPER)".to_string(),
        libc::PR_SET_MM => "prctl(PR_SET_MM): rewrites its own memory map fields".to_string(),
        libc::PR_CAPBSET_DROP => format!("prctl(PR_CAPBSET_DROP, {})", c.int(1)),
        _ => return None,
    };
    note("prctl", detail)
}

fn kill_note(tgid: i32, sys: Sys, c: &Call) -> Option<Note> {
    let (target, sig) = match sys {
        Sys::Tgkill => (c.int(0), c.int(2)),
        _ => (c.int(0), c.int(1)),
    };
    if target == i64::from(tgid) || (sys == Sys::Tkill && target > 0) {
        return None;
    }
    let signal = signal_name(sig as i32);
    let whom = match target {
        -1 => "every process it may signal (-1)".to_string(),
        0 => "its own process group (0)".to_string(),
        t if t < 0 => format!("process group {}", -t),
        t => format!("pid {t}"),
    };
    note("kill_other_process", format!("{signal} to {whom}"))
}

/// `SIGKILL`-style name of a signal number.
pub fn signal_name(sig: i32) -> String {
    if sig == 0 {
        return "signal 0 (existence probe)".to_string();
    }
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// `ECONNREFUSED`-style name of an errno.
pub fn errno_name(errno: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(errno))
}

/// The outcome word of a network call.
pub fn net_outcome(op: &str, ret: i64) -> String {
    if ret >= 0 {
        return match op {
            "connect" => "connected",
            "sendto" => "sent",
            _ => "ok",
        }
        .to_string();
    }
    match (-ret) as i32 {
        libc::EINPROGRESS => "in_progress".into(),
        libc::ECONNREFUSED => "refused".into(),
        libc::ENETUNREACH | libc::EHOSTUNREACH => "unreachable".into(),
        libc::ETIMEDOUT => "timed_out".into(),
        libc::EACCES | libc::EPERM => "denied".into(),
        e => format!("error:{}", errno_name(e)),
    }
}

/// Protocol name of a socket's domain and type.
pub fn protocol(domain: i64, kind: i64) -> &'static str {
    match (domain as i32, kind as i32) {
        (libc::AF_UNIX, _) => "unix",
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_STREAM) => "tcp",
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_DGRAM) => "udp",
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_RAW) => "raw",
        (libc::AF_NETLINK, _) => "netlink",
        (libc::AF_PACKET, _) => "packet",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_names() {
        assert_eq!(net_outcome("connect", 0), "connected");
        assert_eq!(
            net_outcome("connect", -i64::from(libc::ECONNREFUSED)),
            "refused"
        );
        assert_eq!(
            net_outcome("connect", -i64::from(libc::ENETUNREACH)),
            "unreachable"
        );
        assert_eq!(
            net_outcome("connect", -i64::from(libc::EINPROGRESS)),
            "in_progress"
        );
        assert_eq!(net_outcome("sendto", 12), "sent");
        assert_eq!(
            net_outcome("bind", -i64::from(libc::EADDRINUSE)),
            "error:EADDRINUSE"
        );
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(0), "signal 0 (existence probe)");
        assert_eq!(protocol(2, 1), "tcp");
        assert_eq!(protocol(10, 2), "udp");
        assert_eq!(protocol(1, 1), "unix");
    }

    #[test]
    fn i386_registers_are_decoded_with_sign_extension() {
        // SAFETY: user_regs_struct is plain old data; all-zero is a valid value.
        let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        regs.cs = 0x23;
        regs.orig_rax = 11;
        regs.rbx = 0xffff_ff9c; // AT_FDCWD as a 32-bit value
        let c = Call::from_regs(&regs);
        assert_eq!(c.arch, Arch::I386);
        assert_eq!(c.int(0), AT_FDCWD);
        assert_eq!(c.word(), 4);
        assert_eq!(return_value(Arch::I386, 0xffff_fffe), -2);
        assert_eq!(return_value(Arch::X86_64, (-2i64) as u64), -2);
    }

    #[test]
    fn kills_of_others_are_noted_but_not_of_self() {
        let call = |nr_args: [u64; 6]| Call {
            arch: Arch::X86_64,
            nr: 62,
            args: nr_args,
        };
        assert_eq!(kill_note(5, Sys::Kill, &call([5, 15, 0, 0, 0, 0])), None);
        let n = kill_note(5, Sys::Kill, &call([(-1i64) as u64, 9, 0, 0, 0, 0])).unwrap();
        assert_eq!(n.detail, "SIGKILL to every process it may signal (-1)");
        let n = kill_note(5, Sys::Kill, &call([7, 15, 0, 0, 0, 0])).unwrap();
        assert_eq!(n.detail, "SIGTERM to pid 7");
    }

    #[test]
    fn pseudo_paths_are_not_files() {
        assert!(is_pseudo_path("/dev/null"));
        assert!(is_pseudo_path("/proc/self/status"));
        assert!(!is_pseudo_path("/devices.txt"));
        assert!(!is_pseudo_path("/tmp/x"));
    }
}
