//! Where a datagram goes: which of the link's sockets, to which address.

use std::net::SocketAddr;

/// One of the link's UDP sockets: the link's own, or the socket of configured path `n`
/// (a bonded link owns one socket per configured path, bound to its uplink).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Socket {
    /// The link's own socket (bound to its listen port).
    Main,
    /// The socket of configured path `n` (an index into [`EngineConfig::paths`](crate::EngineConfig::paths)).
    Path(u8),
}

/// A socket and a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// Which socket to send from.
    pub socket: Socket,
    /// The peer's address and port.
    pub to: SocketAddr,
}

/// The routes one encrypted data packet leaves on: one, or several for the redundant
/// scheduler. At most [`braid_bond::MAX_PATHS`].
#[derive(Debug, Clone, Copy)]
pub struct Routes {
    items: [Option<Route>; braid_bond::MAX_PATHS],
    len: usize,
}

impl Default for Routes {
    fn default() -> Self {
        Self {
            items: [None; braid_bond::MAX_PATHS],
            len: 0,
        }
    }
}

impl Routes {
    /// Routes holding just `route`.
    pub fn one(route: Route) -> Self {
        let mut routes = Self::default();
        routes.push(route);
        routes
    }

    /// Adds a route; beyond [`braid_bond::MAX_PATHS`] it is ignored.
    pub fn push(&mut self, route: Route) {
        if self.len < self.items.len() {
            self.items[self.len] = Some(route);
            self.len += 1;
        }
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The routes in the order pushed.
    pub fn iter(&self) -> impl Iterator<Item = Route> + '_ {
        self.items[..self.len].iter().flatten().copied()
    }
}

/// A datagram the engine wants sent, with its route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub route: Route,
    /// The UDP payload: one WireGuard message.
    pub payload: Vec<u8>,
}
