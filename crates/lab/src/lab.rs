//! The [`Lab`]: building the nodes and their underlay, driving them, and tearing them down.

use crate::LabError;
use crate::children::Children;
use crate::command::{in_netns, namespaces, nft_script, run_unchecked};
use crate::namespace::{self, cleanup, namespace_name, namespace_prefix};
use crate::shaping::{self, LinkShape, PairState};
use crate::underlay::{self, NodeAddrs, node_addrs};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;

/// The most nodes a lab may have (a full mesh of 50 is 1225 veth pairs).
pub const MAX_NODES: usize = 50;

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    /// Short name, 1..=8 of a-z, 0-9; node `i` is the namespace `brd-<name>-n<i>`.
    pub name: String,
    /// How many nodes, 1..=[`MAX_NODES`].
    pub nodes: usize,
    /// Shape of every pair not listed in `shapes` (default: none).
    pub shape: LinkShape,
    /// Shapes of particular pairs, keyed by node indices (1-based, either order).
    pub shapes: BTreeMap<(usize, usize), LinkShape>,
}

impl LabSpec {
    /// `nodes` unshaped nodes named `brd-<name>-n1...`.
    pub fn new(name: &str, nodes: usize) -> Self {
        Self {
            name: name.to_string(),
            nodes,
            shape: LinkShape::default(),
            shapes: BTreeMap::new(),
        }
    }

    /// Gives the pair (i, j) its own shape.
    pub fn with_shape(mut self, i: usize, j: usize, shape: LinkShape) -> Self {
        self.shapes.insert((i.min(j), i.max(j)), shape);
        self
    }

    fn validate(&self) -> Result<(), LabError> {
        let valid_name = (1..=8).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid_name {
            return Err(LabError::BadName(self.name.clone()));
        }
        if !(1..=MAX_NODES).contains(&self.nodes) {
            return Err(LabError::BadSize(self.nodes));
        }
        for &(i, j) in self.shapes.keys() {
            check_pair(i, j, self.nodes)?;
        }
        Ok(())
    }
}

fn check_node(i: usize, nodes: usize) -> Result<(), LabError> {
    if (1..=nodes).contains(&i) {
        Ok(())
    } else {
        Err(LabError::BadNode { node: i, nodes })
    }
}

/// The pair (i, j) as (smaller, larger), after checking both are distinct lab nodes.
fn check_pair(i: usize, j: usize, nodes: usize) -> Result<(usize, usize), LabError> {
    check_node(i, nodes)?;
    check_node(j, nodes)?;
    if i == j {
        return Err(LabError::SameNode(i));
    }
    Ok((i.min(j), i.max(j)))
}

/// A running lab: N namespaces joined by a full mesh of veth pairs.
///
/// Dropping it (also while a panic unwinds) ends the processes it spawned and deletes its
/// namespaces, and with them its veths; [`Lab::down`] does the same and reports errors.
#[derive(Debug)]
pub struct Lab {
    spec: LabSpec,
    /// The state of every pair that is shaped or cut, keyed (smaller, larger).
    pairs: Mutex<BTreeMap<(usize, usize), PairState>>,
    children: Children,
    torn_down: bool,
}

impl Lab {
    /// Builds the lab. Leftovers of an earlier lab with the same name are removed first;
    /// on failure, whatever was made is removed again.
    pub fn up(spec: LabSpec) -> Result<Lab, LabError> {
        spec.validate()?;
        let prefix = namespace_prefix(&spec.name);
        if namespaces()?.iter().any(|ns| ns.starts_with(&prefix)) {
            tracing::warn!(lab = %spec.name, "lab: replacing the leftovers of an earlier run");
            cleanup(Some(&spec.name))?;
        }
        tracing::info!(lab = %spec.name, nodes = spec.nodes, "lab: building");
        let lab = Lab {
            spec,
            pairs: Mutex::new(BTreeMap::new()),
            children: Children::default(),
            torn_down: false,
        };
        lab.build()?; // on error, `lab` drops here and removes what exists
        Ok(lab)
    }

    fn build(&self) -> Result<(), LabError> {
        let n = self.spec.nodes;
        for i in 1..=n {
            let ns = self.ns(i);
            namespace::create(&ns)?;
            nft_script(&ns, &shaping::table_script(i, n))?;
        }
        underlay::create_links(n, |i| self.ns(i))?;
        for i in 1..=n {
            underlay::configure_node(&self.ns(i), i, n)?;
        }
        for i in 1..=n {
            for j in (i + 1)..=n {
                let shape = self
                    .spec
                    .shapes
                    .get(&(i, j))
                    .copied()
                    .unwrap_or(self.spec.shape);
                if shape != LinkShape::default() {
                    self.shape(i, j, shape)?;
                }
            }
        }
        Ok(())
    }

    /// Namespace name of node `i` (1-based): `brd-<name>-n<i>`.
    pub fn ns(&self, i: usize) -> String {
        namespace_name(&self.spec.name, i)
    }

    /// The lab's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// How many nodes the lab has.
    pub fn nodes(&self) -> usize {
        self.spec.nodes
    }

    /// Underlay addresses of node `i`.
    pub fn addrs(&self, i: usize) -> NodeAddrs {
        node_addrs(i)
    }

    /// The name of node `i`'s veth toward node `j` (`u<j>`).
    pub fn iface(&self, _i: usize, j: usize) -> String {
        underlay::iface(j)
    }

    /// Changes the pair's state on both ends, remembering it once both are done.
    fn update(
        &self,
        i: usize,
        j: usize,
        change: impl FnOnce(&mut PairState),
    ) -> Result<(), LabError> {
        let key = check_pair(i, j, self.spec.nodes)?;
        let mut pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        let old = pairs.get(&key).copied();
        let mut new = old.unwrap_or_default();
        change(&mut new);
        for (me, peer) in [(i, j), (j, i)] {
            shaping::apply(&self.ns(me), peer, old, new)?;
        }
        pairs.insert(key, new);
        Ok(())
    }

    /// Sets the shape of the pair (i, j) on both ends; `LinkShape::default()` clears it.
    /// A cut stays in place.
    pub fn shape(&self, i: usize, j: usize, shape: LinkShape) -> Result<(), LabError> {
        tracing::info!(lab = %self.spec.name, i, j, ?shape, "lab: shaping pair");
        self.update(i, j, |state| state.shape = shape)
    }

    /// Drops all traffic between nodes i and j, both ways, including traffic other nodes
    /// forward over that pair (nftables in both namespaces).
    pub fn cut(&self, i: usize, j: usize) -> Result<(), LabError> {
        tracing::info!(lab = %self.spec.name, i, j, "lab: cutting pair");
        self.update(i, j, |state| state.cut = true)
    }

    /// Undoes [`Lab::cut`]; the pair's shape stays.
    pub fn restore(&self, i: usize, j: usize) -> Result<(), LabError> {
        tracing::info!(lab = %self.spec.name, i, j, "lab: restoring pair");
        self.update(i, j, |state| state.cut = false)
    }

    /// Runs `program args...` inside node `i` and waits for it; a nonzero exit is an error
    /// naming the command, with its stderr.
    pub fn exec(&self, i: usize, program: &str, args: &[&str]) -> Result<Output, LabError> {
        check_node(i, self.spec.nodes)?;
        in_netns(&self.ns(i), program, args)
    }

    /// Like [`Lab::exec`] but returns the output whatever the exit status.
    pub fn try_exec(&self, i: usize, program: &str, args: &[&str]) -> Result<Output, LabError> {
        check_node(i, self.spec.nodes)?;
        let ns = self.ns(i);
        let mut all = vec!["netns", "exec", &ns, program];
        all.extend_from_slice(args);
        run_unchecked("ip", &all)
    }

    /// True when node `from` gets an answer from `to` (an address) within a second.
    pub fn ping(&self, from: usize, to: &str) -> bool {
        self.try_exec(from, "ping", &["-c", "1", "-W", "1", to])
            .is_ok_and(|o| o.status.success())
    }

    /// Starts `command` in the background inside node `i` and returns its PID; the lab
    /// ends it (SIGTERM, then SIGKILL) when it goes. Its program, arguments, environment
    /// and working directory are used; stdin is null.
    pub fn spawn(&self, i: usize, command: &mut Command) -> Result<u32, LabError> {
        self.spawn_logged(i, command, None)
    }

    /// Like [`Lab::spawn`], with stdout and stderr appended to `log` when given.
    pub fn spawn_logged(
        &self,
        i: usize,
        command: &mut Command,
        log: Option<&Path>,
    ) -> Result<u32, LabError> {
        check_node(i, self.spec.nodes)?;
        self.children.spawn(&self.ns(i), command, log)
    }

    /// Like [`Lab::spawn_logged`], with a private tmpfs on /run/wireguard for the process:
    /// WireGuard UAPI sockets are named after interfaces, and nodes of a lab have links of
    /// the same names. (`ip netns exec` already gives the process its own mount namespace.)
    /// Reach the sockets with `nsenter -t PID -m -n wg show`.
    pub fn spawn_private_uapi(
        &self,
        i: usize,
        command: &Command,
        log: Option<&std::path::Path>,
    ) -> Result<u32, LabError> {
        let mut wrapped = Command::new("sh");
        wrapped.args(["-c", "mkdir -p /run/wireguard && mount -t tmpfs -o mode=0755 brd-uapi /run/wireguard && exec \"$@\"", "sh"]);
        wrapped.arg(command.get_program()).args(command.get_args());
        self.spawn_logged(i, &mut wrapped, log)
    }

    /// Ends the processes the lab started (SIGTERM, then SIGKILL after 3 s).
    pub fn stop_children(&self) {
        self.children.stop_all();
    }

    /// Leaves the lab running after this handle is gone (for `braid lab up`); spawned
    /// processes keep running too. [`cleanup`] (`braid lab down`) removes it later.
    pub fn detach(mut self) {
        self.torn_down = true;
        self.children.forget();
    }

    /// Removes the lab now: ends its processes and deletes its namespaces, reporting
    /// errors (dropping the lab does the same and only logs them).
    pub fn down(mut self) -> Result<(), LabError> {
        self.torn_down = true;
        tracing::info!(lab = %self.spec.name, "lab: removing");
        self.children.stop_all();
        cleanup(Some(&self.spec.name))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        tracing::info!(lab = %self.spec.name, "lab: removing (drop)");
        self.children.stop_all();
        if let Err(e) = cleanup(Some(&self.spec.name)) {
            tracing::error!(lab = %self.spec.name, "lab: cleanup: {e}");
        }
    }
}
