//! Routing mode `bird`: braid writes a BIRD 2 configuration (the babel protocol on every
//! link, matched by the transports' interface-name patterns, plus filters that export the
//! node's /64 and /24 and nothing else), runs BIRD, and reloads it with `birdc configure`
//! when the configuration changes. BIRD picks up links as they come and go by itself.
//! BIRD 2.0.12 (Debian 12) has no Babel RTT metric; braid adds it when BIRD does.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What the configuration depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirdInputs {
    /// BIRD's router ID: the node's IPv4 gateway address, or one derived from its index.
    pub router_id: std::net::Ipv4Addr,
    /// The node's bridge (its prefixes are exported from there).
    pub bridge: String,
    /// Interface-name patterns of the links, e.g. `brd4x*`.
    pub patterns: Vec<String>,
    /// The Babel hello interval (seconds; the config's `routing.hello_interval`).
    pub hello_interval: u16,
    /// The node's IPv6 /64, exported.
    pub prefix6: Option<String>,
    /// The node's IPv4 /24, exported, when the address plan has IPv4.
    pub subnet4: Option<String>,
    /// On an exit: the upstream gateways (IPv6, IPv4) for the default routes BIRD announces,
    /// with the exit preference as their Babel metric.
    pub exit_gateway6: Option<std::net::IpAddr>,
    /// On an exit: the upstream IPv4 gateway (see `exit_gateway6`).
    pub exit_gateway4: Option<std::net::IpAddr>,
    /// On an exit: its preference, the Babel metric of the default routes it announces.
    pub exit_metric: u32,
    /// braid's link liveness is on: links get faster hellos (see [`link_timing`]).
    pub liveness: bool,
    /// Links whose `rxcost` is not the usual one (lossy links, see `routing::cost`), with
    /// theirs: each gets an interface block of its own before the patterns (BIRD uses the
    /// first that matches). `birdc configure` applies a change without restarting the
    /// interface (checked with BIRD 2.0.12: the neighbour had the new cost 0.2-0.4 s
    /// later, with its hello history kept).
    pub rxcosts: std::collections::BTreeMap<String, u16>,
}

/// The babel hello and update intervals of BIRD's links. With braid's link liveness on,
/// braid takes a dead link's carrier away and BIRD (`check link yes`) drops the neighbour;
/// when the link comes back, BIRD uses it again once it has the neighbour's hellos and IHU.
/// At the hello interval itself that took 10-12 s (measured at 1 s), with hellos at a
/// quarter of it 0.06-0.16 s; route updates stay at BIRD's usual four hello intervals.
/// Without liveness, BIRD's own timing.
pub fn link_timing(hello_interval: u16, liveness: bool) -> String {
    if liveness {
        format!(
            "hello interval {} ms; update interval {} s;",
            u32::from(hello_interval) * 250,
            4 * u32::from(hello_interval)
        )
    } else {
        format!("hello interval {hello_interval} s;")
    }
}

/// The names of BIRD's kernel protocols in braid's configuration (for `birdc show route
/// export`).
pub const KERNEL4: &str = "kernel4";
/// The name of BIRD's IPv6 kernel protocol (see [`KERNEL4`]).
pub const KERNEL6: &str = "kernel6";

/// BIRD's configuration: the babel protocol on the links, the node's prefixes exported,
/// learned routes into braid's table (`routes::MESH_TABLE`).
pub fn config_text(i: &BirdInputs) -> String {
    let table = braid_system::routes::MESH_TABLE;
    let patterns = i
        .patterns
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    // Babel routes learned from neighbours travel on (that is what makes relays work); of
    // the rest, only the node's own prefix, and on an exit its default route.
    let export = |net: &Option<String>| {
        let own = net
            .as_ref()
            .map(|n| format!(" if net ~ [ {n} ] then accept;"))
            .unwrap_or_default();
        format!(
            "export filter {{ if source = RTS_BABEL then accept;{own} if source = RTS_STATIC then {{ babel_metric = {}; accept; }} reject; }};",
            i.exit_metric.clamp(1, 0xfffe)
        )
    };
    let mut statics = String::new();
    if let Some(gw) = i.exit_gateway6 {
        statics.push_str(&format!(
            "protocol static {{ ipv6; route ::/0 via {gw}; }}\n"
        ));
    }
    if let Some(gw) = i.exit_gateway4 {
        statics.push_str(&format!(
            "protocol static {{ ipv4; route 0.0.0.0/0 via {gw}; }}\n"
        ));
    }
    let timing = link_timing(i.hello_interval, i.liveness);
    let interface = |pattern: &str, rxcost: u16| {
        format!(
            "  interface {pattern} {{ type wired; rxcost {rxcost}; {timing} check link yes; }};\n"
        )
    };
    let mut interfaces: String = i
        .rxcosts
        .iter()
        .map(|(link, &cost)| interface(&format!("\"{link}\""), cost))
        .collect();
    interfaces.push_str(&interface(&patterns, super::cost::NORMAL_RXCOST));
    format!(
        "# written by braid\nrouter id {};\nprotocol device {{ scan time 10; }}\n\
protocol direct {{ ipv4; ipv6; interface \"{}\"; }}\n\
protocol kernel {KERNEL4} {{ ipv4 {{ export where source = RTS_BABEL; }}; kernel table {table}; }}\n\
protocol kernel {KERNEL6} {{ ipv6 {{ export where source = RTS_BABEL; }}; kernel table {table}; }}\n{statics}\
protocol babel {{\n{interfaces}  ipv4 {{ import all; {} }};\n  ipv6 {{ import all; {} }};\n}}\n",
        i.router_id,
        i.bridge,
        export(&i.subnet4),
        export(&i.prefix6)
    )
}

/// An exchange with BIRD that failed.
#[derive(Debug, thiserror::Error)]
pub enum BirdError {
    /// Running `birdc` or reading its answer failed.
    #[error("bird: {0}")]
    Io(#[from] std::io::Error),
    /// `birdc configure` refused the configuration: what it said.
    #[error("birdc configure: {0}")]
    Configure(String),
}

/// The program braid runs in routing mode `bird`.
pub const PROGRAM: &str = "bird";

/// The files of braid's BIRD, all in one directory (`<control socket dir>/bird`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    /// BIRD's configuration file (`bird.conf`), given with `-c`.
    pub conf: PathBuf,
    /// BIRD's control socket (`bird.ctl`), given with `-s`; `birdc` talks to it.
    pub ctl: PathBuf,
    /// BIRD's pid file (`bird.pid`), given with `-P`.
    pub pid: PathBuf,
    /// Where BIRD's stdout and stderr go (`bird.log`).
    pub log: PathBuf,
}

impl Files {
    /// The files in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            conf: dir.join("bird.conf"),
            ctl: dir.join("bird.ctl"),
            pid: dir.join("bird.pid"),
            log: dir.join("bird.log"),
        }
    }
}

/// The BIRD command line for `files` (foreground, its control socket and pid file there),
/// with stdout and stderr appended to `log`.
pub fn command(files: &Files, log: std::fs::File) -> std::io::Result<Command> {
    let mut command = Command::new(PROGRAM);
    command
        .arg("-f")
        .arg("-c")
        .arg(&files.conf)
        .arg("-s")
        .arg(&files.ctl)
        .arg("-P")
        .arg(&files.pid)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    Ok(command)
}

/// Writes `inputs`' configuration and has the running BIRD load it (`birdc configure`).
pub fn configure(files: &Files, inputs: &BirdInputs) -> Result<(), BirdError> {
    std::fs::write(&files.conf, config_text(inputs))?;
    let out = Command::new("birdc")
        .arg("-s")
        .arg(&files.ctl)
        .arg("configure")
        .stdin(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() || !text.contains("Reconfigured") {
        return Err(BirdError::Configure(text.trim().to_string()));
    }
    Ok(())
}

/// The routes BIRD exports to the kernel (`birdc show route export kernel4|kernel6`): what
/// it means to have in braid's table. `show route` prints a route as a line starting with
/// its prefix, the next hop on the following, indented line.
pub fn exported_routes(files: &Files) -> Result<Vec<super::babel::SelectedRoute>, BirdError> {
    let mut out = Vec::new();
    for protocol in [KERNEL4, KERNEL6] {
        let output = Command::new("birdc")
            .arg("-s")
            .arg(&files.ctl)
            .args(["show", "route", "export", protocol])
            .stdin(Stdio::null())
            .output()?;
        if !output.status.success() {
            return Err(BirdError::Configure(format!(
                "birdc show route export {protocol}: {}",
                String::from_utf8_lossy(&output.stdout).trim()
            )));
        }
        out.extend(parse_routes(&String::from_utf8_lossy(&output.stdout)));
    }
    Ok(out)
}

/// The routes in `birdc show route` output (pure).
pub fn parse_routes(text: &str) -> Vec<super::babel::SelectedRoute> {
    let mut out: Vec<super::babel::SelectedRoute> = Vec::new();
    for line in text.lines() {
        if line.starts_with(char::is_whitespace) {
            if let (Some(last), Some(via)) = (out.last_mut(), line.trim().strip_prefix("via "))
                && last.via.is_empty()
            {
                last.via = format!("via {}", via.replacen(" on ", " dev ", 1));
            }
            continue;
        }
        let Some(Ok(destination)) = line
            .split_whitespace()
            .next()
            .map(str::parse::<ipnet::IpNet>)
        else {
            continue;
        };
        out.push(super::babel::SelectedRoute {
            destination: destination.trunc(),
            source: None,
            via: String::new(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_route_output_gives_prefixes_and_next_hops() {
        let text = "BIRD 2.0.12 ready.\nTable master4:\n10.0.2.0/24          unicast [babel1 12:00:00.000] * (130/96) [00:00:00:00:00:00:00:02]\n\tvia 169.254.0.2 on brd4x40004\n0.0.0.0/0            unicast [babel1 12:00:01.000] * (130/196) [00:00:00:00:00:00:00:01]\n\tvia 169.254.0.1 on brd4x40002\n";
        let routes = parse_routes(text);
        assert_eq!(routes.len(), 2, "{routes:?}");
        assert_eq!(
            routes[0].to_string(),
            "10.0.2.0/24 via 169.254.0.2 dev brd4x40004"
        );
        assert_eq!(routes[1].destination.to_string(), "0.0.0.0/0");
    }

    #[test]
    fn config_exports_only_the_node_prefixes() {
        let text = config_text(&BirdInputs {
            router_id: "10.0.1.254".parse().unwrap(),
            bridge: "braid0".into(),
            patterns: vec!["brd4x*".into(), "brd6x*".into()],
            hello_interval: 4,
            prefix6: Some("2001:db8:bd00:1::/64".into()),
            subnet4: Some("10.0.1.0/24".into()),
            exit_gateway6: Some("2001:db8:ff::1".parse().unwrap()),
            exit_gateway4: None,
            exit_metric: 100,
            liveness: false,
            rxcosts: [("brd4x40004".to_string(), 1024)].into(),
        });
        assert!(
            text.contains(
                "  interface \"brd4x40004\" { type wired; rxcost 1024; hello interval 4 s; check link yes; };\n  interface \"brd4x*\""
            ),
            "a lossy link's block comes first: {text}"
        );
        assert!(text.contains(
            "interface \"brd4x*\", \"brd6x*\" { type wired; rxcost 32; hello interval 4 s; check link yes; }"
        ));
        assert_eq!(
            link_timing(1, true),
            "hello interval 250 ms; update interval 4 s;"
        );
        assert!(
            text.contains("if net ~ [ 2001:db8:bd00:1::/64 ] then accept;"),
            "{text}"
        );
        assert!(
            text.contains("protocol static { ipv6; route ::/0 via 2001:db8:ff::1; }"),
            "{text}"
        );
        assert!(text.contains("babel_metric = 100;"), "{text}");
        assert!(text.contains("router id 10.0.1.254;"));
        assert!(
            text.contains(
                "protocol kernel kernel4 { ipv4 { export where source = RTS_BABEL; }; kernel table 98; }"
            ),
            "{text}"
        );
    }
}
