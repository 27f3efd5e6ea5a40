//! The ptrace loop: start the sample, follow every task it makes, decode traced calls.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::BufWriter;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::ptrace::{self, Event as PtraceEvent, Options};
use nix::sys::signal::{raise, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use super::events::Event;
use super::files::{capture_deleted, ImageHashes};
use super::sink::Sink;
use super::syscalls::{self, Call, Entry, Pending};
use super::{now_ns, tracee, MonitorSetup, StopPolicy};
use crate::sandbox::seccomp;

/// How the monitor's run ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonitorEnd {
    /// 0 when the stream is complete.
    pub code: i32,
    /// The monitor killed the sample at the deadline of its stop policy.
    pub timed_out: bool,
    /// The monitor killed the sample when it reached the policy's task cap.
    pub pids_stopped: bool,
}

/// Why the monitor is ending the run itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopping {
    Deadline,
    Tasks,
}

/// One traced task (thread).
struct Task {
    tgid: i32,
    /// The task has had its first (attach) stop.
    attached: bool,
    pending: Option<Pending>,
    /// The stop after a seccomp stop was a second syscall-entry stop (gVisor's order).
    entry_again: bool,
}

/// Socket families and types by (process, fd), to name the protocol of a connect.
type Sockets = HashMap<(i32, i64), (i64, i64)>;

struct Tracer {
    sink: Sink<BufWriter<std::fs::File>>,
    tasks: HashMap<i32, Task>,
    sockets: Sockets,
    hashes: ImageHashes,
    artifacts: OwnedFd,
    artifact_max: u64,
    hash_max: u64,
    /// The sample's first process, until it has exec'd: if its exec fails, the reason comes
    /// through this pipe (its write end closes on a successful exec).
    first_exec: Option<(i32, String, OwnedFd)>,
    policy: StopPolicy,
    stopping: Option<Stopping>,
}

/// Starts the sample and records until its last process is gone.
pub fn run(setup: MonitorSetup) -> MonitorEnd {
    // A sample may not read or trace its monitor: /proc/1/mem, ptrace attach and
    // /proc/1/fd all need the monitor to be dumpable.
    let _ = nix::sys::prctl::set_dumpable(false);
    let setup_argv0 = setup
        .argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (child, exec_errors) = match start_sample(&setup) {
        Ok(started) => started,
        Err(e) => {
            eprintln!("monitor: cannot start the sample: {e}");
            return MonitorEnd {
                code: 2,
                ..MonitorEnd::default()
            };
        }
    };
    let mut t = Tracer {
        sink: Sink::new(BufWriter::new(setup.events)),
        tasks: HashMap::new(),
        sockets: HashMap::new(),
        hashes: ImageHashes::new(setup.hash_max_bytes),
        artifacts: setup.artifacts,
        artifact_max: setup.artifact_max_bytes,
        hash_max: setup.hash_max_bytes,
        first_exec: None,
        policy: setup.stop,
        stopping: None,
    };
    t.tasks.insert(
        child.as_raw(),
        Task {
            tgid: child.as_raw(),
            attached: true,
            pending: None,
            entry_again: false,
        },
    );
    let argv0 = setup_argv0.clone();
    t.first_exec = Some((child.as_raw(), argv0, exec_errors));
    t.sink.emit(Event::Start {
        t: now_ns(),
        pid: child.as_raw(),
    });
    let _ = ptrace::cont(child, None);
    let ticking = t.policy.deadline_ns.is_some() && start_ticker();
    t.event_loop(ticking);
    t.sink.finish(now_ns());
    MonitorEnd {
        code: 0,
        timed_out: t.stopping == Some(Stopping::Deadline),
        pids_stopped: t.stopping == Some(Stopping::Tasks),
    }
}

/// Interrupts the monitor's blocking waits every `TICK_MS`, so that a deadline is noticed
/// even while the sample sleeps and makes no traced call.
const TICK_MS: i64 = 20;

extern "C" fn on_tick(_: libc::c_int) {}

fn start_ticker() -> bool {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    // No SA_RESTART: the point is that waitpid returns EINTR.
    let action = SigAction::new(
        SigHandler::Handler(on_tick),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler does nothing, which is async-signal-safe.
    if unsafe { sigaction(Signal::SIGALRM, &action) }.is_err() {
        return false;
    }
    let tick = libc::timeval {
        tv_sec: 0,
        tv_usec: TICK_MS * 1000,
    };
    let timer = libc::itimerval {
        it_interval: tick,
        it_value: tick,
    };
    // SAFETY: setitimer reads the struct we own; a null old value is allowed.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) == 0 }
}

/// Forks the sample; it stops itself under ptrace, installs its seccomp filter and execs.
fn start_sample(setup: &MonitorSetup) -> nix::Result<(Pid, OwnedFd)> {
    let (errors_r, errors_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let argv: Vec<&CString> = setup.argv.iter().collect();
    let env: Vec<&CString> = setup.env.iter().collect();
    let stdio: Vec<i32> = setup.stdio.iter().map(|f| f.as_raw_fd()).collect();
    // SAFETY: the monitor is single-threaded, so the child may run arbitrary code after fork.
    match unsafe { fork() }? {
        ForkResult::Child => {
            sample_child(setup, &argv, &env, &stdio, errors_w.as_raw_fd());
            // SAFETY: _exit is always safe; it skips destructors the parent still owns.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => {
            drop(errors_w);
            match waitpid(child, Some(WaitPidFlag::__WALL))? {
                WaitStatus::Stopped(_, Signal::SIGSTOP) => {}
                other => {
                    eprintln!("monitor: sample did not stop as expected: {other:?}");
                    return Err(nix::Error::ECHILD);
                }
            }
            let options = Options::PTRACE_O_TRACESYSGOOD
                | Options::PTRACE_O_TRACESECCOMP
                | Options::PTRACE_O_TRACEFORK
                | Options::PTRACE_O_TRACEVFORK
                | Options::PTRACE_O_TRACECLONE
                | Options::PTRACE_O_TRACEEXEC
                | Options::PTRACE_O_EXITKILL;
            ptrace::setoptions(child, options)?;
            Ok((child, errors_r))
        }
    }
}

/// Runs in the forked child, before exec. Any failure ends in `_exit(127)` by the caller.
fn sample_child(
    setup: &MonitorSetup,
    argv: &[&CString],
    env: &[&CString],
    stdio: &[i32],
    exec_errors: i32,
) {
    let _ = nix::unistd::setsid();
    let trace_high = match &setup.trace {
        Some(fd) => match nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD(64)) {
            Ok(high) => Some(high),
            Err(_) => return,
        },
        None => None,
    };
    // Inherited from the monitor; the monitor must be able to read this process's memory.
    let _ = nix::sys::prctl::set_dumpable(true);
    for (target, fd) in (0..).zip(stdio) {
        if nix::unistd::dup2(*fd, target).is_err() {
            return;
        }
    }
    // fd 3 reports a failed exec to the monitor; it closes by itself on a successful one.
    if nix::unistd::dup2(exec_errors, 3).is_err() {
        return;
    }
    let cloexec = nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC);
    let _ = nix::fcntl::fcntl(3, cloexec);
    // fd 4: the trace pipe, when there is one (moved from a high number first so that the
    // dup2 calls above cannot have overwritten it).
    let mut first_closed = 4u32;
    if let Some(high) = trace_high {
        if nix::unistd::dup2(high, 4).is_err() {
            return;
        }
        first_closed = 5;
    }
    // SAFETY: close_range only closes descriptors; nothing in this process uses them after.
    unsafe { libc::syscall(libc::SYS_close_range, first_closed, u32::MAX, 0u32) };
    // The monitor is shielded from the OOM killer; the sample must not be.
    let _ = std::fs::write("/proc/self/oom_score_adj", "0");
    if nix::unistd::chdir(setup.cwd.as_c_str()).is_err() {
        return;
    }
    if ptrace::traceme().is_err() || raise(Signal::SIGSTOP).is_err() {
        return;
    }
    if setup.drop_capabilities && drop_capabilities().is_err() {
        return;
    }
    if seccomp::install(&setup.filter).is_err() {
        return;
    }
    let Err(errno) = nix::unistd::execve(argv[0], argv, env);
    let _ = nix::unistd::write(
        // SAFETY: fd 3 was set up above and stays open until this process exits.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(3) },
        &(errno as i32).to_le_bytes(),
    );
}

/// Empties the effective, permitted and inheritable sets and the ambient set. With
/// `no_new_privs` (set by the seccomp install that follows) no later exec can regain any.
fn drop_capabilities() -> nix::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    let _ = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    // SAFETY: capset reads a v3 header and two data structs, both ours and alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

impl Tracer {
    /// The first process ended before any exec: its error pipe says why.
    fn report_first_exec_failure(&mut self, pid: i32) {
        let Some((root, path, pipe)) = self.first_exec.take() else {
            return;
        };
        if root != pid {
            self.first_exec = Some((root, path, pipe));
            return;
        }
        let mut raw = [0u8; 4];
        if nix::unistd::read(pipe.as_raw_fd(), &mut raw) == Ok(4) {
            self.sink.emit(Event::ExecFailed {
                t: now_ns(),
                pid,
                path,
                errno: syscalls::errno_name(i32::from_le_bytes(raw)),
            });
        }
    }

    fn event_loop(&mut self, ticking: bool) {
        loop {
            if ticking && self.stopping.is_none() {
                if let Some(deadline) = self.policy.deadline_ns {
                    if now_ns() >= deadline {
                        self.stop(Stopping::Deadline);
                    }
                }
            }
            let status = match waitpid(None, Some(WaitPidFlag::__WALL)) {
                Ok(s) => s,
                Err(nix::Error::EINTR) => continue,
                Err(_) => return, // ECHILD: nothing left
            };
            match status {
                WaitStatus::Exited(pid, code) => self.on_exit(pid, Some(code), None),
                WaitStatus::Signaled(pid, sig, _) => self.on_exit(pid, None, Some(sig)),
                WaitStatus::PtraceEvent(pid, _, ev) => self.on_ptrace_event(pid, ev),
                WaitStatus::PtraceSyscall(pid) => self.on_syscall_exit(pid),
                WaitStatus::Stopped(pid, sig) => self.on_signal_stop(pid, sig),
                _ => {}
            }
        }
    }

    /// Kills every process of the sample; the loop then reaps them and ends.
    fn stop(&mut self, why: Stopping) {
        if self.stopping.is_none() {
            self.stopping = Some(why);
        }
        if nix::unistd::getpid().as_raw() == 1 {
            // As the init of its own pid namespace: everything else in it is the sample's.
            let _ = nix::sys::signal::kill(Pid::from_raw(-1), Signal::SIGKILL);
        }
        let tgids: Vec<i32> = self.tasks.values().map(|t| t.tgid).collect();
        for tgid in tgids {
            let _ = nix::sys::signal::kill(Pid::from_raw(tgid), Signal::SIGKILL);
        }
    }

    fn on_exit(&mut self, pid: Pid, code: Option<i32>, signal: Option<Signal>) {
        let Some(task) = self.tasks.remove(&pid.as_raw()) else {
            return;
        };
        self.report_first_exec_failure(pid.as_raw());
        if task.tgid != pid.as_raw() {
            return; // a thread; its process goes on
        }
        self.sockets.retain(|(p, _), _| *p != task.tgid);
        self.sink.emit(Event::Exit {
            t: now_ns(),
            pid: pid.as_raw(),
            code,
            signal: signal.map(|s| s.as_str().to_string()),
        });
    }

    fn on_signal_stop(&mut self, pid: Pid, sig: Signal) {
        let raw = pid.as_raw();
        let first_stop = self.tasks.get(&raw).is_none_or(|t| !t.attached);
        if first_stop && sig == Signal::SIGSTOP {
            // A new task's attach stop, possibly seen before its parent's fork event.
            self.register(pid, None);
            if let Some(t) = self.tasks.get_mut(&raw) {
                t.attached = true;
            }
            let _ = ptrace::cont(pid, None);
            return;
        }
        let group_stop = matches!(
            sig,
            Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU
        ) && ptrace::getsiginfo(pid) == Err(nix::Error::EINVAL);
        let inject = if group_stop { None } else { Some(sig) };
        let _ = ptrace::cont(pid, inject);
    }

    /// Adds a task the first time it is seen. `forked_by` is set when a fork or vfork event
    /// announced it (always a new process); otherwise /proc tells thread or process.
    fn register(&mut self, pid: Pid, forked_by: Option<Pid>) {
        let raw = pid.as_raw();
        if self.tasks.contains_key(&raw) {
            return;
        }
        self.enforce_task_cap(pid);
        let status = match forked_by {
            Some(_) => String::new(),
            None => tracee::read_proc(&format!("/proc/{raw}/status")).unwrap_or_default(),
        };
        let field = |key: &str| -> Option<i32> { tracee::field(&status, key)?.parse().ok() };
        let tgid = field("Tgid").unwrap_or(raw);
        let t = now_ns();
        if tgid != raw {
            self.tasks.insert(raw, task(tgid));
            self.sink.emit(Event::Thread {
                t,
                pid: tgid,
                tid: raw,
            });
            return;
        }
        let ppid = forked_by
            .map(|p| self.tgid_of(p))
            .or_else(|| field("PPid"))
            .unwrap_or(0);
        self.tasks.insert(raw, task(raw));
        let inherited: Vec<_> = self
            .sockets
            .iter()
            .filter(|((p, _), _)| *p == ppid)
            .map(|((_, fd), v)| ((raw, *fd), *v))
            .collect();
        self.sockets.extend(inherited);
        self.sink.emit(Event::Fork { t, pid: raw, ppid });
    }

    /// The sample is stopped once it holds as many tasks as the policy allows (the monitor
    /// counts as one, as it does in the pids limit); a task born while stopping dies at once.
    fn enforce_task_cap(&mut self, new: Pid) {
        if self.stopping.is_some() {
            let _ = nix::sys::signal::kill(new, Signal::SIGKILL);
            return;
        }
        let Some(max) = self.policy.max_tasks else {
            return;
        };
        if self.tasks.len() as u64 + 2 >= max {
            self.stop(Stopping::Tasks);
            let _ = nix::sys::signal::kill(new, Signal::SIGKILL);
        }
    }

    fn tgid_of(&self, pid: Pid) -> i32 {
        self.tasks
            .get(&pid.as_raw())
            .map_or(pid.as_raw(), |t| t.tgid)
    }

    fn on_ptrace_event(&mut self, pid: Pid, ev: i32) {
        const FORK: i32 = PtraceEvent::PTRACE_EVENT_FORK as i32;
        const VFORK: i32 = PtraceEvent::PTRACE_EVENT_VFORK as i32;
        const CLONE: i32 = PtraceEvent::PTRACE_EVENT_CLONE as i32;
        const EXEC: i32 = PtraceEvent::PTRACE_EVENT_EXEC as i32;
        const SECCOMP: i32 = PtraceEvent::PTRACE_EVENT_SECCOMP as i32;
        match ev {
            FORK | VFORK | CLONE => {
                if let Ok(new) = ptrace::getevent(pid) {
                    let forked_by = (ev != CLONE).then_some(pid);
                    self.register(Pid::from_raw(new as i32), forked_by);
                }
                let _ = ptrace::cont(pid, None);
            }
            EXEC => self.on_exec(pid),
            SECCOMP => self.on_syscall_entry(pid),
            _ => {
                let _ = ptrace::cont(pid, None);
            }
        }
    }

    fn on_exec(&mut self, pid: Pid) {
        let raw = pid.as_raw();
        // An exec from a non-leader thread takes over the leader's pid.
        let former = ptrace::getevent(pid).map(|f| f as i32).unwrap_or(raw);
        let mut pending = None;
        if former != raw {
            if let Some(old) = self.tasks.remove(&former) {
                pending = old.pending;
            }
        }
        let task = self.tasks.entry(raw).or_insert_with(|| task(raw));
        task.tgid = raw;
        let pending = pending.or_else(|| task.pending.take());
        let argv = match pending {
            Some(Pending::Exec { argv, .. }) => argv,
            _ => cmdline(pid),
        };
        let image = std::fs::read_link(format!("/proc/{raw}/exe"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let t = now_ns();
        if image.starts_with("/memfd:") {
            self.sink.emit(Event::Note {
                t,
                pid: raw,
                kind: "fileless_execution".into(),
                detail: format!("executed an anonymous memory file: {image}"),
            });
        }
        let uid = tracee::euid(pid);
        let cwd = tracee::cwd(pid).unwrap_or_default();
        // Resume first (the execve's exit stop follows when entry asked for it), then hash:
        // a running program's image cannot change (ETXTBSY), and hashing a large one must not
        // hold the sample back.
        let _ = ptrace::cont(pid, None);
        if self
            .first_exec
            .as_ref()
            .is_some_and(|(root, _, _)| *root == raw)
        {
            self.first_exec = None;
        }
        let image_sha256 = self.hashes.of_process(raw);
        self.sink.emit(Event::Exec {
            t,
            pid: raw,
            image,
            argv,
            cwd,
            uid,
            image_sha256,
        });
    }

    fn on_syscall_entry(&mut self, pid: Pid) {
        let raw = pid.as_raw();
        let tgid = self.tgid_of(pid);
        let Ok(mut regs) = ptrace::getregs(pid) else {
            let _ = ptrace::cont(pid, None);
            return;
        };
        let call = Call::from_regs(&regs);
        let Some(sys) = seccomp::lookup(call.arch, call.nr) else {
            let _ = ptrace::cont(pid, None);
            return;
        };
        let mut entry: Entry = syscalls::on_entry(pid, tgid, sys, &call);
        if let Some(note) = entry.note.take() {
            self.sink.emit(Event::Note {
                t: now_ns(),
                pid: tgid,
                kind: note.kind.into(),
                detail: note.detail,
            });
        }
        if let Some(Pending::Delete(file)) = &mut entry.pending {
            *file = capture_deleted(
                &file.path,
                &self.artifacts,
                self.artifact_max,
                self.hash_max,
            );
        }
        if entry.refuse {
            // Skipped at the seccomp stop with its result set there (seccomp(2)): no stop on
            // return is needed, which gVisor's different stop order would also confuse.
            regs.orig_rax = u64::MAX;
            if let Some(Pending::Refused { value }) = entry.pending.take() {
                regs.rax = value.cast_unsigned();
            }
            let _ = ptrace::setregs(pid, regs);
        }
        // A successful exec is reported by its exec event, so an exec is not stopped again on
        // return: one round trip less before the sample's first instruction. The first
        // process's failure comes through its error pipe instead.
        let exec = matches!(entry.pending, Some(Pending::Exec { .. }));
        let stop_on_return = entry.pending.is_some() && !exec;
        match entry.pending {
            Some(p) if stop_on_return => {
                self.tasks.entry(raw).or_insert_with(|| task(tgid)).pending = Some(p);
                let _ = ptrace::syscall(pid, None);
            }
            Some(p) => {
                self.tasks.entry(raw).or_insert_with(|| task(tgid)).pending = Some(p);
                let _ = ptrace::cont(pid, None);
            }
            None => {
                let _ = ptrace::cont(pid, None);
            }
        }
    }

    fn on_syscall_exit(&mut self, pid: Pid) {
        let raw = pid.as_raw();
        let tgid = self.tgid_of(pid);
        let pending = self.tasks.get_mut(&raw).and_then(|t| t.pending.take());
        let Some(pending) = pending else {
            let _ = ptrace::cont(pid, None);
            return;
        };
        let Ok(regs) = ptrace::getregs(pid) else {
            let _ = ptrace::cont(pid, None);
            return;
        };
        let arch = Call::from_regs(&regs).arch;
        let ret = syscalls::return_value(arch, regs.rax);
        if self.is_entry_stop(raw, ret) {
            // Linux before 4.8, and gVisor, stop at the call's entry once more after the
            // seccomp stop; its result comes at the next stop.
            if let Some(t) = self.tasks.get_mut(&raw) {
                t.pending = Some(pending);
                t.entry_again = true;
            }
            let _ = ptrace::syscall(pid, None);
            return;
        }
        if let Some(t) = self.tasks.get_mut(&raw) {
            t.entry_again = false;
        }
        self.finish(tgid, pending, ret);
        let _ = ptrace::cont(pid, None);
    }

    /// Whether a syscall stop that follows a seccomp stop is an entry stop. The kernel says so
    /// through PTRACE_GET_SYSCALL_INFO; where that is missing (gVisor), an entry stop shows
    /// -ENOSYS in the return register, and only one entry stop is taken per call.
    fn is_entry_stop(&self, pid: i32, ret: i64) -> bool {
        match syscall_stop_op(pid) {
            Some(op) => op == PTRACE_SYSCALL_INFO_ENTRY,
            None => {
                ret == -i64::from(libc::ENOSYS)
                    && self.tasks.get(&pid).is_some_and(|t| !t.entry_again)
            }
        }
    }

    /// Emits the record of a call that returned `ret`.
    fn finish(&mut self, pid: i32, pending: Pending, ret: i64) {
        let t = now_ns();
        let ok = ret >= 0;
        let ev = match pending {
            Pending::Exec { path, .. } if !ok => Event::ExecFailed {
                t,
                pid,
                path,
                errno: syscalls::errno_name((-ret) as i32),
            },
            Pending::OpenWrite { path, existed } if ok => Event::FileWrite {
                t,
                pid,
                path,
                created: !existed,
            },
            Pending::Delete(f) if ok => Event::FileDelete {
                t,
                pid,
                path: f.path,
                size: f.size,
                sha256: f.sha256,
                artifact: f.artifact,
                note: f.note,
            },
            Pending::Rename { from, to } if ok => Event::FileRename { t, pid, from, to },
            Pending::Executable { path, mode } if ok => {
                Event::FileExecutable { t, pid, path, mode }
            }
            Pending::Times { path } if ok => Event::FileTimes { t, pid, path },
            Pending::Socket { domain, kind } => {
                if ok {
                    self.sockets.insert((pid, ret), (domain, kind));
                }
                return;
            }
            Pending::Address { op, fd, addr } => self.net_event(t, pid, op, fd, addr, ret),
            _ => return,
        };
        self.sink.emit(ev);
    }

    fn net_event(
        &self,
        t: u64,
        pid: i32,
        op: &'static str,
        fd: i64,
        addr: Option<tracee::SockAddr>,
        ret: i64,
    ) -> Event {
        let (domain, kind) = self.sockets.get(&(pid, fd)).copied().unwrap_or((-1, -1));
        let mut protocol = syscalls::protocol(domain, kind).to_string();
        let (mut ip, mut port, mut path) = (None, None, None);
        match addr {
            Some(tracee::SockAddr::Inet { ip: i, port: p }) => {
                ip = Some(i);
                port = Some(p);
            }
            Some(tracee::SockAddr::Unix { path: p }) => {
                path = Some(p);
                protocol = "unix".into();
            }
            _ => {}
        }
        Event::Net {
            t,
            pid,
            op: op.to_string(),
            protocol,
            ip,
            port,
            path,
            outcome: syscalls::net_outcome(op, ret),
        }
    }
}

fn task(tgid: i32) -> Task {
    Task {
        tgid,
        attached: false,
        pending: None,
        entry_again: false,
    }
}

const PTRACE_GET_SYSCALL_INFO: libc::c_uint = 0x420e;
const PTRACE_SYSCALL_INFO_ENTRY: u8 = 1;

/// The `op` of PTRACE_GET_SYSCALL_INFO for a stopped tracee (entry 1, exit 2, seccomp 3);
/// `None` where the request is not supported.
fn syscall_stop_op(pid: i32) -> Option<u8> {
    // struct ptrace_syscall_info is 88 bytes at most; `op` is its first byte.
    let mut info = [0u64; 11];
    // SAFETY: the kernel writes at most the size passed into the buffer we own.
    let rc = unsafe {
        libc::ptrace(
            PTRACE_GET_SYSCALL_INFO,
            pid,
            std::mem::size_of_val(&info),
            info.as_mut_ptr(),
        )
    };
    if rc <= 0 {
        return None;
    }
    Some(info[0].to_ne_bytes()[0])
}

fn cmdline(pid: Pid) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}
