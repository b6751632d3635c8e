//! Userspace WireGuard data plane (work in progress).
