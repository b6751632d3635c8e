//! braid-bond: the pure core of multi-path bonding. One [`Bond`] per link: its paths,
//! the scheduler that spreads packets over them, authenticated probes that measure them
//! and fail over, and the reorder buffer on the receiving side. No I/O, no clock (every
//! entry point takes `now`), no randomness of its own (the epoch is passed in). The
//! design, wire format and numbers are in `docs/bonding.md`.
//!
//! # Driving it from a worker
//!
//! A per-link worker owns one UDP socket per configured path (or, on the far side, one
//! socket whose peers' source addresses are the paths), one boringtun `Tunn` and the
//! TUN device. It calls, in this order:
//!
//! 1. Set up: [`ProbeKeys::derive`] (own static secret, peer public key),
//!    [`Bond::new`] (config, keys, a random `u64` epoch, `now`), then
//!    [`Bond::add_path`] per configured path, in config order (ids 0, 1, …). The far
//!    side adds none: it learns them.
//! 2. TUN → network, per plaintext IP packet: [`Bond::pick`] gives the path(s);
//!    `Tunn::encapsulate` once; send the same datagram once per entry picked (every
//!    live path for `redundant`; the same path twice when `earliest-arrival` repeats
//!    packets on a lossy path: the peer's replay window drops the second copy that
//!    arrives).
//!    Handshakes, cookies and keepalives from `Tunn` go on [`Bond::pick_control`]
//!    (record them with [`Bond::record_sent`]).
//! 3. Network → TUN, per datagram received on path `p` (the far side maps the source
//!    address with [`Bond::path_by_addr`]):
//!    - [`is_probe`]: [`Bond::handle_probe`] (far side, any source:
//!      [`Bond::handle_probe_from`]). Then send what [`Bond::poll_transmit`] returns.
//!    - otherwise read [`wg::data_header`] (receiver index, counter) *before*
//!      `Tunn::decapsulate`; if decapsulation yields a packet for the tunnel: far side
//!      [`Bond::learn_path`] (source address), then [`Bond::on_authenticated`] (path,
//!      datagram length; only for datagrams that decrypted, so a repeated packet's
//!      second copy is not counted), then [`Bond::push_received`] (index, counter, plaintext): on
//!      [`Verdict::Deliver`] write the plaintext to the TUN; in every case then write
//!      all of [`Bond::pop_received`]. Anything else `decapsulate` returns (handshake
//!      responses, queued packets) goes out as usual; on the far side, call
//!      `learn_path` for a source only once traffic from it has authenticated.
//! 4. Timers: sleep until [`Bond::poll_timeout`] (together with the Tunn's own timer);
//!    then [`Bond::handle_timeout`] and drain [`Bond::poll_transmit`],
//!    [`Bond::pop_received`] and [`Bond::poll_event`].
//! 5. Netlink: [`Bond::path_down`] when a path's interface goes down or its route goes
//!    away (out at once), [`Bond::path_up`] when it is back; [`Bond::add_path`] /
//!    [`Bond::remove_path`] as uplinks come and go; [`Bond::set_path_spec`] on reload.
//! 6. Status: [`Bond::status`] (serde `Serialize`) for `braid status`.
//!
//! A link with a single path and a peer that never probes (e.g. wireguard-go) is plain
//! WireGuard on the wire: the bond sends probes, which the peer drops, and every packet
//! goes on the one path.

pub mod arrival;
pub mod bond;
pub mod flow_hash;
pub mod loss;
pub mod owd;
pub mod path;
pub mod probe;
pub mod prober;
pub mod rate;
pub mod reorder;
pub mod rtt;
pub mod scheduler;
pub mod status;
pub mod wg;
pub mod window;

pub use arrival::Excluded;
pub use bond::{Bond, BondConfig, BondError, Event, ReorderMode, Transmit};
pub use path::{Counters, DownReason, PathId, PathSpec, PathState};
pub use probe::{ProbeKeys, is_probe};
pub use prober::{ProbeCounters, ProbeDrop};
pub use reorder::{Released, ReorderConfig, Verdict};
pub use scheduler::{MAX_PATHS, Picks, Scheduler};
pub use status::{BondStatus, PathStatus, ReorderStatus};
