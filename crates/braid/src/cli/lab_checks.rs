//! What `braid lab up` checks once the daemons run: handshakes on every link, a ping over
//! every link (IPv6 link-local and IPv4 link address), and one throughput figure; and the
//! main job's checks: workloads, the exit, the bonded throughput and a failover.

use anyhow::{Context, Result, bail};
use braid_daemon::control::{self, Request};
use braid_daemon::status::Status;
use braid_lab::{BRIDGE, INTERNET_HOST, Lab, NodeFiles, workload_addrs};
use braid_plan::Plan;
use serde::Deserialize as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Waits until every node's daemon reports every link `up`.
pub(crate) fn wait_for_handshakes(sockets: &[std::path::PathBuf], timeout: Duration) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deadline = Instant::now() + timeout;
    loop {
        let mut waiting = Vec::new();
        for (i, socket) in sockets.iter().enumerate() {
            match runtime.block_on(control::call(socket, &Request::Status)) {
                Ok(reply) => match links_not_up(reply.status.as_ref()) {
                    Ok(links) => waiting.extend(links.iter().map(|l| format!("n{} {l}", i + 1))),
                    Err(e) => waiting.push(format!("n{}: {e:#}", i + 1)),
                },
                Err(e) => waiting.push(format!("n{}: {e}", i + 1)),
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "links without a handshake after {}s: {}",
                timeout.as_secs(),
                waiting.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The links of a daemon's status document (the typed [`Status`]) that are not `up`, each
/// as `name (state)`; an error when the reply has no document or it does not fit this
/// build's.
fn links_not_up(doc: Option<&serde_json::Value>) -> Result<Vec<String>> {
    let doc = doc.context("the daemon's status reply has no status document")?;
    let status = Status::deserialize(doc)
        .context("the daemon's status document does not fit this braid's (another version?)")?;
    Ok(status
        .links
        .iter()
        .filter(|l| l.state != "up")
        .map(|l| format!("{} ({})", l.name, l.state))
        .collect())
}

/// Pings every peer over every link of every node; returns the matrix text and whether all
/// pings answered.
pub(crate) fn connectivity_matrix(lab: &Lab, plans: &[Plan]) -> (String, bool) {
    let n = plans.len();
    let mut out = String::from(
        "connectivity: pings answered / sent (IPv6 link-local over every link, IPv4 link address once per pair)\n      ",
    );
    for j in 1..=n {
        out.push_str(&format!("{:>8}", format!("n{j}")));
    }
    out.push('\n');
    let mut all = true;
    for (i, plan) in plans.iter().enumerate() {
        out.push_str(&format!("{:<6}", format!("n{}", i + 1)));
        for (j, peer) in plans.iter().enumerate() {
            if i == j {
                out.push_str(&format!("{:>8}", "-"));
                continue;
            }
            let (mut ok, mut sent) = (0, 0);
            for link in plan
                .links
                .iter()
                .filter(|l| l.peer_public_key == peer.node.public_key)
            {
                let v6 = format!("{}%{}", peer.node.link_local6, link.name);
                sent += 1;
                ok += usize::from(ping(lab, i + 1, &["-c", "1", "-W", "2", &v6]));
            }
            // IPv4 link addresses are per node, not per link: the peer's replies take its
            // first link back, so IPv4 is checked once per pair.
            if let Some(link4) = peer.node.addresses.as_ref().and_then(|a| a.link4) {
                sent += 1;
                ok += usize::from(ping(
                    lab,
                    i + 1,
                    &["-c", "1", "-W", "2", &link4.addr().to_string()],
                ));
            }
            all &= ok == sent;
            out.push_str(&format!("{:>8}", format!("{ok}/{sent}")));
        }
        out.push('\n');
    }
    (out, all)
}

fn ping(lab: &Lab, node: usize, args: &[&str]) -> bool {
    lab.try_exec(node, "ping", args)
        .is_ok_and(|o| o.status.success())
}

/// One TCP stream for `seconds` from node 1 to node 2 over their first link, with iperf3.
pub(crate) fn throughput(
    lab: &Lab,
    plans: &[Plan],
    seconds: u32,
    log_dir: &Path,
) -> Result<String> {
    if Command::new("iperf3").arg("--version").output().is_err() {
        return Ok("throughput: skipped, iperf3 is not installed".into());
    }
    let (a, b) = (&plans[0], &plans[1]);
    let link = a
        .links
        .iter()
        .find(|l| l.peer_public_key == b.node.public_key)
        .context("node 1 has no link to node 2")?;
    let server = lab.spawn_logged(
        2,
        Command::new("iperf3").arg("-s"),
        Some(&log_dir.join("iperf3-server.log")),
    )?;
    let target = format!("{}%{}", b.node.link_local6, link.name);
    let deadline = Instant::now() + Duration::from_secs(10);
    let output = loop {
        let out = lab.try_exec(
            1,
            "iperf3",
            &["-c", &target, "-t", &seconds.to_string(), "-J"],
        );
        // iperf3 -J may exit 0 with an error in its report; a refused connection means the
        // server does not listen yet.
        let refused = out.as_ref().is_ok_and(|o| {
            !o.status.success() || String::from_utf8_lossy(&o.stdout).contains("unable to connect")
        });
        if !refused || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    // SAFETY: kill on the PID of the iperf3 server started above.
    unsafe { libc::kill(server as i32, libc::SIGTERM) };
    let report: serde_json::Value =
        serde_json::from_slice(&output?.stdout).context("reading iperf3's JSON report")?;
    let Some(bps) = report["end"]["sum_received"]["bits_per_second"].as_f64() else {
        bail!(
            "iperf3 failed: {}",
            report["error"]
                .as_str()
                .unwrap_or("no received rate in its report")
        );
    };
    Ok(format!(
        "throughput n1 -> n2 over {} (iperf3, 1 TCP stream, {seconds} s): {:.0} Mbit/s",
        link.name,
        bps / 1e6
    ))
}

/// What the main job adds to the links (everything but `--links-only`).
pub(crate) struct MainJob {
    /// Routing mode: static, babel or bird.
    pub routing: String,
    /// The exit node (1-based).
    pub exit: usize,
    /// Longest wait for traffic after the failover cut; zero skips the failover.
    pub failover_bound: Duration,
}

/// Each node's share of the address plan and its workload's addresses, one line each.
pub(crate) fn address_plan(plans: &[Plan], exit: usize) -> String {
    let mut out = String::from("address plan (2001:db8:bd00::/48, 10.0.0.0/8):\n");
    for (i, plan) in plans.iter().enumerate() {
        let Some(a) = &plan.node.addresses else {
            continue;
        };
        let w = workload_addrs(i + 1);
        let subnet4 = a.subnet4.map_or("-".into(), |s| s.to_string());
        out.push_str(&format!(
            "  n{:<3}{:<24}{:<14}workload w{} {} {}{}\n",
            i + 1,
            a.prefix6.to_string(),
            subnet4,
            i + 1,
            w.v6,
            w.v4,
            if i + 1 == exit { "   (exit)" } else { "" }
        ));
    }
    out
}

/// The main job after the links are up: workloads, the upstream's routes back, the
/// workload matrix, the internet through the exit, the bonded throughput and a failover.
/// True when every workload reached every other and the internet. `links_up`: when every
/// link had its handshake.
#[allow(clippy::too_many_arguments)]
pub(crate) fn main_job(
    lab: &Lab,
    exe: &Path,
    files: &[NodeFiles],
    plans: &[Plan],
    job: &MainJob,
    seconds: u32,
    dir: &Path,
    links_up: Instant,
) -> Result<bool> {
    let n = lab.nodes();
    for i in 1..=n {
        lab.wait_for_bridge(i, BRIDGE, Duration::from_secs(20))?;
        lab.add_workload(i, BRIDGE)
            .with_context(|| format!("attaching n{i}'s workload"))?;
    }
    let exit_config = &files[job.exit - 1].config;
    let routes = lab.exec(
        job.exit,
        &exe.to_string_lossy(),
        &["routes", "--upstream", "-c", &exit_config.to_string_lossy()],
    )?;
    let applied = lab.route_back(&String::from_utf8_lossy(&routes.stdout))?;
    println!(
        "workloads {}..{} attached to each node's {BRIDGE}; upstream router {}: {applied} routes back to n{} (`braid routes --upstream`)\n",
        lab.workload_ns(1),
        lab.workload_ns(n),
        lab.router_ns(),
        job.exit
    );
    let matrix_ok = workload_matrix(lab, &job.routing, links_up)?;
    let internet_ok = internet(lab, job.exit)?;
    if seconds > 0 && n >= 2 {
        let before = uplink_tx_bytes(lab, 1);
        match throughput(lab, plans, seconds, dir) {
            Ok(line) => println!(
                "\n{line}{}",
                bonded_shares(&before, &uplink_tx_bytes(lab, 1))
            ),
            Err(e) => eprintln!("\nthroughput: {e:#}"),
        }
    }
    if job.routing == "static" && !job.failover_bound.is_zero() {
        // Static routing has one route per peer prefix, over the direct link: nothing
        // routes around a cut (docs/routing.md), so waiting for it would only burn the bound.
        println!(
            "\nfailover: skipped: static routing keeps one route per peer, over the direct link, and does not route around a cut (try --routing babel or bird)"
        );
    } else if !job.failover_bound.is_zero()
        && let Err(e) = failover(lab, job.failover_bound)
    {
        println!("\nfailover: not measured: {e:#}");
    }
    Ok(matrix_ok && internet_ok)
}

/// Polls the workload matrix until every workload reaches every other (both families) or
/// 30 s pass, then prints it with the time since `links_up`; true when all reached.
fn workload_matrix(lab: &Lab, routing: &str, links_up: Instant) -> Result<bool> {
    let started = links_up;
    let deadline = Instant::now() + Duration::from_secs(30);
    let matrix = loop {
        let matrix = lab.workload_matrix(1);
        if matrix.all() || Instant::now() > deadline {
            break matrix;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    println!(
        "workload to workload (IPv6/IPv4, routed by {routing}; {} after the links came up):",
        if matrix.all() {
            format!("all reachable {:.1}s", started.elapsed().as_secs_f64())
        } else {
            format!("NOT all reachable {:.0}s", started.elapsed().as_secs_f64())
        }
    );
    print!("{}", matrix.render());
    Ok(matrix.all())
}

/// Each workload pings the internet host through the exit, both families (polled up to
/// 10 s in all); true when all answered.
fn internet(lab: &Lab, exit: usize) -> Result<bool> {
    println!(
        "\nworkloads to the internet host {} / {} through the exit n{exit}:",
        INTERNET_HOST.v6, INTERNET_HOST.v4
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut all = true;
    for i in 1..=lab.nodes() {
        let mut cells = Vec::new();
        for (v6, family) in [(true, "IPv6"), (false, "IPv4")] {
            let ok = loop {
                if lab.workload_reaches_internet(i, v6) {
                    break true;
                }
                if Instant::now() > deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            all &= ok;
            cells.push(format!("{family} {}", if ok { "ok" } else { "NO ANSWER" }));
        }
        println!("  w{i}: {}", cells.join(", "));
    }
    Ok(all)
}

/// Cuts the underlay link that w2's traffic to w3 takes, prints how long the traffic
/// stopped, and restores the link.
fn failover(lab: &Lab, bound: Duration) -> Result<()> {
    if lab.nodes() < 3 {
        println!("\nfailover: skipped, it needs 3 nodes (a way around the cut)");
        return Ok(());
    }
    let dest = workload_addrs(3).v6.to_string();
    let hop = lab.next_hop(2, &dest).unwrap_or(3);
    let result = lab.measure_failover(2, &dest, bound, || lab.cut(2, hop));
    let now = lab
        .next_hop(2, &dest)
        .map_or("no route".into(), |j| format!("n{j}"));
    let restored = lab.restore(2, hop);
    let report = result.context("measuring the failover")?;
    restored.context("restoring the cut link")?;
    println!(
        "\nfailover: cut the underlay between n2 and n{hop} (w2 -> w3 went via n{hop}): {}; after the cut via {now}; link restored",
        report.describe()
    );
    Ok(())
}

/// Bytes node `i` has sent on each of its uplinks (`wan0`, `wan1`, ...; 0 when unreadable).
fn uplink_tx_bytes(lab: &Lab, i: usize) -> Vec<u64> {
    (0..lab.wans(i))
        .map(|k| {
            let path = format!(
                "/sys/class/net/{}/statistics/tx_bytes",
                braid_lab::wan_iface(k)
            );
            lab.exec(i, "cat", &[&path])
                .ok()
                .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
                .unwrap_or(0)
        })
        .collect()
}

/// `, bonded over wan0 (55%) + wan1 (45%)`: each uplink's share of the bytes sent between
/// two counter readings; empty with fewer than two uplinks.
fn bonded_shares(before: &[u64], after: &[u64]) -> String {
    if before.len() < 2 || before.len() != after.len() {
        return String::new();
    }
    let sent: Vec<u64> = after
        .iter()
        .zip(before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let total = sent.iter().sum::<u64>().max(1) as f64;
    let parts: Vec<String> = sent
        .iter()
        .enumerate()
        .map(|(k, &bytes)| format!("wan{k} ({:.0}%)", 100.0 * bytes as f64 / total))
        .collect();
    format!(", bonded over {}", parts.join(" + "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_not_up_are_read_from_the_typed_document() {
        let doc = serde_json::json!({
            "links": [
                {"name": "brd1", "state": "up"},
                {"name": "brd2", "state": "connecting"},
                {"name": "brd3", "state": "failed"}
            ]
        });
        assert_eq!(
            links_not_up(Some(&doc)).expect("the document fits"),
            ["brd2 (connecting)", "brd3 (failed)"]
        );
        let all_up = serde_json::json!({"links": [{"name": "brd1", "state": "up"}]});
        assert!(links_not_up(Some(&all_up)).expect("fits").is_empty());
        assert!(links_not_up(None).is_err());
        let wrong = serde_json::json!({"links": "not a list"});
        assert!(links_not_up(Some(&wrong)).is_err());
    }

    #[test]
    fn shares_add_up_per_uplink() {
        assert_eq!(
            bonded_shares(&[100, 0], &[650, 450]),
            ", bonded over wan0 (55%) + wan1 (45%)"
        );
        assert_eq!(bonded_shares(&[0], &[10]), "");
        assert_eq!(
            bonded_shares(&[5, 5], &[5, 5]),
            ", bonded over wan0 (0%) + wan1 (0%)"
        );
    }
}
