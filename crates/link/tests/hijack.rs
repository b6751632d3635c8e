//! Issue 15, defect 1, with real processes and sockets: anyone who knows a node's public
//! key (the registry publishes it) sends 30 well-formed handshake initiations in one second
//! from another address. The link goes over its handshake rate and answers with cookie
//! replies, but its endpoint stays where the peer is and it keeps carrying traffic. (Before
//! the link engine, the endpoint moved to the sender and the link black-holed.)

mod common;

use braid_lab::{Lab, LabSpec};
use common::*;
use std::time::Duration;

#[test]
fn forged_initiations_from_a_stranger_neither_move_the_endpoint_nor_stop_the_link() {
    if !braid_lab::available_or_skip("forged_initiations_from_a_stranger") {
        return;
    }
    let lab = Lab::up(LabSpec::new(&lab_name("hj"), 2)).unwrap();
    let (a, b) = (key_pair(), key_pair());
    let la = start_in(&lab, 1, config("brdt2", 40004, None, &a, &b.1, 1));
    let _lb = start_in(
        &lab,
        2,
        config("brdt1", 40002, Some("198.18.0.1:40004"), &b, &a.1, 2),
    );
    wait_for("the link", || lab.ping(2, "169.254.0.1"));
    assert_eq!(la.stats().endpoint.unwrap().to_string(), "198.18.0.2:40002");
    // The stranger: 198.18.0.200 on node 2's side of the underlay, routed back from node 1.
    let peer_side = lab.iface(2, 1);
    lab.exec(
        2,
        "ip",
        &["addr", "add", "198.18.0.200/32", "dev", &peer_side],
    )
    .unwrap();
    lab.exec(
        1,
        "ip",
        &["route", "add", "198.18.0.200/32", "dev", &lab.iface(1, 2)],
    )
    .unwrap();
    let victim = a.1;
    braid_system::netns::run_in(&lab.ns(2), move || {
        let socket = std::net::UdpSocket::bind("198.18.0.200:40004").unwrap();
        for i in 0..30u8 {
            let mut seed = [0u8; 32];
            seed[0] = i;
            seed[1] = 0x5a;
            let mut forger = boringtun::noise::Tunn::new(
                x25519_dalek::StaticSecret::from(seed),
                x25519_dalek::PublicKey::from(victim),
                None,
                None,
                u32::from(i),
                None,
            );
            let mut buf = [0u8; 256];
            if let boringtun::noise::TunnResult::WriteToNetwork(p) =
                forger.format_handshake_initiation(&mut buf, false)
            {
                socket.send_to(p, "198.18.0.1:40004").unwrap();
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let s = la.stats();
    assert_eq!(
        s.endpoint.unwrap().to_string(),
        "198.18.0.2:40002",
        "the endpoint stayed with the peer: {s:?}"
    );
    assert!(
        s.rejected_handshakes + s.cookie_replies >= 30,
        "every forged initiation was refused or answered with a cookie: {s:?}"
    );
    let ok = (0..10).filter(|_| lab.ping(1, "169.254.0.2")).count();
    assert_eq!(ok, 10, "the link keeps carrying traffic");
}
