//! The address plan: from the network's IPv6 allocation, an IPv4 pool and a node's index,
//! the node's /64, its address ::1, its IPv4 /24 (gateway .254), its IPv4 link address and
//! its IPv6 link-local address. Worked examples: shared/seeds/001 and docs/address-plan.md.

use braid_model::PublicKey;
use braid_model::extensions::AddressPlanConfig;
use ipnet::{Ipv4Net, Ipv6Net};
use sha2::{Digest, Sha256};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Everything a node's index decides.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeAddresses {
    /// The node's index in the registry's address plan (1-based; 0 is the upstream segment).
    pub index: u64,
    /// The node's /64 of the allocation.
    pub prefix6: Ipv6Net,
    /// The node's own address in it: `<prefix>::1`.
    pub address6: Ipv6Addr,
    /// The node's IPv4 /24 (the index's bytes in the pool's subnet bits).
    pub subnet4: Option<Ipv4Net>,
    /// `.254` of the /24.
    pub gateway4: Option<Ipv4Addr>,
    /// `169.254.<hi>.<lo>/16`, on every link, so IPv4 can be routed over them.
    pub link4: Option<Ipv4Net>,
}

/// Why an index has no addresses in the plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Index 0 names the upstream segment, never a node.
    #[error("index 0 is reserved for the upstream segment")]
    IndexZero,
    /// The index's /64 does not fit in the IPv6 allocation.
    #[error("index {index} is beyond the allocation {allocation}, which holds indexes 1..={max}")]
    BeyondAllocation {
        /// The offending index.
        index: u64,
        /// The allocation from the registry.
        allocation: Ipv6Net,
        /// The largest index the allocation holds.
        max: u64,
    },
    /// The index's /24 does not fit in the IPv4 pool.
    #[error("index {index} is too large for the IPv4 pool {pool}, which holds indexes 1..={max}")]
    TooLargeForPool {
        /// The offending index.
        index: u64,
        /// The IPv4 pool from the registry.
        pool: Ipv4Net,
        /// The largest index the pool holds.
        max: u64,
    },
}

/// Number of /64s in the allocation (2^(64 - len)), saturated to u64.
pub fn subnets6(allocation: &Ipv6Net) -> u64 {
    let bits = 64 - u32::from(allocation.prefix_len().min(64));
    1u64.checked_shl(bits).unwrap_or(u64::MAX)
}

/// Number of /24s in the pool (2^(24 - len)).
pub fn subnets4(pool: &Ipv4Net) -> u64 {
    1u64 << (24 - u32::from(pool.prefix_len().min(24)))
}

/// The largest index the plan can give: index 0 is the upstream segment; with IPv4, the
/// link address 169.254.255.255 (index 65535) is the /16's broadcast address.
pub fn max_index(plan: &AddressPlanConfig) -> u64 {
    let v6 = subnets6(&plan.ipv6).saturating_sub(1);
    match &plan.ipv4_pool {
        Some(pool) => v6.min(subnets4(pool) - 1).min(65534),
        None => v6,
    }
}

fn check_index(plan: &AddressPlanConfig, index: u64) -> Result<(), AddressError> {
    if index == 0 {
        return Err(AddressError::IndexZero);
    }
    let max6 = subnets6(&plan.ipv6).saturating_sub(1);
    if index > max6 {
        return Err(AddressError::BeyondAllocation {
            index,
            allocation: plan.ipv6,
            max: max6,
        });
    }
    if let Some(pool) = plan.ipv4_pool {
        let max = (subnets4(&pool) - 1).min(65534);
        if index > max {
            return Err(AddressError::TooLargeForPool { index, pool, max });
        }
    }
    Ok(())
}

/// The addresses of the node with `index`.
pub fn node_addresses(plan: &AddressPlanConfig, index: u64) -> Result<NodeAddresses, AddressError> {
    check_index(plan, index)?;
    let base = u128::from(plan.ipv6.network());
    let prefix = base | (u128::from(index) << 64);
    let prefix6 =
        Ipv6Net::new(Ipv6Addr::from(prefix), 64).expect("64 is a valid IPv6 prefix length");
    let address6 = Ipv6Addr::from(prefix | 1);
    let (subnet4, gateway4, link4) = match plan.ipv4_pool {
        None => (None, None, None),
        Some(pool) => {
            let net = u32::from(pool.network()) | ((index as u32) << 8);
            let subnet =
                Ipv4Net::new(Ipv4Addr::from(net), 24).expect("24 is a valid IPv4 prefix length");
            let [_, _, hi, lo] = (index as u32).to_be_bytes();
            let link = Ipv4Net::new(Ipv4Addr::new(169, 254, hi, lo), 16)
                .expect("16 is a valid IPv4 prefix length");
            (Some(subnet), Some(Ipv4Addr::from(net | 254)), Some(link))
        }
    };
    Ok(NodeAddresses {
        index,
        prefix6,
        address6,
        subnet4,
        gateway4,
        link4,
    })
}

/// The index a node gets when the registry gives none: a hash of its public key, mapped
/// into 1..=max_index. Collisions are possible; validation reports them.
pub fn derived_index(plan: &AddressPlanConfig, key: &PublicKey) -> u64 {
    let max = max_index(plan).max(1);
    1 + key_hash(key) % max
}

/// The node's IPv6 link-local address, the same on all of its links: `fe80::<index>` with
/// an address plan (readable), else `fe80::` plus 64 bits of a hash of the public key.
pub fn link_local6(index: Option<u64>, key: &PublicKey) -> Ipv6Addr {
    let id = match index {
        Some(index) => index,
        // Clear the universal/local bit: the identifier is not derived from a MAC.
        None => key_hash(key) & !(0x02 << 56),
    };
    Ipv6Addr::from((0xfe80u128 << 112) | u128::from(id))
}

fn key_hash(key: &PublicKey) -> u64 {
    let digest = Sha256::digest(key.0);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(v6: &str, v4: Option<&str>) -> AddressPlanConfig {
        AddressPlanConfig {
            ipv6: v6.parse().unwrap(),
            ipv4_pool: v4.map(|p| p.parse().unwrap()),
            bridge: "braid0".into(),
        }
    }

    #[test]
    fn design_note_worked_example() {
        // 2a02:1802:5e::/48; the NR prefix 2a02:1802:5e:010a::/64 has ::1,
        // 10.1.10.254/24 (01 = 1, 0a = 10) and link address 169.254.1.10/16.
        let p = plan("2a02:1802:5e::/48", Some("10.0.0.0/8"));
        let a = node_addresses(&p, 0x010a).unwrap();
        assert_eq!(a.prefix6.to_string(), "2a02:1802:5e:10a::/64");
        assert_eq!(a.address6.to_string(), "2a02:1802:5e:10a::1");
        assert_eq!(a.subnet4.unwrap().to_string(), "10.1.10.0/24");
        assert_eq!(a.gateway4.unwrap().to_string(), "10.1.10.254");
        assert_eq!(a.link4.unwrap().to_string(), "169.254.1.10/16");
    }

    #[test]
    fn a_48_holds_65536_64s() {
        assert_eq!(subnets6(&"2a02:1802:5e::/48".parse().unwrap()), 65536);
    }

    #[test]
    fn static_routing_figure_prefixes() {
        // $prefix:1::1/64, $prefix:a::1/64, $prefix:a1c2::1/64 and the exit's $prefix:aaaa::1.
        let p = plan("2a02:1802:5e::/48", None);
        for (index, want) in [
            (1, "2a02:1802:5e:1::1"),
            (0xa, "2a02:1802:5e:a::1"),
            (0xa1c2, "2a02:1802:5e:a1c2::1"),
            (0xaaaa, "2a02:1802:5e:aaaa::1"),
        ] {
            assert_eq!(
                node_addresses(&p, index).unwrap().address6.to_string(),
                want
            );
        }
    }

    #[test]
    fn a_40_spans_0000_to_00ff() {
        // "2a02:1802:0000:: to 2a02:1802:00ff::"
        let p = plan("2a02:1802::/40", None);
        assert_eq!(subnets6(&p.ipv6), 1 << 24);
        let last = node_addresses(&p, (1 << 24) - 1).unwrap();
        assert_eq!(last.prefix6.to_string(), "2a02:1802:ff:ffff::/64");
        assert!(matches!(
            node_addresses(&p, 1 << 24),
            Err(AddressError::BeyondAllocation { .. })
        ));
    }

    #[test]
    fn the_29_arithmetic() {
        // 2a05:2380::/29: 2048 /40s of 16M /64s each, about 34 billion /64s,
        // from 2a05:2380:: to 2a05:2387:ffff:ffff::.
        let p = plan("2a05:2380::/29", None);
        let per_40 = subnets6(&"2a05:2380::/40".parse().unwrap());
        assert_eq!(per_40, 16_777_216);
        assert_eq!(subnets6(&p.ipv6) / per_40, 2048);
        assert_eq!(subnets6(&p.ipv6), 34_359_738_368);
        let last = node_addresses(&p, subnets6(&p.ipv6) - 1).unwrap();
        assert_eq!(last.prefix6.to_string(), "2a05:2387:ffff:ffff::/64");
    }

    #[test]
    fn a_29_with_the_default_pool_is_limited_by_ipv4() {
        let p = plan("2a05:2380::/29", Some("10.0.0.0/8"));
        assert_eq!(max_index(&p), 65534);
        assert!(matches!(
            node_addresses(&p, 70_000),
            Err(AddressError::TooLargeForPool { .. })
        ));
    }

    #[test]
    fn a_64_allocation_has_no_index_for_nodes() {
        let p = plan("2001:db8::/64", None);
        assert!(matches!(
            node_addresses(&p, 1),
            Err(AddressError::BeyondAllocation { max: 0, .. })
        ));
    }

    #[test]
    fn smaller_pools_shift_the_index() {
        let p = plan("2001:db8::/48", Some("10.20.0.0/16"));
        let a = node_addresses(&p, 7).unwrap();
        assert_eq!(a.subnet4.unwrap().to_string(), "10.20.7.0/24");
        assert!(matches!(
            node_addresses(&p, 256),
            Err(AddressError::TooLargeForPool { max: 255, .. })
        ));
    }

    #[test]
    fn index_zero_is_reserved() {
        assert_eq!(
            node_addresses(&plan("2001:db8::/48", None), 0),
            Err(AddressError::IndexZero)
        );
    }

    #[test]
    fn derived_indexes_are_stable_and_in_range() {
        let p = plan("2001:db8::/48", Some("10.0.0.0/8"));
        for b in 0..=255u8 {
            let key = PublicKey([b; 32]);
            let i = derived_index(&p, &key);
            assert_eq!(i, derived_index(&p, &key));
            assert!((1..=max_index(&p)).contains(&i));
            assert!(node_addresses(&p, i).is_ok());
        }
    }

    #[test]
    fn link_local_is_readable_with_a_plan_and_stable_without() {
        let key = PublicKey([7; 32]);
        assert_eq!(link_local6(Some(0x10a), &key).to_string(), "fe80::10a");
        let a = link_local6(None, &key);
        assert_eq!(a, link_local6(None, &key));
        assert_eq!(a.segments()[0], 0xfe80);
        assert_ne!(a, link_local6(None, &PublicKey([8; 32])));
    }
}
