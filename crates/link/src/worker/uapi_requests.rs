//! The link's UAPI requests (`wg show`, `wg set`), answered from the worker's state. The
//! requests come read and parsed from the UAPI thread (`crate::uapi`), so answering one
//! never waits for a client.

use super::{Worker, canonical};
use crate::uapi::Reply;
use braid_uapi::{DeviceInfo, PeerInfo, Request, errno};
use std::time::Instant;

impl Worker {
    /// Answers one request: `get=1` with the device and its peer, `set=1` with its errno.
    pub(super) fn answer_uapi(&mut self, request: Request, reply: Reply) {
        let answer = match request {
            Request::Get => braid_uapi::format_get(&self.device_info()),
            Request::Set(set) => braid_uapi::format_errno(self.apply_set(set)),
        };
        reply.send(answer);
    }

    pub(super) fn device_info(&self) -> DeviceInfo {
        let stats = self.counters.snapshot();
        DeviceInfo {
            private_key: self.private_key,
            listen_port: stats.listen_port,
            fwmark: self.fwmark,
            peers: vec![PeerInfo {
                public_key: self.peer_public_key,
                preshared_key: [0; 32],
                endpoint: self.engine.endpoint(),
                last_handshake: stats
                    .last_handshake
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()),
                rx_bytes: stats.rx_bytes,
                tx_bytes: stats.tx_bytes,
                persistent_keepalive: self.engine.keepalive().unwrap_or(0),
                allowed_ips: vec![
                    "0.0.0.0/0".parse().expect("literal"),
                    "::/0".parse().expect("literal"),
                ],
            }],
        }
    }

    /// `set=1`: the endpoint and keepalive of the link's one peer may change; keys, ports,
    /// marks, peers and allowed IPs come from braid's config and registry (EPERM).
    pub(super) fn apply_set(&mut self, set: braid_uapi::SetDevice) -> i32 {
        let same_key = set.private_key.is_none_or(|k| k == self.private_key);
        let same_port = set
            .listen_port
            .is_none_or(|p| p == self.counters.snapshot().listen_port);
        let same_mark = set.fwmark.is_none_or(|m| m == self.fwmark);
        let full: [ipnet::IpNet; 2] = [
            "0.0.0.0/0".parse().expect("literal"),
            "::/0".parse().expect("literal"),
        ];
        let peers_ok = set.peers.iter().all(|p| {
            p.public_key == self.peer_public_key
                && !p.remove
                && p.preshared_key.is_none_or(|k| k == [0; 32])
                && p.allowed_ips.iter().all(|ip| full.contains(ip))
        });
        if !(same_key && same_port && same_mark && peers_ok) || set.replace_peers {
            return errno::EPERM;
        }
        let now = Instant::now();
        for peer in set.peers {
            if let Some(endpoint) = peer.endpoint {
                self.engine.set_endpoint(now, Some(canonical(endpoint)));
            }
            if let Some(keepalive) = peer.persistent_keepalive {
                let keepalive = (keepalive > 0).then_some(keepalive);
                if keepalive != self.engine.keepalive() {
                    self.engine.set_keepalive(now, keepalive);
                }
            }
        }
        self.drain(now);
        0
    }
}
