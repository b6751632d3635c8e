//! Where a datagram goes: which of the link's sockets, to which address.

use std::net::SocketAddr;

/// One of the link's UDP sockets: the link's own, or the socket of configured path `n`
/// (a bonded link owns one socket per configured path, bound to its uplink).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Socket {
    Main,
    Path(u8),
}

/// A socket and a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    pub socket: Socket,
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
    pub fn one(route: Route) -> Self {
        let mut routes = Self::default();
        routes.push(route);
        routes
    }

    pub fn push(&mut self, route: Route) {
        if self.len < self.items.len() {
            self.items[self.len] = Some(route);
            self.len += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = Route> + '_ {
        self.items[..self.len].iter().flatten().copied()
    }
}

/// A datagram the engine wants sent, with its route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub route: Route,
    pub payload: Vec<u8>,
}
