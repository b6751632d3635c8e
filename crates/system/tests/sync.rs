//! The synchronous netlink sockets against the running kernel: interface counters over
//! route netlink, and the WireGuard family over generic netlink (present or not).

use braid_system::SystemError;
use braid_system::sync::RouteSocket;
use braid_system::wireguard::Genl;

#[test]
fn counters_of_an_interface_and_of_a_missing_one() {
    let mut route = RouteSocket::connect_in(None).expect("route netlink socket");
    let lo = route.counters("lo").expect("counters of lo");
    assert!(lo.is_some(), "lo has counters");
    // Twice on one socket: the sequence numbers keep answers apart.
    assert!(route.counters("lo").unwrap().is_some());
    assert_eq!(route.counters("brd-no-such0").unwrap(), None);
}

#[test]
fn the_wireguard_family_is_found_exactly_when_the_kernel_has_it() {
    let loaded = std::path::Path::new("/sys/module/wireguard").exists();
    match Genl::connect() {
        Ok(mut genl) => {
            assert!(loaded, "family found without the module");
            // No such device: an error from the kernel, not a hang.
            assert!(genl.device("brd-no-such0").is_err());
        }
        Err(SystemError::NoWireGuard) => assert!(!loaded, "module loaded, family not found"),
        Err(e) => panic!("unexpected error: {e}"),
    }
}
