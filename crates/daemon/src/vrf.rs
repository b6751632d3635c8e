//! VRF isolation (the config's `vrf`): the VRF device exists (created with a free routing
//! table when missing, in braid's active group so that `down` removes it), every link and
//! the node's bridge are enslaved to it, and overlay routes go into its table. The links'
//! UDP sockets are not bound to it: the underlay stays in the default VRF.

use crate::kernel::add_addresses;
use crate::load::Loaded;
use braid_system::links::Vrf;
use braid_system::{Netlink, SystemError};

/// The config's VRF, created if missing; `None` when the config has none.
pub async fn ensure(nl: &Netlink, loaded: &Loaded) -> Result<Option<Vrf>, SystemError> {
    let config = &loaded.config;
    if config.vrf.is_empty() {
        return Ok(None);
    }
    nl.ensure_vrf(&config.vrf, config.active_group)
        .await
        .map(Some)
}

/// Puts every running link into `vrf` (or out of any VRF with `None`), adding back the
/// addresses the move drops. Links already in place are not touched.
pub async fn enslave_links<'a>(
    nl: &Netlink,
    loaded: &Loaded,
    running: impl Iterator<Item = &'a str>,
    vrf: Option<Vrf>,
) -> Result<(), SystemError> {
    // One listing for all links: a node with a thousand links must not dump a thousand
    // interfaces a thousand times.
    let present: std::collections::HashMap<String, braid_system::LinkInfo> = nl
        .links()
        .await?
        .into_iter()
        .map(|l| (l.name.clone(), l))
        .collect();
    for name in running {
        let Some(link) = loaded.plan.links.iter().find(|l| l.name == name) else {
            continue;
        };
        let Some(info) = present.get(name) else {
            continue;
        };
        if nl.set_controller_of(info, vrf.map(|v| v.index)).await? {
            tracing::info!(link = name, vrf = %loaded.config.vrf, "link moved into the VRF");
            add_addresses(nl, info.index, &link.addresses).await?;
        }
    }
    Ok(())
}
