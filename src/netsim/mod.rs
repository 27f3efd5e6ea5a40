//! The simulated internet of one analysis: the sandbox's only way out leads here, to a
//! user-space TCP/IP stack in the supervisor that answers for every address, records what
//! the sample says and captures every packet. Nothing is ever forwarded: the supervisor opens
//! no socket toward any network on the sample's behalf, so no packet can leave the machine.
//!
//! ```text
//! guest (sandbox netns)            supervisor (host netns)
//! eth0 172.31.18.44 ── TUN fd ──▶  smoltcp (any address) ─▶ DNS, HTTP, TLS, SMTP/FTP/IRC
//!                                   └▶ network.pcap, network.json (run directory)
//! ```

mod conn;
pub mod dns;
mod http;
mod lines;
mod pcap;
pub mod record;
mod stack;
mod tls;
pub mod tun;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::{Deserialize, Serialize};

pub use dns::DnsMode;
pub use record::Traffic;

/// Name of the capture artifact.
pub const PCAP_NAME: &str = "network.pcap";
/// Name of the records file in the run directory.
pub const RECORDS_NAME: &str = "network.json";

/// What network an analysis has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// Loopback only.
    None,
    /// The simulated internet.
    #[default]
    Simulated,
}

impl NetworkMode {
    pub fn parse(text: &str) -> Option<NetworkMode> {
        match text {
            "none" => Some(NetworkMode::None),
            "simulated" => Some(NetworkMode::Simulated),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::None => "none",
            NetworkMode::Simulated => "simulated",
        }
    }
}

/// The network part of a sandbox's spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub mode: NetworkMode,
    pub dns: DnsMode,
    /// Size cap of the capture file.
    pub pcap_max_bytes: u64,
}

/// Why the simulated internet could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetsimError {
    #[error("simulated internet: {0}")]
    Link(#[from] tun::LinkError),
    #[error("simulated internet: {0}")]
    Capture(String),
}

/// The simulated internet of a running sandbox.
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Traffic>,
    records: PathBuf,
}

/// Gives the sandbox whose init is `pid` its link, and serves it on a thread until
/// [`Running::finish`]. `pid`'s network namespace must not have been entered by anything yet.
pub fn start(
    pid: i32,
    spec: &NetworkSpec,
    run_dir: &Path,
    pcap_path: &Path,
) -> Result<Running, NetsimError> {
    let (tun, v6_problem) = tun::create_in(pid)?;
    let capture =
        pcap::Capture::create(pcap_path, spec.pcap_max_bytes).map_err(NetsimError::Capture)?;
    let mut stack = stack::Stack::new(capture, spec.dns, crate::monitor::now_ns);
    if let Some(p) = v6_problem {
        stack
            .traffic
            .errors
            .push(format!("IPv6 not offered to the guest: {p}"));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("netsim".into())
        .spawn(move || serve(tun, stack, &flag))
        .map_err(|e| NetsimError::Capture(format!("start the service thread: {e}")))?;
    Ok(Running {
        stop,
        thread,
        records: run_dir.join(RECORDS_NAME),
    })
}

impl Running {
    /// Stops serving, closes the capture and writes `network.json`.
    pub fn finish(self) -> Traffic {
        self.stop.store(true, Ordering::SeqCst);
        let traffic = self.thread.join().unwrap_or_else(|_| Traffic {
            errors: vec!["the simulated internet's thread panicked".into()],
            ..Default::default()
        });
        let text = serde_json::to_vec(&traffic).unwrap_or_default();
        if let Err(e) = std::fs::write(&self.records, text) {
            tracing::warn!(path = %self.records.display(), error = %e, "cannot write network records");
        }
        traffic
    }
}

/// Packets read from the TUN per wake-up before the stack runs.
const BATCH: usize = 64;
/// Longest sleep, so a stop request is seen soon.
const MAX_SLEEP_MS: u64 = 20;

/// The service loop: TUN to stack, stack to TUN, until stopped.
fn serve(tun: OwnedFd, mut stack: stack::Stack, stop: &AtomicBool) -> Traffic {
    let mut buf = vec![0u8; 65536];
    let mut broken = false;
    while !stop.load(Ordering::SeqCst) {
        let sleep = stack.delay_ms().min(MAX_SLEEP_MS);
        let mut fds = [PollFd::new(tun.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::from(sleep as u16)).unwrap_or(0);
        let hangup = fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP));
        if hangup {
            // The namespace is going away with the sandbox: nothing more will come.
            std::thread::sleep(std::time::Duration::from_millis(MAX_SLEEP_MS));
            continue;
        }
        for _ in 0..if ready > 0 { BATCH } else { 0 } {
            match nix::unistd::read(tun.as_raw_fd(), &mut buf) {
                Ok(n) if n > 0 => stack.ingest(buf[..n].to_vec()),
                Ok(_) | Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => break,
                Err(e) => {
                    if !broken {
                        stack.traffic.errors.push(format!("read from the TUN: {e}"));
                    }
                    broken = true;
                    break;
                }
            }
        }
        for packet in stack.step() {
            // A full queue drops the packet, as a congested link would; TCP resends it.
            let _ = nix::unistd::write(&tun, &packet);
        }
    }
    let mut traffic = std::mem::take(&mut stack.traffic);
    traffic.pcap = stack.capture_finish();
    traffic
}

impl NetworkSpec {
    /// Loopback only.
    pub fn default_none() -> NetworkSpec {
        NetworkSpec {
            mode: NetworkMode::None,
            ..Default::default()
        }
    }
}
