//! The [`Lab`]: building the nodes and their underlay, driving them, and tearing them down.

use crate::LabError;
use crate::children::Children;
use crate::command::{in_netns, namespaces, nft_script, run_unchecked};
use crate::impair::{self, DirectionStatus, Impairer, WanImpairment, WanShape};
use crate::namespace::{self, cleanup, namespace_name, namespace_prefix};
use crate::shaping::{self, LinkShape, PairState};
use crate::underlay::{self, NodeAddrs, node_addrs};
use crate::wans;
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
    /// Uplinks per node (1-based order, the last value repeating); empty for the pair
    /// mesh. When set, nodes reach each other through the hub (see [`crate::wans`]).
    pub wans: Vec<usize>,
}

impl LabSpec {
    /// `nodes` unshaped nodes named `brd-<name>-n1...`.
    pub fn new(name: &str, nodes: usize) -> Self {
        Self {
            name: name.to_string(),
            nodes,
            shape: LinkShape::default(),
            shapes: BTreeMap::new(),
            wans: Vec::new(),
        }
    }

    /// Gives the nodes WAN uplinks instead of the pair mesh: `wans[i-1]` uplinks for node
    /// i, the last value repeating (`&[2]`: every node has 2; `&[2, 1]`: n1 has 2, the
    /// others 1). Nodes reach each other only through the hub namespace `brd-<name>-hub`.
    pub fn with_wans(mut self, wans: &[usize]) -> Self {
        self.wans = wans.to_vec();
        self
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
        wans::validate(&self.wans, self.nodes)?;
        if !self.wans.is_empty() && (!self.shapes.is_empty() || self.shape != LinkShape::default())
        {
            return Err(LabError::Topology(
                "pair shapes need the pair mesh; a lab with --wans is shaped per uplink (Lab::shape_wan)".into(),
            ));
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
    /// How to start the impairment forwarder ([`Lab::set_impairer`]).
    impairer: Mutex<Option<Impairer>>,
    torn_down: bool,
}

impl Lab {
    /// Builds the lab. Leftovers of an earlier lab with the same name are removed first;
    /// on failure, whatever was made is removed again.
    pub fn up(spec: LabSpec) -> Result<Self, LabError> {
        spec.validate()?;
        let prefix = namespace_prefix(&spec.name);
        if namespaces()?.iter().any(|ns| ns.starts_with(&prefix)) {
            tracing::warn!(lab = %spec.name, "lab: replacing the leftovers of an earlier run");
            cleanup(Some(&spec.name))?;
        }
        tracing::info!(lab = %spec.name, nodes = spec.nodes, "lab: building");
        let lab = Self {
            spec,
            pairs: Mutex::new(BTreeMap::new()),
            children: Children::default(),
            impairer: Mutex::new(None),
            torn_down: false,
        };
        lab.build()?; // on error, `lab` drops here and removes what exists
        Ok(lab)
    }

    /// A handle on the running lab `name` (built earlier, e.g. by `braid lab up`), to
    /// shape, cut and restore its uplinks or run commands in it from another process.
    /// Nodes and uplinks are read from the namespaces and the `wan<k>` veths. Dropping the
    /// handle leaves the lab running; pair shapes of a mesh lab are not known to it.
    pub fn attach(name: &str) -> Result<Self, LabError> {
        let prefix = namespace_prefix(name);
        let all = namespaces()?;
        let mut nodes = 0;
        while all.contains(&namespace_name(name, nodes + 1)) {
            nodes += 1;
        }
        if nodes == 0 {
            return Err(LabError::Topology(format!(
                "no lab `{name}` is running (no namespace {prefix}n1); start one with `braid lab up --name {name}`"
            )));
        }
        let mut spec = LabSpec::new(name, nodes);
        if all.contains(&wans::hub_name(name)) {
            for i in 1..=nodes {
                spec.wans
                    .push(wans::count_uplinks(&namespace_name(name, i))?);
            }
        }
        spec.validate()?;
        Ok(Self {
            spec,
            pairs: Mutex::new(BTreeMap::new()),
            children: Children::default(),
            impairer: Mutex::new(None),
            torn_down: true,
        })
    }

    fn build(&self) -> Result<(), LabError> {
        let n = self.spec.nodes;
        if !self.spec.wans.is_empty() {
            for i in 1..=n {
                namespace::create(&self.ns(i))?;
            }
            return wans::build(&self.spec.name, n, &self.spec.wans, |i| self.ns(i));
        }
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

    /// Underlay addresses of node `i` (with uplinks: those of uplink 0, which the
    /// registry publishes).
    pub fn addrs(&self, i: usize) -> NodeAddrs {
        node_addrs(i)
    }

    /// The name of node `i`'s veth toward node `j` (`u<j>`; pair mesh only).
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
        if self.has_wans() {
            return Err(LabError::Topology(format!(
                "the pair ({i}, {j}) has no veth of its own: this lab has WAN uplinks through the hub; shape an uplink with shape_wan (`braid lab wan`); a pair can only be cut or restored"
            )));
        }
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
    /// forward over that pair (nftables in both namespaces). In a lab with uplinks the hub
    /// drops what goes between any of i's uplinks and any of j's; each still reaches the
    /// other nodes.
    pub fn cut(&self, i: usize, j: usize) -> Result<(), LabError> {
        tracing::info!(lab = %self.spec.name, i, j, "lab: cutting pair");
        self.set_cut(i, j, true)
    }

    /// Undoes [`Lab::cut`]; the pair's shape stays.
    pub fn restore(&self, i: usize, j: usize) -> Result<(), LabError> {
        tracing::info!(lab = %self.spec.name, i, j, "lab: restoring pair");
        self.set_cut(i, j, false)
    }

    fn set_cut(&self, i: usize, j: usize, cut: bool) -> Result<(), LabError> {
        if self.has_wans() {
            check_pair(i, j, self.spec.nodes)?;
            return wans::set_pair_cut(&self.spec.name, &self.spec.wans, i, j, cut);
        }
        self.update(i, j, |state| state.cut = cut)
    }

    /// True when the nodes have WAN uplinks through the hub ([`LabSpec::with_wans`]).
    pub fn has_wans(&self) -> bool {
        !self.spec.wans.is_empty()
    }

    /// How many uplinks node `i` has (0 in a pair-mesh lab).
    pub fn wans(&self, i: usize) -> usize {
        wans::wans_of(&self.spec.wans, i)
    }

    /// The uplink counts as given to [`LabSpec::with_wans`] (empty for the pair mesh).
    pub fn wans_spec(&self) -> &[usize] {
        &self.spec.wans
    }

    /// The hub namespace, `brd-<name>-hub` (it exists only when [`Lab::has_wans`]).
    pub fn hub(&self) -> String {
        wans::hub_name(&self.spec.name)
    }

    /// Node `i`'s addresses on uplink `k` (`198.18.<k>.<i>`, `2001:db8:<k>::<i>`).
    pub fn wan_addrs(&self, i: usize, k: usize) -> NodeAddrs {
        wans::wan_addrs(i, k)
    }

    fn check_wan(&self, i: usize, k: usize) -> Result<(), LabError> {
        check_node(i, self.spec.nodes)?;
        if !self.has_wans() {
            return Err(LabError::Topology(
                "this lab has no WAN uplinks; build it with LabSpec::with_wans (`braid lab up --wans N`)".into(),
            ));
        }
        let n = self.wans(i);
        if k >= n {
            return Err(LabError::BadWan {
                node: i,
                wan: k,
                wans: n,
            });
        }
        Ok(())
    }

    /// Shapes node `i`'s uplink `k` (0-based) in both directions: a tbf rate on both veth
    /// ends, random loss in the hub. `LinkShape::default()` clears it; a cut stays. An
    /// impairment of the uplink ([`Lab::impair_wan`]) is removed.
    pub fn shape_wan(&self, i: usize, k: usize, shape: LinkShape) -> Result<(), LabError> {
        self.check_wan(i, k)?;
        tracing::info!(lab = %self.spec.name, i, k, ?shape, "lab: shaping uplink");
        self.unimpair(i, k)?;
        wans::shape(&self.spec.name, &self.ns(i), i, k, shape)
    }

    /// Tells the lab how to start the impairment forwarder (needed before the first
    /// [`Lab::impair_wan`] unless one already runs in the hub): e.g. the `braid` binary
    /// with `["lab", "impair"]`, or `braid-lab-impair`. The lab ends a forwarder it started
    /// when it goes (unless detached); `cleanup` ends any.
    pub fn set_impairer(&self, impairer: Impairer) {
        *self.impairer.lock().unwrap_or_else(|p| p.into_inner()) = Some(impairer);
    }

    /// Impairs node `i`'s uplink `k` per direction in the forwarder (see
    /// [`crate::impair`]), starting the forwarder if none runs; changes apply at once,
    /// also while traffic runs. A kernel shape of the uplink ([`Lab::shape_wan`]) is
    /// removed; a cut stays. A clear impairment removes the uplink's queue rules.
    pub fn impair_wan(
        &self,
        i: usize,
        k: usize,
        impairment: &WanImpairment,
    ) -> Result<(), LabError> {
        self.check_wan(i, k)?;
        impairment.validate().map_err(LabError::Impair)?;
        tracing::info!(lab = %self.spec.name, i, k, ?impairment, "lab: impairing uplink");
        if impairment.is_clear() {
            return self.unimpair(i, k);
        }
        let hub = self.hub();
        if impair::request(&hub, impair::Request::Status)?.is_none() {
            let impairer = self
                .impairer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .ok_or_else(|| {
                    LabError::Impair(
                        "no forwarder runs in the hub and the lab does not know how to start one: call Lab::set_impairer (e.g. the braid binary with `lab impair`, or braid-lab-impair)".into(),
                    )
                })?;
            impair::start(&hub, &impairer, &self.children)?;
        }
        let (down, up) = (
            wans::impair_queue(i, k, false),
            wans::impair_queue(i, k, true),
        );
        impair::request(
            &hub,
            impair::Request::Set {
                uplink: wans::hub_iface(i, k),
                queue_down: down,
                queue_up: up,
                impairment: Box::new(*impairment),
            },
        )?
        .ok_or_else(|| LabError::Impair("the forwarder went away".into()))?;
        wans::set_queue_rules(
            &self.spec.name,
            i,
            k,
            (!impairment.down.is_clear()).then_some(down),
            (!impairment.up.is_clear()).then_some(up),
        )?;
        wans::shape(&self.spec.name, &self.ns(i), i, k, LinkShape::default())
    }

    /// Shapes node `i`'s uplink `k` as `braid lab wan` asks: by the kernel
    /// ([`Lab::shape_wan`]) or by the forwarder ([`Lab::impair_wan`]).
    pub fn shape_uplink(&self, i: usize, k: usize, shape: &WanShape) -> Result<(), LabError> {
        match shape {
            WanShape::Kernel(s) => self.shape_wan(i, k, *s),
            WanShape::Impaired(imp) => self.impair_wan(i, k, imp),
        }
    }

    /// Every impaired direction's settings and counters, from the forwarder (empty when
    /// none runs).
    pub fn impair_status(&self) -> Result<Vec<DirectionStatus>, LabError> {
        if !self.has_wans() {
            return Ok(Vec::new());
        }
        Ok(impair::request(&self.hub(), impair::Request::Status)?
            .map(|r| r.status)
            .unwrap_or_default())
    }

    /// Removes node `i`'s uplink `k` from the forwarder: its queue rules go and, when a
    /// forwarder runs, its directions pass everything (packets it holds still leave on time).
    fn unimpair(&self, i: usize, k: usize) -> Result<(), LabError> {
        wans::set_queue_rules(&self.spec.name, i, k, None, None)?;
        impair::request(
            &self.hub(),
            impair::Request::Set {
                uplink: wans::hub_iface(i, k),
                queue_down: wans::impair_queue(i, k, false),
                queue_up: wans::impair_queue(i, k, true),
                impairment: Box::default(),
            },
        )
        .map(drop)
    }

    /// Drops all traffic over node `i`'s uplink `k`, both ways (in the hub; the veth stays
    /// up, as when a modem loses its line).
    pub fn cut_wan(&self, i: usize, k: usize) -> Result<(), LabError> {
        self.check_wan(i, k)?;
        tracing::info!(lab = %self.spec.name, i, k, "lab: cutting uplink");
        wans::set_cut(&self.spec.name, i, k, true)
    }

    /// Undoes [`Lab::cut_wan`]; the uplink's shape stays.
    pub fn restore_wan(&self, i: usize, k: usize) -> Result<(), LabError> {
        self.check_wan(i, k)?;
        tracing::info!(lab = %self.spec.name, i, k, "lab: restoring uplink");
        wans::set_cut(&self.spec.name, i, k, false)
    }

    /// Takes node `i`'s `wan<k>` down (`up = false`; its routes go with it) or brings it
    /// back up with its routes: link and route events, unlike the silent [`Lab::cut_wan`].
    pub fn set_wan_link(&self, i: usize, k: usize, up: bool) -> Result<(), LabError> {
        self.check_wan(i, k)?;
        tracing::info!(lab = %self.spec.name, i, k, up, "lab: uplink link state");
        wans::set_link(&self.ns(i), k, up)
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

    /// Sends `count` pings of `size` bytes from node `from` to `to`, 10 ms apart (1 s
    /// timeout each); returns how many got no answer.
    pub fn lost_pings(&self, from: usize, to: &str, count: u32, size: u32) -> u32 {
        let (count_s, size_s) = (count.to_string(), size.to_string());
        let args = [
            "-n", "-q", "-i", "0.01", "-W", "1", "-s", &size_s, "-c", &count_s, to,
        ];
        let Ok(out) = self.try_exec(from, "ping", &args) else {
            return count;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let received = text
            .split(", ")
            .find_map(|part| part.strip_suffix(" received"))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .unwrap_or(0);
        count.saturating_sub(received)
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
        log: Option<&Path>,
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
