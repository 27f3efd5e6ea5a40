//! Running mmdebstrap to create the Debian root file system.
//!
//! mmdebstrap runs in root mode under `unshare --mount --pid --fork --kill-child`:
//! - a mount namespace of its own, because in root mode it bind-mounts `/dev` entries, `/proc`
//!   and `/sys` into the target while it installs packages; killed, it would leave those
//!   mounts on the host below a directory we later delete. In its namespace they vanish with it.
//! - a pid namespace with mmdebstrap as its init, because mmdebstrap forks helpers that run
//!   dpkg and maintainer scripts; when it dies the kernel kills them all, instead of leaving
//!   orphans that keep writing into a build directory the next build deletes.
//! - `--kill-child` and our parent-death signal on `unshare` chain the two, so killing aegis
//!   (even with SIGKILL) ends the whole build.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use nix::sys::signal::Signal;

use super::{ImageError, Recipe};

/// The programs a build runs, found on PATH.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    pub(crate) mmdebstrap: PathBuf,
    pub(crate) unshare: PathBuf,
}

/// Tool name and the Debian package that provides it.
const MMDEBSTRAP: (&str, &str) = ("mmdebstrap", "mmdebstrap");
const UNSHARE: (&str, &str) = ("unshare", "util-linux");

/// Packages on top of minbase, each for what a sample commonly expects of a Linux server.
pub(super) const PACKAGES: &[&str] = &[
    "bash",            // the shell droppers are written for
    "coreutils",       // cp, chmod, base64, ... used by nearly every script
    "procps",          // ps, pkill: samples look for competitors and analysis tools
    "cron",            // persistence through crontabs and /etc/cron.d
    "python3",         // second-stage scripts
    "perl",            // older IRC bots and web shells
    "curl",            // downloaders
    "wget",            // downloaders
    "iproute2",        // `ip` for network discovery
    "netcat-openbsd",  // reverse shells
    "openssh-client",  // lateral movement, key theft
    "file",            // type probing by droppers
    "sudo",            // privilege escalation attempts (setuid binary)
    "ca-certificates", // TLS downloads
    "openssl",         // `openssl s_client`: TLS to a controller, certificate fetching
    "less",            // an ordinary server has it
    "gzip",            // unpacking payloads
    "tar",             // unpacking payloads
    "zip",             // staging data for exfiltration
    "unzip",           // unpacking payloads
    "iputils-ping",    // reachability checks before a download or a scan
    "net-tools",       // netstat, arp, ifconfig: classic discovery commands
    "bind9-dnsutils",  // dig, nslookup: DNS discovery and tunnelling
    "kmod",            // lsmod, modprobe: rootkits probe and load modules
    "psmisc",          // killall, pstree: samples that hunt competitors
    "lsof",            // open files and sockets discovery
];

/// Where mmdebstrap takes its mirrors from: the host's own apt sources, so the build uses the
/// same Debian mirror as the host and no other.
const SOURCES_CANDIDATES: &[&str] = &[
    "/etc/apt/sources.list.d/debian.sources",
    "/etc/apt/sources.list",
];

/// How many of mmdebstrap's last stderr lines a failure reports.
const TAIL_LINES: usize = 15;

/// PATH used when the environment has none (the usual root PATH on Debian).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The programs a build needs, or `ToolMissing` for the first one absent.
pub(crate) fn locate() -> Result<Tools, ImageError> {
    let path_var = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    let find = |(tool, package): (&'static str, &'static str)| {
        find_in_path(&path_var, tool).ok_or(ImageError::ToolMissing { tool, package })
    };
    Ok(Tools {
        mmdebstrap: find(MMDEBSTRAP)?,
        unshare: find(UNSHARE)?,
    })
}

/// The first executable regular file called `tool` in a PATH-style list.
fn find_in_path(path_var: &OsStr, tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path_var)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(tool))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// The host's apt sources file, passed to mmdebstrap as its mirror.
fn sources_file() -> Result<PathBuf, ImageError> {
    SOURCES_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .ok_or_else(|| ImageError::Build {
            step: "mmdebstrap",
            detail: format!(
                "no apt sources on this host (looked for {}); configure a Debian mirror first",
                SOURCES_CANDIDATES.join(", ")
            ),
        })
}

/// Builds a minbase `suite` system into `target` (which must not exist yet), streaming
/// mmdebstrap's stderr lines to `progress`.
pub(super) fn run(
    tools: &Tools,
    suite: &str,
    target: &Path,
    recipe: &Recipe,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ImageError> {
    let sources = sources_file()?;
    progress(&format!(
        "mmdebstrap {suite} with mirrors from {}",
        sources.display()
    ));
    tracing::info!(target = %target.display(), sources = %sources.display(), "running mmdebstrap");
    let mut child = command(tools, suite, target, &sources, recipe)
        .spawn()
        .map_err(ImageError::io("run", &tools.unshare))?;
    let tail = match child.stderr.take() {
        Some(stderr) => stream_lines(stderr, progress),
        None => VecDeque::new(),
    };
    let status = child
        .wait()
        .map_err(ImageError::io("wait for", &tools.unshare))?;
    check_status(status, &tail)
}

fn command(tools: &Tools, suite: &str, target: &Path, sources: &Path, recipe: &Recipe) -> Command {
    let packages: Vec<&str> = PACKAGES.iter().chain(recipe.packages).copied().collect();
    let mut cmd = Command::new(&tools.unshare);
    cmd.args(["--mount", "--propagation", "private"])
        .args(["--pid", "--fork", "--kill-child"])
        .arg("--")
        .arg(&tools.mmdebstrap)
        .arg("--mode=root")
        .arg("--variant=minbase")
        .arg(format!(
            "--architectures={}",
            recipe.architectures.join(",")
        ))
        .arg(format!("--include={}", packages.join(",")))
        .arg(suite)
        .arg(target)
        .arg(sources)
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe work is allowed: it makes one prctl system call through a nix wrapper
    // that does not allocate, and touches no lock or shared state. Risk left: the signal is
    // tied to the thread that spawned the child, so a build run on a short-lived thread
    // would be killed when that thread ends (build() blocks its thread until done, so not
    // today).
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    cmd
}

/// Sends each line to `progress` (prefixed) and returns the last [`TAIL_LINES`] lines.
fn stream_lines(stream: impl std::io::Read, progress: &mut dyn FnMut(&str)) -> VecDeque<String> {
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    for line in BufReader::new(stream).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line).trim_end().to_string();
        tracing::debug!(line = %line, "mmdebstrap");
        progress(&format!("mmdebstrap: {line}"));
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    tail
}

fn check_status(status: ExitStatus, tail: &VecDeque<String>) -> Result<(), ImageError> {
    if status.success() {
        return Ok(());
    }
    let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
    Err(ImageError::Build {
        step: "mmdebstrap",
        detail: format!(
            "mmdebstrap {status}; its last output:\n{}",
            lines.join("\n")
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn tool_is_found_only_as_an_executable_file() {
        let found = find_in_path(OsStr::new("/nonexistent:/bin:/usr/bin"), "sh");
        assert!(found.is_some_and(|path| path.ends_with("sh")));
        assert_eq!(find_in_path(OsStr::new("/nonexistent"), "sh"), None);
        // A directory called like the tool does not count, nor do relative PATH entries.
        assert_eq!(find_in_path(OsStr::new("/"), "usr"), None);
        assert_eq!(find_in_path(OsStr::new("bin:."), "sh"), None);
    }

    #[test]
    fn missing_tool_names_the_package() {
        let (tool, package) = MMDEBSTRAP;
        let err = ImageError::ToolMissing { tool, package };
        assert!(
            err.to_string().contains("apt-get install mmdebstrap"),
            "{err}"
        );
    }

    #[test]
    fn stderr_lines_are_streamed_with_a_prefix_and_the_tail_kept() {
        let input: String = (1..=20).map(|n| format!("I: line {n}\n")).collect();
        let mut seen = Vec::new();
        let tail = stream_lines(input.as_bytes(), &mut |line| seen.push(line.to_string()));
        assert_eq!(seen.len(), 20);
        assert_eq!(seen[0], "mmdebstrap: I: line 1");
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.back().map(String::as_str), Some("I: line 20"));
    }

    #[test]
    fn failure_reports_the_last_lines() {
        let tail: VecDeque<String> = ["I: downloading", "E: apt-get failed"]
            .into_iter()
            .map(String::from)
            .collect();
        let err = check_status(ExitStatus::from_raw(256), &tail).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("E: apt-get failed") && text.contains("exit status: 1"),
            "{text}"
        );
        assert!(check_status(ExitStatus::from_raw(0), &tail).is_ok());
    }

    #[test]
    fn package_list_has_what_the_image_test_expects() {
        for package in ["bash", "python3", "curl", "netcat-openbsd", "sudo", "cron"] {
            assert!(PACKAGES.contains(&package), "{package}");
        }
    }
}
