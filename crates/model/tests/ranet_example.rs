//! The example config from ranet's README (shared/seeds/000), comments included, loads unchanged.

use braid_model::{AddressFamily, Config, Host};

/// The config from ranet's README, verbatim (JSON with `//` comments).
pub const RANET_EXAMPLE: &str = r#"{
  "registry": "/etc/ranet/registry.json", // path to registry file
  "private_key": "KOfdX54OtHAOMqSn2rytCDHSFNe8prw43O8A98z21Xg=", // wireguard private key
  "vrf": "ranet", // name of the VRF enslaving wireguard interfaces
  "stale_group": 1, // group id for stale interfaces
  "active_group": 2, // group id for active interfaces
  // useful for dual stack underlay network or multihoming scenarios
  "transport": [
    {
      "address_family": "ip4", // address family, ip4 or ip6
      "address": "example.com", // public address for inbound connection, can be left empty
      "send_port": 50153, // send port, MUST be unique across the whole mesh
      "mtu": 1400, // interface mtu
      "prefix": "ranet4x", // interface name prefix
      "fwmark": 54, // wireguard fwmark
      "random_port": false // whether to listen on random ports
    },
    {
      "address_family": "ip6",
      "address": "example.com",
      "send_port": 50154,
      "mtu": 1400,
      "prefix": "ranet6x",
      "fwmark": 54,
      "random_port": false
    }
  ],
  // arbitrary key value peers for humans
  "remarks" : {
    "location": "earth",
    "operator": "human"
  }
}"#;

#[test]
fn ranet_readme_example_loads_unchanged() {
    let (config, warnings) =
        Config::parse("ranet.json", RANET_EXAMPLE).expect("the ranet example loads");
    assert!(warnings.0.is_empty(), "{warnings}");
    assert_eq!(config.registry, "/etc/ranet/registry.json");
    assert_eq!(config.vrf, "ranet");
    assert_eq!((config.stale_group, config.active_group), (1, 2));
    assert_eq!(config.transports.len(), 2);
    let t = &config.transports[0];
    assert_eq!(t.address_family, AddressFamily::Ip4);
    assert_eq!(t.address, Some(Host::Name("example.com".into())));
    assert_eq!(
        (t.send_port, t.mtu, t.fwmark, t.random_port),
        (50153, 1400, 54, false)
    );
    assert_eq!(t.prefix, "ranet4x");
    assert_eq!(config.transports[1].send_port, 50154);
    assert_eq!(config.remarks["operator"], "human");
    assert_eq!(
        config.private_key.public_key().to_base64(),
        "sZp4uL3rvCumiTHMdvGWUqnqO2dOYv9UqkPQxjgqqRc="
    );
}
