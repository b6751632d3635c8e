//! DNS look-ups of named endpoints, off the run loop and side by side.

use super::*;

/// A DNS endpoint's fresh answer, for the link it was looked up for.
pub(super) type Resolved = (braid_plan::LinkPlan, std::net::SocketAddr);

/// The names of the links whose look-up is queued or under way, shared with the rounds.
pub(super) type Busy = Arc<std::sync::Mutex<BTreeSet<String>>>;

/// A link's place in [`Busy`], given back when its look-up ends or is dropped.
pub(super) struct Lookup {
    pub(super) link: braid_plan::LinkPlan,
    pub(super) busy: Busy,
}

impl Drop for Lookup {
    fn drop(&mut self) {
        self.busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.link.name);
    }
}

/// At most this many DNS look-ups of a round run at once (each holds a thread of tokio's
/// blocking pool while getaddrinfo(3) waits, up to its timeout of 5 s per try and server).
pub(super) const LOOKUPS_AT_ONCE: usize = 16;

/// Looks up the DNS endpoints of `links` (off the loop, see
/// [`crate::userspace::resolve_async`]), up to [`LOOKUPS_AT_ONCE`] at a time, and sends
/// each answer to the loop as it comes, which points the link at it
/// ([`Reconciler::resolved`]). A name whose server does not answer holds up only itself:
/// one after the other, a round with a few such names kept every other link (and the
/// next round, a reload's new links among them) waiting for their timeouts (26 s for two
/// such names in the lab).
pub(super) async fn resolve_endpoints(
    links: Vec<Lookup>,
    answers: tokio::sync::mpsc::Sender<Resolved>,
) {
    let mut lookups = tokio::task::JoinSet::new();
    let mut links = links.into_iter();
    loop {
        while lookups.len() < LOOKUPS_AT_ONCE
            && let Some(link) = links.next()
        {
            lookups.spawn(async move {
                let endpoint = link.link.endpoint.as_ref()?;
                let addr = crate::userspace::resolve_async(endpoint, link.link.family).await?;
                Some((link.link.clone(), addr))
            });
        }
        let Some(done) = lookups.join_next().await else {
            return;
        };
        if let Ok(Some(answer)) = done
            && answers.send(answer).await.is_err()
        {
            return;
        }
    }
}
