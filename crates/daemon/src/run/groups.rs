//! Interface group accounting (ranet's): which interfaces are braid's, and removing what
//! is left of earlier links.

use super::*;

/// Group accounting as ranet does it: every active interface becomes stale, the links braid
/// runs become active again, and what is still stale is deleted.
pub async fn account_groups<B: LinkBackend>(
    r: &Reconciler<B>,
) -> Result<(), braid_system::SystemError> {
    match r.loaded() {
        Some(loaded) => account_interfaces(&loaded.config, &braid_interfaces(r)).await,
        None => Ok(()),
    }
}

/// The interfaces braid runs now: its links, and its bridge (see
/// [`crate::routing::extra_interfaces`]).
pub(super) fn braid_interfaces<B: LinkBackend>(r: &Reconciler<B>) -> BTreeSet<String> {
    r.running()
        .map(str::to_string)
        .chain(crate::routing::extra_interfaces(r))
        .collect()
}

/// [`account_groups`] for `config`'s groups, with `running` the interfaces braid runs:
/// needs no access to the daemon's state (the daemon runs it without its lock).
pub(super) async fn account_interfaces(
    config: &braid_model::Config,
    running: &BTreeSet<String>,
) -> Result<(), braid_system::SystemError> {
    let nl = Netlink::connect_in(config.netns.as_deref())?;
    // One listing, then only the changes: an unchanged mesh costs one netlink dump. The
    // result is ranet's (stale everything, re-activate what runs, delete the stale group)
    // without touching the links that stay.
    for link in nl.links().await? {
        // The VRF counts as braid's only when braid made it (it is in the active group).
        let own_vrf =
            !config.vrf.is_empty() && link.name == config.vrf && link.group == config.active_group;
        let wanted = running.contains(&link.name) || own_vrf;
        if link.group == config.active_group && !wanted {
            nl.set_group(link.index, config.stale_group).await?;
        } else if wanted && link.group != config.active_group {
            nl.set_group(link.index, config.active_group).await?;
        }
    }
    nl.delete_group(config.stale_group).await
}

/// [`account_groups`] with what it needs read under the lock, and the netlink work done
/// without it.
pub(super) async fn account<B: LinkBackend + 'static>(
    d: &Shared<B>,
) -> Result<(), braid_system::SystemError> {
    let (loaded, running) = {
        let r = d.lock().await;
        (r.loaded_shared(), braid_interfaces(&r))
    };
    match loaded {
        Some(loaded) => account_interfaces(&loaded.config, &running).await,
        None => Ok(()),
    }
}

/// Deletes both of braid's interface groups (for `down`, also after a crash).
pub async fn delete_groups(
    netns: Option<&str>,
    active: u32,
    stale: u32,
) -> Result<(), braid_system::SystemError> {
    let nl = Netlink::connect_in(netns)?;
    nl.delete_group(active).await?;
    nl.delete_group(stale).await
}
