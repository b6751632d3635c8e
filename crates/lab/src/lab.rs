//! Building and tearing down the namespaces, the underlay and the link shaping.

use crate::LabError;
use crate::command::{in_netns, ip, namespaces, nft_script, run};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// How a pair of nodes is joined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkShape {
    /// tbf rate limit in Mbit/s on both ends.
    pub rate_mbit: Option<u32>,
    /// Random loss in percent on both ends (nftables `numgen random`).
    pub loss_percent: Option<u8>,
}

#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Short name (1..=8 of a-z, 0-9); namespaces are `brd-<name>-n<i>`.
    pub name: String,
    pub nodes: usize,
    /// Shape of every pair's underlay.
    pub shape: LinkShape,
}

impl LabSpec {
    pub fn new(name: &str, nodes: usize) -> Self {
        Self {
            name: name.to_string(),
            nodes,
            shape: LinkShape::default(),
        }
    }
}

/// A node's underlay addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeAddrs {
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

/// Underlay addresses of node `i` (1-based): 198.18.0.i and 2001:db8::i.
pub fn node_addrs(i: usize) -> NodeAddrs {
    NodeAddrs {
        v4: Ipv4Addr::new(198, 18, 0, i as u8),
        v6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16),
    }
}

/// The prefix of every namespace of the lab `name`.
pub fn namespace_prefix(name: &str) -> String {
    format!("brd-{name}-")
}

/// A running lab. Dropping it removes everything it made.
#[derive(Debug)]
pub struct Lab {
    spec: LabSpec,
    children: Mutex<Vec<Child>>,
    torn_down: bool,
}

const NFT_TABLE: &str = "braid_lab";

impl Lab {
    /// Builds the lab. On failure, whatever was made is removed again.
    pub fn up(spec: LabSpec) -> Result<Lab, LabError> {
        let valid = (1..=8).contains(&spec.name.len())
            && spec
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid {
            return Err(LabError::BadName(spec.name));
        }
        if !(1..=50).contains(&spec.nodes) {
            return Err(LabError::BadSize(spec.nodes));
        }
        // Leftovers of an earlier run under the same name would collide.
        cleanup(Some(&spec.name))?;
        let lab = Lab {
            spec,
            children: Mutex::new(Vec::new()),
            torn_down: false,
        };
        lab.build()?; // on error, `lab` drops here and removes what exists
        Ok(lab)
    }

    fn build(&self) -> Result<(), LabError> {
        let n = self.spec.nodes;
        for i in 1..=n {
            let ns = self.ns(i);
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            for (key, value) in [
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv6.conf.all.forwarding", "1"),
                ("net.ipv6.conf.default.accept_dad", "0"),
                ("net.ipv6.conf.all.accept_dad", "0"),
            ] {
                in_netns(&ns, "sysctl", &["-qw", &format!("{key}={value}")])?;
            }
            nft_script(
                &ns,
                &format!(
                    "table inet {NFT_TABLE} {{\n chain output {{ type filter hook output priority 0; }}\n chain input {{ type filter hook input priority 0; }}\n}}\n"
                ),
            )?;
        }
        for i in 1..=n {
            for j in (i + 1)..=n {
                self.join(i, j)?;
            }
        }
        Ok(())
    }

    /// One veth pair between nodes i and j: `u<j>` in i, `u<i>` in j.
    fn join(&self, i: usize, j: usize) -> Result<(), LabError> {
        let (ns_i, ns_j) = (self.ns(i), self.ns(j));
        let (name_i, name_j) = (format!("u{j}"), format!("u{i}"));
        ip(&[
            "link", "add", &name_i, "netns", &ns_i, "type", "veth", "peer", "name", &name_j,
            "netns", &ns_j,
        ])?;
        for (ns, dev, me, peer) in [(&ns_i, &name_i, i, j), (&ns_j, &name_j, j, i)] {
            let (me, peer) = (node_addrs(me), node_addrs(peer));
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/32", me.v4),
                "dev",
                dev,
            ])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/128", me.v6),
                "dev",
                dev,
                "nodad",
            ])?;
            ip(&[
                "-n",
                ns,
                "route",
                "add",
                &format!("{}/32", peer.v4),
                "dev",
                dev,
            ])?;
            ip(&[
                "-n",
                ns,
                "route",
                "add",
                &format!("{}/128", peer.v6),
                "dev",
                dev,
            ])?;
        }
        self.shape(i, j, self.spec.shape)
    }

    /// Namespace name of node `i` (1-based).
    pub fn ns(&self, i: usize) -> String {
        format!("{}n{i}", namespace_prefix(&self.spec.name))
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn nodes(&self) -> usize {
        self.spec.nodes
    }

    pub fn addrs(&self, i: usize) -> NodeAddrs {
        node_addrs(i)
    }

    /// Sets the shape of the pair (i, j), on both ends; `LinkShape::default()` clears it.
    pub fn shape(&self, i: usize, j: usize, shape: LinkShape) -> Result<(), LabError> {
        for (me, peer) in [(i, j), (j, i)] {
            let (ns, dev) = (self.ns(me), format!("u{peer}"));
            match shape.rate_mbit {
                Some(rate) => {
                    // Burst of at least one 64 KiB GSO packet, and 1 ms of traffic.
                    let burst = (rate as usize * 1000 / 8).max(65536 + 1514);
                    ip(&["-n", &ns, "link", "set", &dev, "txqueuelen", "1000"])?;
                    run(
                        "tc",
                        &[
                            "-n",
                            &ns,
                            "qdisc",
                            "replace",
                            "dev",
                            &dev,
                            "root",
                            "tbf",
                            "rate",
                            &format!("{rate}mbit"),
                            "burst",
                            &burst.to_string(),
                            "latency",
                            "20ms",
                        ],
                    )?;
                }
                None => {
                    // Removing a qdisc that is not there fails; ignore that case.
                    let _ = run("tc", &["-n", &ns, "qdisc", "del", "dev", &dev, "root"]);
                }
            }
            let loss = shape.loss_percent.map(|p| match p {
                100.. => format!("oifname \"{dev}\" drop"),
                p => format!("oifname \"{dev}\" numgen random mod 100 < {p} drop"),
            });
            self.set_rule(me, &format!("loss-{peer}"), loss)?;
        }
        Ok(())
    }

    /// Drops all traffic between nodes i and j, both ways (nft in both namespaces).
    pub fn cut(&self, i: usize, j: usize) -> Result<(), LabError> {
        for (me, peer) in [(i, j), (j, i)] {
            let dev = format!("u{peer}");
            self.set_rule(
                me,
                &format!("cut-out-{peer}"),
                Some(format!("oifname \"{dev}\" drop")),
            )?;
            self.set_rule(
                me,
                &format!("cut-in-{peer}"),
                Some(format!("iifname \"{dev}\" drop")),
            )?;
        }
        Ok(())
    }

    /// Undoes [`Lab::cut`].
    pub fn restore(&self, i: usize, j: usize) -> Result<(), LabError> {
        for (me, peer) in [(i, j), (j, i)] {
            self.set_rule(me, &format!("cut-out-{peer}"), None)?;
            self.set_rule(me, &format!("cut-in-{peer}"), None)?;
        }
        Ok(())
    }

    /// Replaces the nft rule tagged `tag` (a comment) in node `me`'s table; `None` removes it.
    fn set_rule(&self, me: usize, tag: &str, rule: Option<String>) -> Result<(), LabError> {
        let ns = self.ns(me);
        let listing = in_netns(&ns, "nft", &["-a", "list", "table", "inet", NFT_TABLE])?;
        let text = String::from_utf8_lossy(&listing.stdout).to_string();
        let marker = format!("comment \"{tag}\"");
        let mut chain = "";
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("chain ") {
                chain = rest.split_whitespace().next().unwrap_or("");
            }
            if line.contains(&marker)
                && let Some(handle) = line.rsplit("# handle ").next()
            {
                in_netns(
                    &ns,
                    "nft",
                    &[
                        "delete",
                        "rule",
                        "inet",
                        NFT_TABLE,
                        chain,
                        "handle",
                        handle.trim(),
                    ],
                )?;
            }
        }
        if let Some(rule) = rule {
            let chain = if rule.starts_with("iifname") {
                "input"
            } else {
                "output"
            };
            nft_script(
                &ns,
                &format!("add rule inet {NFT_TABLE} {chain} {rule} comment \"{tag}\"\n"),
            )?;
        }
        Ok(())
    }

    /// Runs a command inside node `i` and waits for it.
    pub fn exec(
        &self,
        i: usize,
        program: &str,
        args: &[&str],
    ) -> Result<std::process::Output, LabError> {
        in_netns(&self.ns(i), program, args)
    }

    /// Like [`Lab::exec`] but returns the output even when the command fails.
    pub fn try_exec(
        &self,
        i: usize,
        program: &str,
        args: &[&str],
    ) -> Result<std::process::Output, LabError> {
        let mut all = vec!["netns", "exec"];
        let ns = self.ns(i);
        all.push(&ns);
        all.push(program);
        all.extend_from_slice(args);
        Command::new("ip")
            .args(&all)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| LabError::Spawn {
                command: format!("ip {}", all.join(" ")),
                source,
            })
    }

    /// True when node `from` can ping `to` (an address) within a second.
    pub fn ping(&self, from: usize, to: &str) -> bool {
        self.try_exec(from, "ping", &["-c", "1", "-W", "1", to])
            .is_ok_and(|o| o.status.success())
    }

    /// Starts a background process inside node `i`; the lab kills it (by PID) on teardown.
    /// Returns its PID.
    pub fn spawn(&self, i: usize, command: &mut Command) -> Result<u32, LabError> {
        self.spawn_logged(i, command, None)
    }

    /// Like [`Lab::spawn`], with stdout and stderr appended to `log` when given.
    pub fn spawn_logged(
        &self,
        i: usize,
        command: &mut Command,
        log: Option<&std::path::Path>,
    ) -> Result<u32, LabError> {
        let ns = self.ns(i);
        let program = command.get_program().to_string_lossy().to_string();
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().to_string())
            .collect();
        let mut wrapped = Command::new("ip");
        wrapped.args(["netns", "exec", &ns, &program]).args(&args);
        for (key, value) in command.get_envs() {
            match value {
                Some(v) => wrapped.env(key, v),
                None => wrapped.env_remove(key),
            };
        }
        wrapped.stdin(Stdio::null());
        if let Some(path) = log {
            let open = || {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| LabError::Write {
                        path: path.display().to_string(),
                        source,
                    })
            };
            wrapped.stdout(open()?).stderr(open()?);
        }
        let child = wrapped.spawn().map_err(|source| LabError::Spawn {
            command: format!("ip netns exec {ns} {program} {}", args.join(" ")),
            source,
        })?;
        let pid = child.id();
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(child);
        Ok(pid)
    }

    /// Stops the processes the lab started (SIGTERM, then SIGKILL after 3 s).
    pub fn stop_children(&self) {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        for child in children.iter_mut() {
            // SAFETY: kill on a PID this lab spawned and has not yet reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        for child in children.iter_mut() {
            while std::time::Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if !matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        children.clear();
    }

    /// Leaves the lab running after this handle is gone (for `braid lab up`); spawned
    /// processes keep running too. `braid lab down` or [`cleanup`] removes it.
    pub fn detach(mut self) {
        self.torn_down = true;
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Removes the lab now, reporting errors (dropping the lab does the same, silently).
    pub fn down(mut self) -> Result<(), LabError> {
        self.torn_down = true;
        self.stop_children();
        cleanup(Some(&self.spec.name))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        self.stop_children();
        if let Err(e) = cleanup(Some(&self.spec.name)) {
            tracing::error!("lab {}: cleanup: {e}", self.spec.name);
        }
    }
}

/// Removes the namespaces of the lab `name` (or of every braid lab when `None`), with
/// everything in them. Only namespaces whose names start with `brd-` are touched.
pub fn cleanup(name: Option<&str>) -> Result<(), LabError> {
    let prefix = match name {
        Some(name) => namespace_prefix(name),
        None => "brd-".to_string(),
    };
    let mut first_error = None;
    for ns in namespaces()?
        .into_iter()
        .filter(|ns| ns.starts_with(&prefix))
    {
        kill_processes_in(&ns);
        if let Err(e) = ip(&["netns", "del", &ns]) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Ends processes still running in a lab namespace (a killed run's daemons), by PID.
fn kill_processes_in(ns: &str) {
    let Ok(out) = ip(&["netns", "pids", ns]) else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        // SAFETY: kill on a PID that `ip netns pids` reports inside a lab namespace.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}
