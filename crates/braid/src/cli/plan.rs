//! `braid plan`: the links and addresses a config and registry would create.

use anyhow::Result;
use braid_daemon::load;
use braid_plan::Plan;
use std::fmt::Write as _;
use std::path::Path;

/// Version of the `braid plan --json` schema (docs/plan-json.md).
pub(crate) const PLAN_SCHEMA_VERSION: u32 = 1;

#[derive(serde::Serialize)]
struct PlanJson<'a> {
    version: u32,
    #[serde(flatten)]
    plan: &'a Plan,
}

pub(crate) fn run(config: &Path, json: bool) -> Result<bool> {
    let loaded = match load::load(config) {
        Ok(loaded) => loaded,
        Err(problems) => {
            eprintln!("{problems}");
            return Ok(false);
        }
    };
    for warning in &loaded.warnings.0 {
        eprintln!("{warning}");
    }
    if json {
        let doc = PlanJson {
            version: PLAN_SCHEMA_VERSION,
            plan: &loaded.plan,
        };
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", render(&loaded.plan));
    }
    Ok(true)
}

/// The plan as a human-readable text.
pub(crate) fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let node = &plan.node;
    let _ = writeln!(
        out,
        "node {} ({})",
        node.name.as_deref().unwrap_or("-"),
        node.public_key
    );
    let _ = writeln!(out, "  link-local {}", node.link_local6);
    if let Some(a) = &node.addresses {
        let _ = writeln!(
            out,
            "  index {}  prefix {}  address {}",
            a.index, a.prefix6, a.address6
        );
        if let (Some(subnet), Some(gw), Some(link)) = (a.subnet4, a.gateway4, a.link4) {
            let _ = writeln!(out, "  subnet {subnet}  gateway {gw}  link address {link}");
        }
    }
    let _ = writeln!(out, "{} links:", plan.links.len());
    let _ = writeln!(
        out,
        "  {:<15} {:<4} {:>6} {:<28} {:>5} {:>6} {:>5}  peer",
        "name", "fam", "listen", "endpoint", "mtu", "fwmark", "group"
    );
    for l in &plan.links {
        let endpoint = l
            .endpoint
            .as_ref()
            .map_or("(peer dials in)".to_string(), |e| e.to_string());
        let _ = writeln!(
            out,
            "  {:<15} {:<4} {:>6} {:<28} {:>5} {:>6} {:>5}  {} ({})",
            l.name,
            l.family,
            l.listen_port,
            endpoint,
            l.mtu,
            l.fwmark,
            l.group,
            l.peer,
            l.peer_public_key.short()
        );
    }
    out
}
