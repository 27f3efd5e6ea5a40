//! The guest's only way out: a TUN device created inside the sandbox's network namespace,
//! whose file descriptor stays with the supervisor. The guest has no `/dev/net/tun` and never
//! holds the descriptor; every packet it sends to a non-loopback address arrives here.

use std::ffi::CString;
use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sched::CloneFlags;

/// The guest's interface, as `ip addr` shows it.
pub const GUEST_IFNAME: &str = "eth0";
/// The guest's addresses, an ordinary cloud server's private ones.
pub const GUEST_V4: Ipv4Addr = Ipv4Addr::new(172, 31, 18, 44);
pub const GUEST_V4_PREFIX: u8 = 20;
/// The default gateway: the simulated internet's side of the link.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(172, 31, 16, 1);
pub const GUEST_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xae61, 5, 0, 0, 0, 0, 0x44);
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xae61, 5, 0, 0, 0, 0, 1);
pub const GUEST_V6_PREFIX: u8 = 64;
pub const MTU: usize = 1500;

/// A failed step of the link's set-up.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct LinkError {
    pub step: &'static str,
    pub source: std::io::Error,
}

fn fail(step: &'static str) -> impl FnOnce(std::io::Error) -> LinkError {
    move |source| LinkError { step, source }
}

fn last(step: &'static str) -> LinkError {
    LinkError {
        step,
        source: std::io::Error::last_os_error(),
    }
}

/// Creates and configures the guest's interface in the network namespace of `pid`; returns
/// the TUN descriptor (non-blocking, close-on-exec) and problems of the IPv6 set-up, which
/// leave IPv4 working. Runs on a short-lived thread: a namespace switch is per thread, so the
/// supervisor itself never leaves the host's network namespace.
pub fn create_in(pid: i32) -> Result<(OwnedFd, Option<String>), LinkError> {
    let ns = File::open(format!("/proc/{pid}/ns/net")).map_err(fail("open the sandbox's netns"))?;
    let host = namespace_id("/proc/thread-self/ns/net")?;
    std::thread::spawn(move || {
        nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
            .map_err(|e| fail("setns(CLONE_NEWNET)")(e.into()))?;
        // Never configure the host's own namespace, whatever went wrong before.
        if namespace_id("/proc/thread-self/ns/net")? == host {
            return Err(fail("enter the sandbox's netns")(std::io::Error::other(
                "it is the host's network namespace; refusing to add a link there",
            )));
        }
        let tun = open_tun(GUEST_IFNAME)?;
        configure_v4()?;
        let v6 = configure_v6().err().map(|e| e.to_string());
        Ok((tun, v6))
    })
    .join()
    .unwrap_or_else(|_| {
        Err(fail("link set-up thread")(std::io::Error::other(
            "panicked",
        )))
    })
}

/// The identity (device and inode) of a namespace file.
fn namespace_id(path: &str) -> Result<(u64, u64), LinkError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(fail("stat a network namespace"))?;
    Ok((meta.dev(), meta.ino()))
}

/// An `ifreq` naming `name`.
fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; zero is a valid initial value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = libc::c_char::from_ne_bytes([src]);
    }
    req
}

fn open_tun(name: &str) -> Result<OwnedFd, LinkError> {
    let path = c"/dev/net/tun";
    let flags = libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: open with a valid NUL-terminated path; the result is checked.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd < 0 {
        return Err(last("open /dev/net/tun"));
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    let tun = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads the ifreq we own; the descriptor is valid.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        return Err(last("ioctl(TUNSETIFF)"));
    }
    Ok(tun)
}

fn socket(family: libc::c_int) -> Result<OwnedFd, LinkError> {
    // SAFETY: socket() takes plain integers; the result is checked.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(last("socket"));
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `ioctl(fd, request, arg)` for the interface requests, whose argument is a struct we own.
fn ioctl<T>(
    fd: RawFd,
    request: libc::c_ulong,
    arg: &mut T,
    step: &'static str,
) -> Result<(), LinkError> {
    // SAFETY: every caller passes the struct type its request expects, owned and initialised.
    if unsafe { libc::ioctl(fd, request as _, arg as *mut T) } < 0 {
        return Err(last(step));
    }
    Ok(())
}

fn sockaddr_v4(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; the kernel reads it by family.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// The kernel's `struct rtentry` (linux/route.h), for SIOCADDRT on an AF_INET socket.
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// Address, netmask, link up, default route via the gateway.
fn configure_v4() -> Result<(), LinkError> {
    let sock = socket(libc::AF_INET)?;
    let fd = sock.as_raw_fd();
    let mut req = ifreq(GUEST_IFNAME);
    req.ifr_ifru.ifru_addr = sockaddr_v4(GUEST_V4);
    ioctl(
        fd,
        libc::SIOCSIFADDR,
        &mut req,
        "set the guest's IPv4 address",
    )?;
    let mask = u32::MAX << (32 - u32::from(GUEST_V4_PREFIX));
    req.ifr_ifru.ifru_netmask = sockaddr_v4(Ipv4Addr::from(mask));
    ioctl(
        fd,
        libc::SIOCSIFNETMASK,
        &mut req,
        "set the guest's netmask",
    )?;
    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    ioctl(
        fd,
        libc::SIOCSIFFLAGS,
        &mut req,
        "bring the guest's interface up",
    )?;

    let name = CString::new(GUEST_IFNAME).map_err(|e| fail("interface name")(e.into()))?;
    let mut route = RtEntry {
        rt_pad1: 0,
        rt_dst: sockaddr_v4(Ipv4Addr::UNSPECIFIED),
        rt_gateway: sockaddr_v4(GATEWAY_V4),
        rt_genmask: sockaddr_v4(Ipv4Addr::UNSPECIFIED),
        rt_flags: libc::RTF_UP | libc::RTF_GATEWAY,
        rt_pad2: 0,
        rt_pad3: 0,
        rt_pad4: std::ptr::null_mut(),
        rt_metric: 0,
        rt_dev: name.as_ptr().cast_mut(),
        rt_mtu: 0,
        rt_window: 0,
        rt_irtt: 0,
    };
    ioctl(
        fd,
        libc::SIOCADDRT,
        &mut route,
        "add the IPv4 default route",
    )
}

/// The kernel's `struct in6_rtmsg` (linux/ipv6_route.h), for SIOCADDRT on an AF_INET6 socket.
#[repr(C)]
struct In6RtMsg {
    dst: libc::in6_addr,
    src: libc::in6_addr,
    gateway: libc::in6_addr,
    kind: u32,
    dst_len: u16,
    src_len: u16,
    metric: u32,
    info: libc::c_ulong,
    flags: u32,
    ifindex: libc::c_int,
}

fn in6(addr: Ipv6Addr) -> libc::in6_addr {
    libc::in6_addr {
        s6_addr: addr.octets(),
    }
}

/// Address and a default route through the interface (no neighbour discovery on a TUN).
fn configure_v6() -> Result<(), LinkError> {
    let sock = socket(libc::AF_INET6)?;
    let fd = sock.as_raw_fd();
    let mut req = ifreq(GUEST_IFNAME);
    ioctl(
        fd,
        libc::SIOCGIFINDEX,
        &mut req,
        "find the guest's interface",
    )?;
    // SAFETY: SIOCGIFINDEX filled the union's ifindex member.
    let ifindex = unsafe { req.ifr_ifru.ifru_ifindex };
    let mut addr = libc::in6_ifreq {
        ifr6_addr: in6(GUEST_V6),
        ifr6_prefixlen: u32::from(GUEST_V6_PREFIX),
        ifr6_ifindex: ifindex,
    };
    ioctl(
        fd,
        libc::SIOCSIFADDR,
        &mut addr,
        "set the guest's IPv6 address",
    )?;
    let mut route = In6RtMsg {
        dst: in6(Ipv6Addr::UNSPECIFIED),
        src: in6(Ipv6Addr::UNSPECIFIED),
        gateway: in6(Ipv6Addr::UNSPECIFIED),
        kind: 0,
        dst_len: 0,
        src_len: 0,
        metric: 1024,
        info: 0,
        flags: u32::from(libc::RTF_UP),
        ifindex,
    };
    ioctl(
        fd,
        libc::SIOCADDRT,
        &mut route,
        "add the IPv6 default route",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_own_namespace_is_refused() {
        // Our own pid's namespace is the one this process runs in: no link may be added there.
        let pid = i32::try_from(std::process::id()).unwrap();
        let err = create_in(pid).expect_err("refused");
        assert!(
            err.to_string().contains("host's network namespace")
                || err.to_string().contains("setns"),
            "{err}"
        );
    }
}
