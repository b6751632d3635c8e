//! What `braid lab up` checks once the daemons run: handshakes on every link, a ping over
//! every link (IPv6 link-local and IPv4 link address), and one throughput figure.

use anyhow::{Context, Result, bail};
use braid_daemon::control::{self, Request};
use braid_lab::Lab;
use braid_plan::Plan;
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
                Ok(reply) => {
                    let links = reply
                        .status
                        .as_ref()
                        .and_then(|s| s["links"].as_array().cloned())
                        .unwrap_or_default();
                    for link in links.iter().filter(|l| l["state"] != "up") {
                        waiting.push(format!(
                            "n{} {} ({})",
                            i + 1,
                            link["name"].as_str().unwrap_or("?"),
                            link["state"].as_str().unwrap_or("?")
                        ));
                    }
                }
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
