//! The seccomp policy of the sample, as data, and its compilation to a BPF program.
//!
//! Three kinds of rule:
//! - `Deny`: the call fails with an errno in the kernel; the monitor never sees it. For calls
//!   that could touch the host kernel's global state or blind the monitor.
//! - `Trace`: the kernel stops the caller for the monitor (`SECCOMP_RET_TRACE`); every other
//!   call runs at native speed. Where the monitor refuses a traced call (mount, module
//!   loading) the kernel refuses it too inside the user namespace, so the refusal does not
//!   rest on the monitor alone.
//! - everything else is allowed.
//!
//! Both x86-64 and i386 system call tables are covered (a 64-bit process can still enter
//! through `int 0x80`); the x32 ABI is denied; any other architecture kills the process.

use libc::{sock_filter, sock_fprog};

/// A system call the policy names, independent of architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sys {
    Execve,
    Execveat,
    Open,
    Openat,
    Openat2,
    Creat,
    Unlink,
    Unlinkat,
    Rename,
    Renameat,
    Renameat2,
    Chmod,
    Fchmod,
    Fchmodat,
    Fchmodat2,
    Utime,
    Utimes,
    Utimensat,
    Futimesat,
    Socket,
    Connect,
    Bind,
    Listen,
    Accept,
    Accept4,
    Sendto,
    Sendmsg,
    Socketcall,
    Ptrace,
    Prctl,
    Mount,
    Umount2,
    Kill,
    Tkill,
    Tgkill,
    Setuid,
    Setgid,
    Setreuid,
    Setregid,
    Setresuid,
    Setresgid,
    Chroot,
    MemfdCreate,
    InitModule,
    FinitModule,
    DeleteModule,
    KexecLoad,
    KexecFileLoad,
    Bpf,
    PerfEventOpen,
    Keyctl,
    AddKey,
    RequestKey,
    Reboot,
    Swapon,
    Swapoff,
    Acct,
    Syslog,
    Settimeofday,
    ClockSettime,
    ClockAdjtime,
    Adjtimex,
    Iopl,
    Ioperm,
    Userfaultfd,
    OpenByHandleAt,
    NameToHandleAt,
    Quotactl,
    LookupDcookie,
    IoUringSetup,
    IoUringEnter,
    IoUringRegister,
    Unshare,
    Setns,
    PivotRoot,
    OpenTree,
    MoveMount,
    Fsopen,
    Fsconfig,
    Fsmount,
    Fspick,
    MountSetattr,
    Vhangup,
    Clone3,
    Clone,
}

/// What the filter does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Deny(i32),
    Trace,
    /// Deny `clone` when its flags ask for new namespaces; allow it otherwise.
    DenyNamespaceClone,
    /// Trace an open whose flags (argument `flags_arg`) write, create or truncate, or lack
    /// `O_CLOEXEC`; let read-only `O_CLOEXEC` opens (the dynamic loader, tar, most libraries:
    /// the hot path) run untraced.
    TraceOpen {
        flags_arg: u32,
    },
}

/// One entry of the policy.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub sys: Sys,
    pub action: Action,
    pub reason: &'static str,
}

const EPERM: i32 = libc::EPERM;

macro_rules! rules {
    ($($sys:ident => $action:expr, $reason:literal;)*) => {
        &[$(Rule { sys: Sys::$sys, action: $action, reason: $reason }),*]
    };
}

/// The policy. Order does not matter: each call has one rule at most.
pub const POLICY: &[Rule] = rules! {
    Execve => Action::Trace, "process images and command lines";
    Execveat => Action::Trace, "process images, fileless execution from a memfd";
    Open => Action::TraceOpen { flags_arg: 1 }, "files created or modified; TracerPid checks";
    Openat => Action::TraceOpen { flags_arg: 2 }, "files created or modified; TracerPid checks";
    Openat2 => Action::Trace, "files created or modified";
    Creat => Action::Trace, "files created";
    Unlink => Action::Trace, "files deleted (hashed before they go)";
    Unlinkat => Action::Trace, "files deleted (hashed before they go)";
    Rename => Action::Trace, "files renamed";
    Renameat => Action::Trace, "files renamed";
    Renameat2 => Action::Trace, "files renamed";
    Chmod => Action::Trace, "files made executable";
    Fchmod => Action::Trace, "files made executable";
    Fchmodat => Action::Trace, "files made executable";
    Fchmodat2 => Action::Trace, "files made executable";
    Utime => Action::Trace, "timestamp changes (timestomping)";
    Utimes => Action::Trace, "timestamp changes (timestomping)";
    Utimensat => Action::Trace, "timestamp changes (timestomping)";
    Futimesat => Action::Trace, "timestamp changes (timestomping)";
    Socket => Action::Trace, "socket family and protocol of later connects";
    Connect => Action::Trace, "network connections with address, port and outcome";
    Bind => Action::Trace, "listening sockets";
    Listen => Action::Trace, "listening sockets";
    Accept => Action::Trace, "accepted connections";
    Accept4 => Action::Trace, "accepted connections";
    Sendto => Action::Trace, "datagrams with a destination address";
    Sendmsg => Action::Trace, "datagrams with a destination address";
    Socketcall => Action::Trace, "i386 multiplexed socket calls";
    Ptrace => Action::Trace, "anti-debugging (PTRACE_TRACEME) and injection";
    Prctl => Action::Trace, "process renaming, dumpable and seccomp changes";
    Mount => Action::Trace, "mount attempts are recorded, then refused";
    Umount2 => Action::Trace, "unmount attempts are recorded, then refused";
    Kill => Action::Trace, "signals sent to other processes";
    Tkill => Action::Trace, "signals sent to other processes";
    Tgkill => Action::Trace, "signals sent to other processes";
    Setuid => Action::Trace, "privilege changes";
    Setgid => Action::Trace, "privilege changes";
    Setreuid => Action::Trace, "privilege changes";
    Setregid => Action::Trace, "privilege changes";
    Setresuid => Action::Trace, "privilege changes";
    Setresgid => Action::Trace, "privilege changes";
    Chroot => Action::Trace, "chroot attempts";
    MemfdCreate => Action::Trace, "anonymous files used for fileless execution";
    InitModule => Action::Trace, "kernel module loading is recorded, then refused";
    FinitModule => Action::Trace, "kernel module loading is recorded, then refused";
    DeleteModule => Action::Trace, "kernel module unloading is recorded, then refused";
    KexecLoad => Action::Deny(EPERM), "would replace the host kernel";
    KexecFileLoad => Action::Deny(EPERM), "would replace the host kernel";
    Bpf => Action::Deny(EPERM), "loads programs into the host kernel";
    PerfEventOpen => Action::Deny(EPERM), "observes the host and widens kernel attack surface";
    Keyctl => Action::Deny(EPERM), "kernel keyrings are not namespaced";
    AddKey => Action::Deny(EPERM), "kernel keyrings are not namespaced";
    RequestKey => Action::Deny(EPERM), "kernel keyrings are not namespaced";
    Reboot => Action::Deny(EPERM), "would end the sandbox's init from inside";
    Swapon => Action::Deny(EPERM), "changes the host's swap";
    Swapoff => Action::Deny(EPERM), "changes the host's swap";
    Acct => Action::Deny(EPERM), "process accounting is host-wide";
    Syslog => Action::Deny(EPERM), "reads or clears the host kernel log";
    Settimeofday => Action::Deny(EPERM), "the clock is host-wide";
    ClockSettime => Action::Deny(EPERM), "the clock is host-wide";
    ClockAdjtime => Action::Deny(EPERM), "the clock is host-wide";
    Adjtimex => Action::Deny(EPERM), "the clock is host-wide";
    Iopl => Action::Deny(EPERM), "raw I/O port access";
    Ioperm => Action::Deny(EPERM), "raw I/O port access";
    Userfaultfd => Action::Deny(EPERM), "a common kernel exploitation primitive";
    OpenByHandleAt => Action::Deny(EPERM), "can reach files outside the sandbox's root";
    NameToHandleAt => Action::Deny(EPERM), "pairs with open_by_handle_at";
    Quotactl => Action::Deny(EPERM), "disk quotas are host-wide";
    LookupDcookie => Action::Deny(EPERM), "kernel profiling interface";
    IoUringSetup => Action::Deny(EPERM), "io_uring performs file and network I/O unseen by seccomp";
    IoUringEnter => Action::Deny(EPERM), "io_uring performs file and network I/O unseen by seccomp";
    IoUringRegister => Action::Deny(EPERM), "io_uring performs file and network I/O unseen by seccomp";
    Unshare => Action::Deny(EPERM), "new namespaces widen kernel attack surface";
    Setns => Action::Deny(EPERM), "joining namespaces";
    PivotRoot => Action::Deny(EPERM), "changing the sandbox's root";
    OpenTree => Action::Deny(EPERM), "new mount API, not observed by the monitor";
    MoveMount => Action::Deny(EPERM), "new mount API, not observed by the monitor";
    Fsopen => Action::Deny(EPERM), "new mount API, not observed by the monitor";
    Fsconfig => Action::Deny(EPERM), "new mount API, not observed by the monitor";
    Fsmount => Action::Deny(EPERM), "new mount API, not observed by the monitor";
    Fspick => Action::Deny(EPERM), "new mount API, not observed by the monitor";
    MountSetattr => Action::Deny(EPERM), "new mount API, not observed by the monitor";
    Vhangup => Action::Deny(EPERM), "hangs up terminals";
    Clone3 => Action::Deny(libc::ENOSYS), "its flags cannot be inspected; libc falls back to clone";
    Clone => Action::DenyNamespaceClone, "new namespaces widen kernel attack surface";
};

/// Looks up the rule for a call.
pub fn rule_for(sys: Sys) -> Option<&'static Rule> {
    POLICY.iter().find(|r| r.sys == sys)
}

/// Which table a system call number belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    I386,
}

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The number of `sys` on `arch`, when that table has it.
pub fn number(sys: Sys, arch: Arch) -> Option<u32> {
    let (x64, x86) = numbers(sys);
    match arch {
        Arch::X86_64 => x64,
        Arch::I386 => x86,
    }
}

/// The call a number stands for.
pub fn lookup(arch: Arch, nr: u64) -> Option<Sys> {
    let nr = u32::try_from(nr).ok()?;
    POLICY
        .iter()
        .map(|r| r.sys)
        .find(|s| number(*s, arch) == Some(nr))
}

/// System call numbers (x86-64, i386), from the kernel's syscall tables.
fn numbers(sys: Sys) -> (Option<u32>, Option<u32>) {
    use Sys::*;
    let (a, b): (i64, i64) = match sys {
        Execve => (59, 11),
        Execveat => (322, 358),
        Open => (2, 5),
        Openat => (257, 295),
        Openat2 => (437, 437),
        Creat => (85, 8),
        Unlink => (87, 10),
        Unlinkat => (263, 301),
        Rename => (82, 38),
        Renameat => (264, 302),
        Renameat2 => (316, 353),
        Chmod => (90, 15),
        Fchmod => (91, 94),
        Fchmodat => (268, 306),
        Fchmodat2 => (452, 452),
        Utime => (132, 30),
        Utimes => (235, 271),
        Utimensat => (280, 320),
        Futimesat => (261, 299),
        Socket => (41, 359),
        Connect => (42, 362),
        Bind => (49, 361),
        Listen => (50, 363),
        Accept => (43, -1),
        Accept4 => (288, 364),
        Sendto => (44, 369),
        Sendmsg => (46, 370),
        Socketcall => (-1, 102),
        Ptrace => (101, 26),
        Prctl => (157, 172),
        Mount => (165, 21),
        Umount2 => (166, 52),
        Kill => (62, 37),
        Tkill => (200, 238),
        Tgkill => (234, 270),
        Setuid => (105, 213),
        Setgid => (106, 214),
        Setreuid => (113, 203),
        Setregid => (114, 204),
        Setresuid => (117, 208),
        Setresgid => (119, 210),
        Chroot => (161, 61),
        MemfdCreate => (319, 356),
        InitModule => (175, 128),
        FinitModule => (313, 350),
        DeleteModule => (176, 129),
        KexecLoad => (246, 283),
        KexecFileLoad => (320, -1),
        Bpf => (321, 357),
        PerfEventOpen => (298, 336),
        Keyctl => (250, 288),
        AddKey => (248, 286),
        RequestKey => (249, 287),
        Reboot => (169, 88),
        Swapon => (167, 87),
        Swapoff => (168, 115),
        Acct => (163, 51),
        Syslog => (103, 103),
        Settimeofday => (164, 79),
        ClockSettime => (227, 264),
        ClockAdjtime => (305, 343),
        Adjtimex => (159, 124),
        Iopl => (172, 110),
        Ioperm => (173, 101),
        Userfaultfd => (323, 374),
        OpenByHandleAt => (304, 342),
        NameToHandleAt => (303, 341),
        Quotactl => (179, 131),
        LookupDcookie => (212, 253),
        IoUringSetup => (425, 425),
        IoUringEnter => (426, 426),
        IoUringRegister => (427, 427),
        Unshare => (272, 310),
        Setns => (308, 346),
        PivotRoot => (155, 217),
        OpenTree => (428, 428),
        MoveMount => (429, 429),
        Fsopen => (430, 430),
        Fsconfig => (431, 431),
        Fsmount => (432, 432),
        Fspick => (433, 433),
        MountSetattr => (442, 442),
        Vhangup => (153, 111),
        Clone3 => (435, 435),
        Clone => (56, 120),
    };
    let known = |n: i64| u32::try_from(n).ok();
    (known(a), known(b))
}

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_TRACE: u32 = libc::SECCOMP_RET_TRACE;
const RET_KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;
const NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

fn ret_errno(errno: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (errno.unsigned_abs() & libc::SECCOMP_RET_DATA)
}

fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

const OPEN_WRITE_FLAGS: u32 =
    (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC) as u32;
const O_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
const LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const JEQ_K: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const JGE_K: u32 = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
const JSET_K: u32 = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
const JA: u32 = libc::BPF_JMP | libc::BPF_JA;
const RET_K: u32 = libc::BPF_RET | libc::BPF_K;
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARG0_LOW: u32 = 16;

/// Compiles [`POLICY`] into a classic BPF program for `seccomp(2)`.
pub fn compile() -> Vec<sock_filter> {
    let x64 = arch_block(Arch::X86_64);
    let x86 = arch_block(Arch::I386);
    let mut prog = vec![
        stmt(LD_W_ABS, OFFSET_ARCH),
        jump(JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(JA, x64.len() as u32),
    ];
    prog.extend(x64);
    prog.push(jump(JEQ_K, AUDIT_ARCH_I386, 1, 0));
    prog.push(stmt(RET_K, RET_KILL_PROCESS));
    prog.extend(x86);
    prog
}

fn arch_block(arch: Arch) -> Vec<sock_filter> {
    let mut block = vec![stmt(LD_W_ABS, OFFSET_NR)];
    if arch == Arch::X86_64 {
        block.push(jump(JGE_K, X32_SYSCALL_BIT, 0, 1));
        block.push(stmt(RET_K, ret_errno(EPERM)));
    }
    let mut clone_nr = None;
    for rule in POLICY {
        let Some(nr) = number(rule.sys, arch) else {
            continue;
        };
        let ret = match rule.action {
            Action::Deny(errno) => ret_errno(errno),
            Action::Trace => RET_TRACE,
            Action::DenyNamespaceClone => {
                clone_nr = Some(nr);
                continue;
            }
            Action::TraceOpen { flags_arg } => {
                // Jumps are relative: skip to the next rule with nr still in A when the call
                // differs; otherwise load the flags and return.
                block.push(jump(JEQ_K, nr, 0, 5));
                block.push(stmt(LD_W_ABS, OFFSET_ARG0_LOW + 8 * flags_arg));
                block.push(jump(JSET_K, OPEN_WRITE_FLAGS, 2, 0));
                block.push(jump(JSET_K, O_CLOEXEC, 0, 1));
                block.push(stmt(RET_K, RET_ALLOW));
                block.push(stmt(RET_K, RET_TRACE));
                continue;
            }
        };
        block.push(jump(JEQ_K, nr, 0, 1));
        block.push(stmt(RET_K, ret));
    }
    if let Some(nr) = clone_nr {
        block.push(jump(JEQ_K, nr, 0, 3));
        block.push(stmt(LD_W_ABS, OFFSET_ARG0_LOW));
        block.push(jump(JSET_K, NAMESPACE_FLAGS, 0, 1));
        block.push(stmt(RET_K, ret_errno(EPERM)));
    }
    block.push(stmt(RET_K, RET_ALLOW));
    block
}

/// Error installing the filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("prctl(PR_SET_NO_NEW_PRIVS) failed: {0}")]
    NoNewPrivs(nix::Error),
    #[error("seccomp(SECCOMP_SET_MODE_FILTER) failed: {0}")]
    Install(nix::Error),
}

/// Sets no_new_privs and installs the filter on the calling thread (and its future children).
pub fn install(prog: &[sock_filter]) -> Result<(), SeccompError> {
    nix::sys::prctl::set_no_new_privs().map_err(SeccompError::NoNewPrivs)?;
    let fprog = sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel copies the program.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const sock_fprog,
        )
    };
    if rc != 0 {
        return Err(SeccompError::Install(nix::Error::last()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny classic-BPF interpreter, enough to run the generated program in tests.
    fn run(prog: &[sock_filter], arch: u32, nr: u32, arg0: u64) -> u32 {
        run_args(prog, arch, nr, [arg0, 0, 0])
    }

    fn run_args(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 3]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let ins = prog[pc];
            let code = u32::from(ins.code);
            pc += 1;
            match code {
                LD_W_ABS => {
                    let o = ins.k as usize;
                    acc = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
                }
                RET_K => return ins.k,
                JA => pc += ins.k as usize,
                JEQ_K | JGE_K | JSET_K => {
                    let taken = match code {
                        JEQ_K => acc == ins.k,
                        JGE_K => acc >= ins.k,
                        _ => acc & ins.k != 0,
                    };
                    pc += usize::from(if taken { ins.jt } else { ins.jf });
                }
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn every_rule_has_a_reason_and_a_number() {
        for rule in POLICY {
            assert!(!rule.reason.is_empty(), "{:?}", rule.sys);
            let (a, b) = numbers(rule.sys);
            assert!(a.is_some() || b.is_some(), "{:?}", rule.sys);
        }
    }

    #[test]
    fn numbers_match_the_libc_table_on_x86_64() {
        assert_eq!(
            number(Sys::Execve, Arch::X86_64),
            Some(libc::SYS_execve as u32)
        );
        assert_eq!(
            number(Sys::Openat, Arch::X86_64),
            Some(libc::SYS_openat as u32)
        );
        assert_eq!(
            number(Sys::Connect, Arch::X86_64),
            Some(libc::SYS_connect as u32)
        );
        assert_eq!(number(Sys::Bpf, Arch::X86_64), Some(libc::SYS_bpf as u32));
        assert_eq!(
            number(Sys::Clone3, Arch::X86_64),
            Some(libc::SYS_clone3 as u32)
        );
        assert_eq!(
            number(Sys::IoUringSetup, Arch::X86_64),
            Some(libc::SYS_io_uring_setup as u32)
        );
        assert_eq!(
            number(Sys::FinitModule, Arch::X86_64),
            Some(libc::SYS_finit_module as u32)
        );
        assert_eq!(number(Sys::Fchmodat2, Arch::X86_64), Some(452));
    }

    #[test]
    fn program_traces_denies_and_allows_as_the_policy_says() {
        let prog = compile();
        let x64 = AUDIT_ARCH_X86_64;
        assert_eq!(run(&prog, x64, 59, 0), RET_TRACE, "execve is traced");
        assert_eq!(run(&prog, x64, 0, 0), RET_ALLOW, "read is allowed");
        assert_eq!(run(&prog, x64, 321, 0), ret_errno(EPERM), "bpf is denied");
        assert_eq!(
            run(&prog, x64, 435, 0),
            ret_errno(libc::ENOSYS),
            "clone3 -> ENOSYS"
        );
        assert_eq!(
            run(&prog, x64, 56, 0x11),
            RET_ALLOW,
            "plain clone (fork) is allowed"
        );
        let newuser = libc::CLONE_NEWUSER as u64;
        assert_eq!(
            run(&prog, x64, 56, newuser),
            ret_errno(EPERM),
            "namespace clone"
        );
        assert_eq!(
            run(&prog, x64, 0x4000_0000 | 59, 0),
            ret_errno(EPERM),
            "x32 ABI"
        );
        let x86 = AUDIT_ARCH_I386;
        assert_eq!(run(&prog, x86, 11, 0), RET_TRACE, "i386 execve is traced");
        assert_eq!(
            run(&prog, x86, 357, 0),
            ret_errno(EPERM),
            "i386 bpf is denied"
        );
        assert_eq!(run(&prog, x86, 3, 0), RET_ALLOW, "i386 read is allowed");
        assert_eq!(
            run(&prog, 0xc000_00b7, 59, 0),
            RET_KILL_PROCESS,
            "aarch64 is killed"
        );
    }

    #[test]
    fn only_writing_or_non_cloexec_opens_are_traced() {
        let prog = compile();
        let x64 = AUDIT_ARCH_X86_64;
        let flags = |f: i32| u64::from(f.unsigned_abs());
        let cloexec = flags(libc::O_CLOEXEC);
        // openat(dirfd, path, flags): flags are the third argument.
        assert_eq!(
            run_args(&prog, x64, 257, [0, 0, cloexec]),
            RET_ALLOW,
            "loader-style open"
        );
        assert_eq!(
            run_args(&prog, x64, 257, [0, 0, 0]),
            RET_TRACE,
            "fopen(\"r\")"
        );
        let w = flags(libc::O_WRONLY | libc::O_CREAT) | cloexec;
        assert_eq!(
            run_args(&prog, x64, 257, [0, 0, w]),
            RET_TRACE,
            "write with O_CLOEXEC"
        );
        let rdwr = flags(libc::O_RDWR) | cloexec;
        assert_eq!(run_args(&prog, x64, 257, [0, 0, rdwr]), RET_TRACE);
        // open(path, flags): the second argument.
        assert_eq!(run_args(&prog, x64, 2, [0, cloexec, 0]), RET_ALLOW);
        assert_eq!(
            run_args(&prog, x64, 2, [0, flags(libc::O_TRUNC), 0]),
            RET_TRACE
        );
        // The rules after the open checks still see the call number.
        assert_eq!(
            run(&prog, x64, 62, 0),
            RET_TRACE,
            "kill after the open rules"
        );
        let x86 = AUDIT_ARCH_I386;
        assert_eq!(
            run_args(&prog, x86, 295, [0, 0, cloexec]),
            RET_ALLOW,
            "i386 openat"
        );
        assert_eq!(run_args(&prog, x86, 5, [0, 0, 0]), RET_TRACE, "i386 open");
    }

    /// Wine needs these unstopped and allowed: 32-bit Windows programs set up their segment
    /// descriptors with modify_ldt (x86-64 154, i386 123), and Wine's threads use
    /// arch_prctl (158) and sigaltstack (131 / 186). None may gain a rule by accident.
    #[test]
    fn calls_wine_needs_are_allowed() {
        let prog = compile();
        for nr in [154, 158, 131] {
            assert_eq!(
                run(&prog, AUDIT_ARCH_X86_64, nr, 0),
                RET_ALLOW,
                "x86-64 {nr}"
            );
        }
        for nr in [123, 186] {
            assert_eq!(run(&prog, AUDIT_ARCH_I386, nr, 0), RET_ALLOW, "i386 {nr}");
        }
    }

    #[test]
    fn lookup_inverts_number() {
        assert_eq!(lookup(Arch::X86_64, 42), Some(Sys::Connect));
        assert_eq!(lookup(Arch::I386, 102), Some(Sys::Socketcall));
        assert_eq!(lookup(Arch::X86_64, 0), None);
    }
}
