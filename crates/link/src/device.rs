//! The link's TUN device: created (in the overlay namespace when configured), given its MTU,
//! addresses and interface group, and brought up.

use crate::{LinkConfig, LinkError};
use braid_system::Netlink;
use tun_rs::{DeviceBuilder, SyncDevice};

pub(crate) fn create(config: &LinkConfig) -> Result<SyncDevice, LinkError> {
    match &config.netns {
        None => create_here(config),
        Some(ns) => {
            let config = config.clone();
            braid_system::netns::run_in(ns, move || create_here(&config)).map_err(|source| {
                LinkError::System {
                    link: String::new(),
                    source,
                }
            })?
        }
    }
}

/// TUN offloads are on unless the environment says `BRAID_TUN_OFFLOAD=0`.
fn offload_enabled() -> bool {
    std::env::var("BRAID_TUN_OFFLOAD").map_or(true, |v| v != "0")
}

fn create_here(config: &LinkConfig) -> Result<SyncDevice, LinkError> {
    let io = |what: &str| {
        let link = config.name.clone();
        let what = what.to_string();
        move |source| LinkError::Io { link, what, source }
    };
    let mtu = u16::try_from(config.mtu).unwrap_or(u16::MAX);
    let device = DeviceBuilder::new()
        .name(&config.name)
        .mtu(mtu)
        // IFF_VNET_HDR with TSO/USO: large reads split here, coalesced writes (GRO).
        // BRAID_TUN_OFFLOAD=0 turns it off (for comparisons).
        .offload(offload_enabled())
        .enable(false)
        .build_sync()
        .map_err(io("creating its TUN device"))?;
    // Only the planned link-local address: no kernel-generated one for Babel to pick up.
    let gen_mode = format!("/proc/sys/net/ipv6/conf/{}/addr_gen_mode", config.name);
    if let Err(e) = std::fs::write(&gen_mode, "1") {
        tracing::debug!(link = %config.name, "{gen_mode}: {e}");
    }
    device
        .enabled(true)
        .map_err(io("bringing its TUN device up"))?;
    if let (Some(net), None) = (config.link4, config.peer_link4) {
        device
            .add_address_v4(net.addr(), net.prefix_len())
            .map_err(io("adding its IPv4 link address"))?;
    }
    if let Some(net) = config.link_local6 {
        device
            .add_address_v6(net.addr(), net.prefix_len())
            .map_err(io("adding its IPv6 link-local address"))?;
    }
    device
        .set_nonblocking(true)
        .map_err(io("making its TUN device non-blocking"))?;
    let index = device
        .if_index()
        .map_err(io("reading its interface index"))?;
    set_group(config, index)?;
    Ok(device)
}

/// Interface groups have no ioctl, and point-to-point addresses need netlink too. The
/// netlink work runs on its own thread, in the TUN device's namespace.
fn set_group(config: &LinkConfig, index: u32) -> Result<(), LinkError> {
    let group = config.group;
    let p2p = config.link4.zip(config.peer_link4);
    let system = |source| LinkError::System {
        link: config.name.clone(),
        source,
    };
    // The helper thread inherits this thread's namespace: the TUN device's.
    braid_system::netns::block_on(move || async move {
        let nl = Netlink::connect()?;
        nl.set_group(index, group).await?;
        if let Some((local, peer)) = p2p {
            nl.add_peer_address_v4(index, local.addr(), peer).await?;
        }
        Ok(())
    })
    .map_err(system)?
    .map_err(system)
}

/// `TUNSETCARRIER` (`_IOW('T', 226, int)`, linux/if_tun.h, Linux 4.19 and later).
const TUNSETCARRIER: libc::c_ulong = 0x4004_54e2;

/// Turns the TUN device's carrier on or off (the kernel's `IFF_LOWER_UP`, operstate
/// `UP`/`DOWN`). The device stays administratively up and its descriptor keeps working:
/// only the routing engines and the kernel's routes see a link without carrier.
///
/// The kernel announces a lost carrier through its link watch, which handles such
/// (non-urgent) events at most once a second for the whole machine (net/core/link_watch.c:
/// "the linkwatch delay for non-urgent events"): a second link dying within a second of
/// another one (the other end of the same cut, another link to the same peer) was
/// announced to babeld and BIRD up to 1 s late (measured 0.95 s in the lab, issue 13). So
/// braid, right after taking the carrier away, also sets the link's operstate to
/// `DORMANT` (`RTM_SETLINK` with `IFLA_OPERSTATE`, rtnetlink(7)): the kernel announces that
/// at once, with the link's flags as they are now, without `IFF_LOWER_UP` (the carrier)
/// and `IFF_RUNNING` (the operstate), so BIRD (`check link`, which follows
/// `IFF_LOWER_UP`) and babeld (`link-detect`, `IFF_RUNNING`) take the link out then. The
/// carrier's own event follows and sets the operstate `DOWN`; when the link is alive
/// again, carrier on sets it `UP` (an urgent event), and braid asks for `UP` too in case
/// the carrier's off event was not handled yet.
///
/// The ioctl takes the kernel's RTNL lock, which other processes creating and deleting
/// interfaces can hold for a long time: it runs on a thread of its own (one per process,
/// changes applied in order) on a duplicate of the descriptor, never on a link's reactor,
/// whose other links would stall meanwhile.
pub(crate) fn set_carrier(
    device: &SyncDevice,
    on: bool,
    link: &str,
    netns: Option<&str>,
) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    let fd = device.as_fd().try_clone_to_owned()?;
    carrier_thread()?
        .send(CarrierChange {
            fd,
            on,
            link: link.to_string(),
            netns: netns.map(str::to_string),
        })
        .map_err(|_| std::io::Error::other("the carrier thread is gone"))
}

/// One change for the carrier thread.
struct CarrierChange {
    fd: std::os::fd::OwnedFd,
    on: bool,
    link: String,
    netns: Option<String>,
}

/// Starts the carrier thread if it is not running yet (see [`set_carrier`]).
pub(crate) fn start_carrier_thread() -> std::io::Result<()> {
    carrier_thread().map(|_| ())
}

fn carrier_thread() -> std::io::Result<&'static std::sync::mpsc::Sender<CarrierChange>> {
    static SENDER: std::sync::OnceLock<std::sync::mpsc::Sender<CarrierChange>> =
        std::sync::OnceLock::new();
    if let Some(sender) = SENDER.get() {
        return Ok(sender);
    }
    let (tx, rx) = std::sync::mpsc::channel::<CarrierChange>();
    std::thread::Builder::new()
        .name("braid-carrier".into())
        .spawn(move || {
            for change in rx {
                let CarrierChange {
                    fd,
                    on,
                    link,
                    netns,
                } = change;
                // The carrier first: its bit changes at once (the announcement waits for
                // the link watch), so the operstate's announcement, sent at once, shows
                // the link without carrier too (BIRD follows IFF_LOWER_UP, babeld
                // IFF_RUNNING).
                if let Err(e) = ioctl_carrier(&fd, on) {
                    tracing::warn!(%link, on, "setting the carrier of its TUN device: {e}");
                    continue;
                }
                let operstate = if on { IF_OPER_UP } else { IF_OPER_DORMANT };
                set_operstate(netns.as_deref(), &link, operstate);
            }
        })?;
    // Two links racing here start two threads; the loser's thread ends when its sender
    // (dropped below) goes.
    Ok(SENDER.get_or_init(|| tx))
}

/// `IF_OPER_UP` and `IF_OPER_DORMANT` (RFC 2863 operstates, linux/if.h).
const IF_OPER_UP: u8 = 6;
const IF_OPER_DORMANT: u8 = 5;

/// Sets `link`'s operstate (see [`set_carrier`]); a failure is logged, the carrier still
/// decides (only later). The route netlink socket is opened for the one request and closed
/// (deaths and revivals are rare; a socket kept open would be one more descriptor held
/// for the daemon's lifetime from the first death on).
fn set_operstate(netns: Option<&str>, link: &str, operstate: u8) {
    let opened = match netns {
        None => route_socket(),
        Some(ns) => braid_system::netns::run_in(ns, route_socket)
            .map_err(std::io::Error::other)
            .and_then(|r| r),
    };
    let socket = match opened {
        Ok(socket) => socket,
        Err(err) => {
            tracing::warn!(%link, "opening a route netlink socket for its operstate: {err}");
            return;
        }
    };
    if let Err(e) = request_operstate(&socket, link, operstate) {
        tracing::warn!(%link, operstate, "setting the operstate of its TUN device: {e}");
    }
}

/// A `NETLINK_ROUTE` socket in the calling thread's namespace, with a receive timeout.
fn route_socket() -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor just returned by socket(2), owned by nothing else.
    let socket = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: SO_RCVTIMEO reads a timeval through the pointer, which lives across the call.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    Ok(socket)
}

/// The `RTM_SETLINK` request that sets `link`'s operstate: an `ifinfomsg` naming no index,
/// the device named by `IFLA_IFNAME`, and `IFLA_OPERSTATE` (rtnetlink(7)).
fn operstate_request(link: &str, operstate: u8, seq: u32) -> Vec<u8> {
    fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
        let len = 4 + value.len();
        out.extend_from_slice(&(len as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    let mut body = vec![0u8; 16]; // ifinfomsg: family, type, index 0, flags, change
    let mut name = link.as_bytes().to_vec();
    name.push(0);
    attr(&mut body, libc::IFLA_IFNAME, &name);
    attr(&mut body, libc::IFLA_OPERSTATE, &[operstate]);
    let mut message = Vec::with_capacity(16 + body.len());
    message.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    message.extend_from_slice(&libc::RTM_SETLINK.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    message.extend_from_slice(&flags.to_ne_bytes());
    message.extend_from_slice(&seq.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(&body);
    message
}

/// Sends the request and waits (at most 1 s) for the kernel's answer.
fn request_operstate(
    socket: &std::os::fd::OwnedFd,
    link: &str,
    operstate: u8,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let message = operstate_request(link, operstate, seq);
    // SAFETY: send(2) reads `message.len()` bytes from a live buffer.
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            0,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut answer = [0u8; 1024];
    loop {
        // SAFETY: recv(2) writes at most `answer.len()` bytes into a live buffer.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                answer.as_mut_ptr().cast(),
                answer.len(),
                0,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // nlmsghdr (len, type, flags, seq, pid), then for NLMSG_ERROR the error code.
        let n = n as usize;
        if n < 20 {
            return Err(std::io::Error::other("a short netlink answer"));
        }
        let kind = u16::from_ne_bytes([answer[4], answer[5]]);
        let their_seq = u32::from_ne_bytes([answer[8], answer[9], answer[10], answer[11]]);
        if kind != libc::NLMSG_ERROR as u16 || their_seq != seq {
            continue; // an answer to an earlier request that timed out
        }
        let code = i32::from_ne_bytes([answer[16], answer[17], answer[18], answer[19]]);
        return match code {
            0 => Ok(()),
            e => Err(std::io::Error::from_raw_os_error(-e)),
        };
    }
}

fn ioctl_carrier(fd: &std::os::fd::OwnedFd, on: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let value: libc::c_int = on.into();
    // SAFETY: TUNSETCARRIER reads one int through the pointer, which lives across the call;
    // the descriptor is an open duplicate of the TUN device's, owned by the caller.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETCARRIER as _, &value) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod operstate_tests {
    use super::*;

    #[test]
    fn the_operstate_request_names_the_device_and_the_state() {
        let m = operstate_request("brd4x40004", IF_OPER_DORMANT, 7);
        let u16_at = |i: usize| u16::from_ne_bytes([m[i], m[i + 1]]);
        let u32_at = |i: usize| u32::from_ne_bytes([m[i], m[i + 1], m[i + 2], m[i + 3]]);
        // nlmsghdr + ifinfomsg (index 0) + IFLA_IFNAME (4 + 11, padded to 16) +
        // IFLA_OPERSTATE (4 + 1, padded to 8).
        assert_eq!(m.len(), 16 + 16 + 16 + 8);
        assert_eq!(u32_at(0) as usize, m.len());
        assert_eq!(u16_at(4), libc::RTM_SETLINK);
        assert_eq!(u16_at(6), (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16);
        assert_eq!(u32_at(8), 7);
        assert_eq!(u32_at(20), 0, "no interface index: by name");
        assert_eq!((u16_at(32), u16_at(34)), (15, libc::IFLA_IFNAME));
        assert_eq!(&m[36..47], b"brd4x40004\0");
        assert_eq!((u16_at(48), u16_at(50)), (5, libc::IFLA_OPERSTATE));
        assert_eq!(m[52], IF_OPER_DORMANT);
    }
}
