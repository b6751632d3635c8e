//! What the engine counts. Plain numbers: the I/O shell publishes them (atomics, status,
//! metrics) after each batch.

/// Counters of one link, since it started. Bytes are WireGuard datagram sizes (UDP
/// payload), as `wg show` counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Authenticated datagrams received: WireGuard messages and bond probes that passed
    /// their check (as `tx` counts the probes sent).
    pub rx_packets: u64,
    /// Bytes of those datagrams.
    pub rx_bytes: u64,
    /// Keepalives among them: data messages with nothing inside (32 bytes; WireGuard
    /// paper section 5.4.6), which braid's link liveness sends at a fixed interval, so
    /// their count tells how many the path lost.
    pub rx_keepalives: u64,
    /// Datagrams that are not valid WireGuard or bond probes (bad length, type, MAC or
    /// AEAD tag): forged or corrupted traffic.
    pub dropped_bad_packet: u64,
    /// Messages for a key or session this link does not have (also a handshake response
    /// for no handshake it waits for: a duplicate, or one that crossed a newer one), and
    /// probes for a path or probe epoch it does not know (yet).
    pub dropped_unknown_key: u64,
    /// Replayed or too old data packets, data the reorder buffer refused, and probe
    /// replies that came after their request timed out or twice.
    pub dropped_replay: u64,
    /// Packets from the TUN with nowhere to go (no endpoint, no usable path).
    pub dropped_no_route: u64,
    /// Handshake initiations refused: replayed or older timestamps (a peer that
    /// restarted with a clock behind its last run), or under load without a cookie.
    pub rejected_handshakes: u64,
    /// Unauthenticated datagrams answered with a cookie reply (the link is under load).
    pub cookie_replies: u64,
}
