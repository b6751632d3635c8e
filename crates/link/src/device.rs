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
/// The ioctl takes the kernel's RTNL lock, which other processes creating and deleting
/// interfaces can hold for a long time: it runs on a thread of its own (one per process,
/// changes applied in order) on a duplicate of the descriptor, never on a link's reactor,
/// whose other links would stall meanwhile.
pub(crate) fn set_carrier(device: &SyncDevice, on: bool, link: &str) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    let fd = device.as_fd().try_clone_to_owned()?;
    carrier_thread()?
        .send((fd, on, link.to_string()))
        .map_err(|_| std::io::Error::other("the carrier thread is gone"))
}

type CarrierChange = (std::os::fd::OwnedFd, bool, String);

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
            for (fd, on, link) in rx {
                if let Err(e) = ioctl_carrier(&fd, on) {
                    tracing::warn!(%link, on, "setting the carrier of its TUN device: {e}");
                }
            }
        })?;
    // Two links racing here start two threads; the loser's thread ends when its sender
    // (dropped below) goes.
    Ok(SENDER.get_or_init(|| tx))
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
