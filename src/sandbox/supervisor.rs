//! The supervisor: one process per sandbox, host root. Single-threaded until the sandbox's
//! init is cloned; with the simulated internet, a thread then serves the sandbox's link.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{pipe2, Pid};

use super::cgroup::{Cgroup, Hierarchy};
use super::kernel::RealKernel;
use super::{
    guest_view, seccomp, wine, Captured, RunLayout, SandboxError, SandboxOutcome, SandboxSpec,
};
use crate::guest::{UID_BASE, UID_COUNT};
use crate::monitor::{self, MonitorSetup};
use crate::netsim::{self, NetworkMode};

fn kernel(step: &'static str) -> impl FnOnce(nix::Error) -> SandboxError {
    move |source| SandboxError::Kernel { step, source }
}

fn io<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SandboxError + 'a {
    move |source| SandboxError::Io {
        step,
        path: path.to_path_buf(),
        source,
    }
}

/// Runs one sandbox from set-up to collection and writes `outcome.json`.
pub fn supervise(spec_path: &Path) -> Result<SandboxOutcome, SandboxError> {
    let spec = read_spec(spec_path)?;
    let layout = RunLayout::new(&spec.run_dir);
    // Whatever the orchestrator's process had open is not ours to pass on.
    // SAFETY: close_range only closes descriptors; this process has opened none above 2 yet.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };

    // An orchestrator killed with -9 takes its sandbox along: we die, then our init, then
    // every process of its pid namespace.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(kernel("prctl(PR_SET_PDEATHSIG)"))?;
    let _ = nix::unistd::setsid();

    // A private mount namespace: every mount below vanishes with this process.
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(kernel("unshare(CLONE_NEWNS)"))?;
    let none = None::<&str>;
    nix::mount::mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(kernel("make / private"))?;

    mount_scratch(&layout, spec.limits.disk_bytes)?;
    mount_overlay(&layout, &spec.rootfs)?;
    place_sample(&layout, &spec)?;
    if let Some(w) = &spec.wine {
        wine::place_launcher(&layout, w)?;
    }

    // The cgroup exists before the sandbox's first process, so limits hold from the start.
    let hierarchy = Hierarchy::detect()?;
    let cgroup = Cgroup::create(&hierarchy, &spec.analysis_id, &spec.limits)?;

    let mut outcome = run_sandbox(&spec, &layout, &cgroup)?;
    outcome.cgroup_version = hierarchy.version().to_string();
    outcome.cgroup = cgroup.stats();
    cgroup.destroy()?;

    if let Some(w) = &spec.wine {
        wine::copy_hives(&layout, &spec.rootfs, w, &mut outcome);
    }
    outcome.disk_full = scratch_full(&layout.scratch());
    super::collect::collect(&spec, &layout, &mut outcome);
    keep_staged_artifacts(&layout, &mut outcome);

    let _ = nix::mount::umount2(&layout.root(), MntFlags::MNT_DETACH);
    let _ = nix::mount::umount2(&layout.scratch(), MntFlags::MNT_DETACH);
    let text = serde_json::to_vec_pretty(&outcome).unwrap_or_default();
    fs::write(layout.outcome(), text).map_err(io("write", &layout.outcome()))?;
    Ok(outcome)
}

fn read_spec(path: &Path) -> Result<SandboxSpec, SandboxError> {
    let text = fs::read(path).map_err(|e| SandboxError::Spec {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    serde_json::from_slice(&text).map_err(|e| SandboxError::Spec {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Moves the copies the monitor made of deleted files from the scratch tmpfs to the run dir.
fn keep_staged_artifacts(layout: &RunLayout, outcome: &mut SandboxOutcome) {
    let staged = layout.scratch().join("dropped");
    let Ok(entries) = fs::read_dir(&staged) else {
        return;
    };
    for entry in entries.flatten() {
        let dest = layout.dropped().join(entry.file_name());
        if !dest.exists() {
            if let Err(e) = fs::copy(entry.path(), &dest) {
                outcome
                    .collection_errors
                    .push(format!("keep {}: {e}", dest.display()));
            }
        }
    }
}

/// The size-limited tmpfs that holds the writable layer, /tmp and /run: the disk quota.
fn mount_scratch(layout: &RunLayout, disk_bytes: u64) -> Result<(), SandboxError> {
    let scratch = layout.scratch();
    fs::create_dir_all(&scratch).map_err(io("mkdir", &scratch))?;
    let opts = format!("size={disk_bytes},mode=0755");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    nix::mount::mount(
        Some("aegis-scratch"),
        &scratch,
        Some("tmpfs"),
        flags,
        Some(opts.as_str()),
    )
    .map_err(kernel("mount scratch tmpfs"))?;
    for (name, mode) in [
        ("upper", 0o755),
        ("work", 0o700),
        ("tmp", 0o1777),
        ("run", 0o755),
    ] {
        let dir = scratch.join(name);
        fs::create_dir(&dir).map_err(io("mkdir", &dir))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).map_err(io("chmod", &dir))?;
        if name != "work" {
            chown_guest_root(&dir)?;
        }
    }
    Ok(())
}

fn chown_guest_root(path: &Path) -> Result<(), SandboxError> {
    crate::guest::chown_to_guest_root(path).map_err(io("chown", path))
}

/// A fresh writable layer over the read-only image.
fn mount_overlay(layout: &RunLayout, rootfs: &Path) -> Result<(), SandboxError> {
    let root = layout.root();
    fs::create_dir_all(&root).map_err(io("mkdir", &root))?;
    let scratch = layout.scratch();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        rootfs.display(),
        scratch.join("upper").display(),
        scratch.join("work").display()
    );
    nix::mount::mount(
        Some("aegis-guest"),
        &root,
        Some("overlay"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(kernel("mount overlay"))
}

/// Copies the sample to its place in the guest, owned by guest root, executable.
fn place_sample(layout: &RunLayout, spec: &SandboxSpec) -> Result<(), SandboxError> {
    let relative = spec.sample_guest_path.trim_start_matches('/');
    let target = layout.root().join(relative);
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(io("mkdir", parent))?;
    }
    fs::copy(layout.sample(), &target).map_err(io("copy sample to", &target))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
        .map_err(io("chmod", &target))?;
    chown_guest_root(&target)
}

/// The fds the sandbox's init inherits.
struct InitFds {
    go: OwnedFd,
    errors: OwnedFd,
    stdio: [OwnedFd; 3],
    events: File,
    artifacts: OwnedFd,
    /// v1 `tasks` files the init writes "0" to, to join the analysis's cgroup itself.
    cgroup_join: Vec<File>,
    /// Write end of wineserver's trace pipe (Windows runs), fd 4 of the launcher.
    trace: Option<OwnedFd>,
}

fn run_sandbox(
    spec: &SandboxSpec,
    layout: &RunLayout,
    cgroup: &Cgroup,
) -> Result<SandboxOutcome, SandboxError> {
    let (go_r, go_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(kernel("pipe"))?;
    let (err_r, err_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(kernel("pipe"))?;
    let (out_r, out_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(kernel("pipe"))?;
    let (errs_r, errs_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(kernel("pipe"))?;
    let dev_null = File::open("/dev/null").map_err(io("open", Path::new("/dev/null")))?;
    let events = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(layout.events())
        .map_err(io("open", &layout.events()))?;
    fs::create_dir_all(layout.dropped()).map_err(io("mkdir", &layout.dropped()))?;
    // The monitor keeps copies of deleted files on the scratch tmpfs (fast, and outside the
    // guest's view); they move to the data disk after the run.
    let staged = layout.scratch().join("dropped");
    fs::create_dir(&staged).map_err(io("mkdir", &staged))?;
    // The monitor writes here as guest root (an unprivileged host uid).
    fs::set_permissions(&staged, fs::Permissions::from_mode(0o700))
        .map_err(io("chmod", &staged))?;
    chown_guest_root(&staged)?;
    let artifacts: OwnedFd = File::open(&staged).map_err(io("open", &staged))?.into();
    let (trace_r, trace_w) = match spec.wine {
        Some(_) => {
            let (r, w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(kernel("pipe"))?;
            (Some(r), Some(w))
        }
        None => (None, None),
    };

    let fds = InitFds {
        go: go_r,
        errors: err_w,
        stdio: [dev_null.into(), out_w, errs_w],
        events,
        artifacts,
        cgroup_join: cgroup.self_join_files()?,
        trace: trace_w,
    };
    let joins_itself = !fds.cgroup_join.is_empty();
    let child = clone_init(spec, layout, fds)?;

    write_id_maps(child)?;
    if !joins_itself {
        cgroup.add(child.as_raw())?;
    }
    // Before the release: the sample's first packet already finds the simulated internet.
    let internet = match spec.network.mode {
        NetworkMode::Simulated => Some(netsim::start(
            child.as_raw(),
            &spec.network,
            &layout.dir,
            &layout.pcap(),
        )?),
        NetworkMode::None => None,
    };
    // The init holds the event stream: the OOM killer must pick the sample, not it.
    let _ = fs::write(format!("/proc/{child}/oom_score_adj"), "-1000");

    let mut outcome = SandboxOutcome {
        started_ns: monitor::now_ns(),
        ..Default::default()
    };
    // The write end stays open until we return: the init takes its closing as our death.
    nix::unistd::write(&go_w, b"g").map_err(kernel("release sandbox init"))?;

    let mut pipes = vec![
        (out_r, layout.stream("stdout")),
        (errs_r, layout.stream("stderr")),
    ];
    if let Some(r) = trace_r {
        pipes.push((r, crate::windows::run::server_log(&layout.dir)));
    }
    watch(spec, cgroup, child, pipes, &mut outcome)?;
    outcome.ended_ns = monitor::now_ns();
    if let Some(internet) = internet {
        internet.finish();
    }
    outcome.setup_error = read_all(err_r).filter(|s| !s.is_empty());
    Ok(outcome)
}

/// Starts the sandbox's init in new user, pid, mount, network, ipc and uts namespaces.
fn clone_init(spec: &SandboxSpec, layout: &RunLayout, fds: InitFds) -> Result<Pid, SandboxError> {
    let flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    let mut stack = vec![0u8; 1 << 20];
    let mut fds = Some(fds);
    let init = Box::new(|| -> isize {
        let Some(fds) = fds.take() else { return 1 };
        let errors = fds.errors.try_clone().ok();
        match sandbox_init(spec, layout, fds) {
            Ok(code) => code as isize,
            Err(message) => {
                if let Some(e) = errors {
                    let _ = nix::unistd::write(&e, message.as_bytes());
                }
                1
            }
        }
    });
    // SAFETY: the supervisor is single-threaded, so the child may run the closure after the
    // clone; the stack outlives the call because the parent keeps it until it returns, and
    // the child's copy of memory is its own.
    let pid = unsafe { nix::sched::clone(init, &mut stack, flags, Some(libc::SIGCHLD)) }
        .map_err(kernel("clone sandbox init"))?;
    Ok(pid)
}

/// Guest uids and gids 0..65536 are host UID_BASE.. : guest root is an unprivileged host user.
fn write_id_maps(child: Pid) -> Result<(), SandboxError> {
    let map = format!("0 {UID_BASE} {UID_COUNT}\n");
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{child}/{file}");
        fs::write(&path, &map).map_err(io("write", Path::new(&path)))?;
    }
    Ok(())
}

/// The sandbox's init (pid 1 inside): waits to be released, builds the guest's view, then
/// becomes the monitor. Returns the exit status, or a message for the supervisor.
fn sandbox_init(spec: &SandboxSpec, layout: &RunLayout, fds: InitFds) -> Result<i32, String> {
    let mut byte = [0u8; 1];
    match nix::unistd::read(fds.go.as_raw_fd(), &mut byte) {
        Ok(1) => {}
        _ => return Err("supervisor went away before releasing the sandbox".into()),
    }
    // First, before anything can fork: limits hold from the sandbox's first instruction.
    for mut file in fds.cgroup_join {
        file.write_all(b"0")
            .map_err(|e| format!("join the analysis's cgroup: {e}"))?;
    }
    let id0 = nix::unistd::Uid::from_raw(0);
    let gid0 = nix::unistd::Gid::from_raw(0);
    nix::unistd::setresgid(gid0, gid0, gid0).map_err(|e| format!("setresgid(0): {e}"))?;
    nix::unistd::setresuid(id0, id0, id0).map_err(|e| format!("setresuid(0): {e}"))?;
    let _ = nix::unistd::setgroups(&[]);
    // After the credential change, which clears it: a dead supervisor takes the init along,
    // and with the init its whole pid namespace.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if go_was_closed(&fds.go) {
        return Err("supervisor went away during start-up".into());
    }
    // Now inside the analysis's cgroup: a cgroup namespace rooted here hides the host's tree.
    nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
        .map_err(|e| format!("unshare(CLONE_NEWCGROUP): {e}"))?;

    guest_view::enter_guest_root(
        &mut RealKernel,
        &layout.root(),
        &layout.scratch(),
        &spec.hostname,
    )
    .map_err(|e| format!("guest view: {e}"))?;
    loopback_up().map_err(|e| format!("bring up lo: {e}"))?;

    let setup = MonitorSetup {
        argv: cstrings(&spec.argv)?,
        env: cstrings(&spec.env)?,
        cwd: CString::new(spec.cwd.clone()).map_err(|e| e.to_string())?,
        stdio: fds.stdio,
        events: fds.events,
        artifacts: fds.artifacts,
        artifact_max_bytes: spec.artifact_max_bytes,
        hash_max_bytes: spec.limits.disk_bytes,
        filter: seccomp::compile(),
        // The supervisor enforces the timeout and the pids limit from outside.
        stop: monitor::StopPolicy::default(),
        drop_capabilities: false,
        trace: fds.trace,
    };
    drop(fds.errors);
    Ok(monitor::run(setup).code)
}

/// The supervisor holds the write end of the release pipe until it exits: EOF means gone.
fn go_was_closed(go: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(go.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
}

fn cstrings(items: &[String]) -> Result<Vec<CString>, String> {
    items
        .iter()
        .map(|s| CString::new(s.as_str()).map_err(|_| format!("NUL byte in {s:?}")))
        .collect()
}

/// Sets the loopback interface up (the only interface of the sandbox's network namespace).
fn loopback_up() -> nix::Result<()> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; zero is a valid initial value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = libc::c_char::from_ne_bytes([*src]);
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own; the fd is valid.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(nix::Error::last());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(nix::Error::last());
        }
    }
    Ok(())
}

/// An output stream being drained: the first bytes kept in a file, the rest counted.
struct Drain {
    fd: OwnedFd,
    file: File,
    keep: u64,
    captured: Captured,
    open: bool,
}

impl Drain {
    fn read_some(&mut self) {
        let mut buf = [0u8; 65536];
        match nix::unistd::read(self.fd.as_raw_fd(), &mut buf) {
            Ok(0) => self.open = false,
            Ok(n) => {
                self.captured.bytes += n as u64;
                let room = self.keep.saturating_sub(self.captured.kept) as usize;
                let take = room.min(n);
                if take > 0 && self.file.write_all(&buf[..take]).is_ok() {
                    self.captured.kept += take as u64;
                }
            }
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => {}
            Err(_) => self.open = false,
        }
    }
}

/// Drains output (stdout, stderr, and wineserver's trace for a Windows run), enforces the
/// timeout and the pids limit, waits for the init to end.
fn watch(
    spec: &SandboxSpec,
    cgroup: &Cgroup,
    child: Pid,
    pipes: Vec<(OwnedFd, std::path::PathBuf)>,
    outcome: &mut SandboxOutcome,
) -> Result<(), SandboxError> {
    let mut drains = open_drains(spec, pipes)?;
    let deadline = Instant::now() + Duration::from_secs(spec.limits.timeout_s);
    // A pidfd makes the init's exit wake the same poll that drains the output.
    let pidfd = pidfd_open(child);
    let mut init_status = None;
    let mut stop = Stop::Running;
    let mut last_pids_check = Instant::now();
    loop {
        let wait_for_exit = if init_status.is_none() {
            pidfd.as_ref()
        } else {
            None
        };
        let wake = match stop {
            Stop::Asked { until } => until,
            _ => deadline,
        };
        poll_drains(&mut drains, wait_for_exit, poll_timeout(wake));
        if init_status.is_none() {
            init_status = match waitpid(child, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(WaitStatus::StillAlive) => None,
                Ok(status) => Some(status),
                Err(_) => Some(WaitStatus::StillAlive),
            };
            if init_status.is_some() {
                // The init is gone, so is its pid namespace; anything left in the cgroup goes
                // too, and with it the last holders of the output pipes.
                cgroup.kill_all()?;
            }
        }
        let now = Instant::now();
        if init_status.is_none() && stop != Stop::Killed {
            if now >= deadline {
                outcome.timed_out = true;
                stop = at_deadline(spec, cgroup, child, stop, now)?;
            } else if now.duration_since(last_pids_check) > Duration::from_millis(200) {
                last_pids_check = now;
                if cgroup.pids_limit_reached() {
                    // A sample that hits the pids limit is a fork bomb or behaves like one:
                    // give it a moment, then stop it.
                    std::thread::sleep(Duration::from_millis(500));
                    outcome.pids_stopped = true;
                    cgroup.kill_all()?;
                    stop = Stop::Killed;
                }
            }
        }
        if init_status.is_some() && drains.iter().all(|d| !d.open) {
            break;
        }
    }
    match init_status {
        Some(WaitStatus::Exited(_, code)) => outcome.monitor_exit_code = Some(code),
        Some(WaitStatus::Signaled(_, sig, _)) => {
            outcome.monitor_signal = Some(sig.as_str().to_string())
        }
        _ => {}
    }
    outcome.stdout = drains[0].captured.clone();
    outcome.stderr = drains[1].captured.clone();
    outcome.wine_log = drains.get(2).map(|d| d.captured.clone());
    Ok(())
}

/// Where a run is in being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    /// A Windows run's launcher got SIGTERM, so that wineserver can save the registry; the
    /// cgroup is killed at `until` if the run has not ended by then.
    Asked {
        until: Instant,
    },
    Killed,
}

/// The timeout has passed: a Windows run is asked to stop first, anything else (or a Windows
/// run whose grace is over) is killed.
fn at_deadline(
    spec: &SandboxSpec,
    cgroup: &Cgroup,
    child: Pid,
    stop: Stop,
    now: Instant,
) -> Result<Stop, SandboxError> {
    match (stop, &spec.wine) {
        (Stop::Running, Some(w)) => {
            if let Some(launcher) = wine::launcher_pid(child) {
                let _ = nix::sys::signal::kill(launcher, Signal::SIGTERM);
            }
            Ok(Stop::Asked {
                until: now + Duration::from_secs(w.stop_grace_s),
            })
        }
        (Stop::Asked { until }, _) if now < until => Ok(stop),
        _ => {
            cgroup.kill_all()?;
            Ok(Stop::Killed)
        }
    }
}

/// One drain per pipe; the third, when there is one, is wineserver's trace.
fn open_drains(
    spec: &SandboxSpec,
    pipes: Vec<(OwnedFd, std::path::PathBuf)>,
) -> Result<Vec<Drain>, SandboxError> {
    let mut drains = Vec::new();
    for (index, (fd, path)) in pipes.into_iter().enumerate() {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io("mkdir", parent))?;
        }
        let file = File::create(&path).map_err(io("create", &path))?;
        let keep = match (&spec.wine, index) {
            (Some(w), 2) => w.log_keep_bytes,
            _ => spec.output_keep_bytes,
        };
        drains.push(Drain {
            fd,
            file,
            keep,
            captured: Captured::default(),
            open: true,
        });
    }
    Ok(drains)
}

/// At most 50 ms, and never past the deadline.
fn poll_timeout(deadline: Instant) -> u16 {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .as_millis();
    u16::try_from(left.clamp(1, 50)).unwrap_or(50)
}

fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Waits until output is readable, the init exits (its pidfd is readable) or the timeout.
fn poll_drains(drains: &mut [Drain], pidfd: Option<&OwnedFd>, timeout_ms: u16) {
    let open: Vec<usize> = (0..drains.len()).filter(|i| drains[*i].open).collect();
    let ready: Vec<bool> = {
        let mut fds: Vec<PollFd> = open
            .iter()
            .map(|i| PollFd::new(drains[*i].fd.as_fd(), PollFlags::POLLIN))
            .collect();
        if let Some(p) = pidfd {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        if fds.is_empty() {
            std::thread::sleep(Duration::from_millis(u64::from(timeout_ms)));
            return;
        }
        if poll(&mut fds, PollTimeout::from(timeout_ms)).is_err() {
            return;
        }
        fds.iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect()
    };
    for (k, i) in open.iter().enumerate() {
        if ready[k] {
            drains[*i].read_some();
        }
    }
}

/// Reads what the init reported; never blocks (every writer is gone by now, and if one were
/// not, waiting for it must not hang the supervisor).
fn read_all(fd: OwnedFd) -> Option<String> {
    let _ = nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let mut file = File::from(fd);
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    Some(text)
}

/// The quota was reached when (almost) nothing is left on the scratch tmpfs.
fn scratch_full(scratch: &Path) -> bool {
    match nix::sys::statvfs::statvfs(scratch) {
        Ok(s) => s.blocks_available().saturating_mul(s.fragment_size()) < (1 << 20),
        Err(_) => false,
    }
}
