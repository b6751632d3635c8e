//! Routing mode `babel`: braid runs babeld (Debian's package) and keeps babeld's set of
//! interfaces equal to braid's links through babeld's control socket (`interface X ...`,
//! `flush interface X`), without restarting it when peers come and go. babeld announces the
//! node's /64 and /24 (braid installs them as `proto 98` routes on the bridge so babeld can
//! redistribute exactly those), on an exit braid's default routes upstream, and nothing
//! else. babeld's routes go into braid's table (`export-table`), where it also finds
//! braid's (`import-table`); see `braid_system::rules`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The per-interface parameters of RAIT's slides: a tunnel, no split horizon, rxcost 32,
/// and the RTT metric (timestamps, max-rtt-penalty 1024, rtt-max 1024).
///
/// With braid's link liveness on (`liveness`), babeld's link quality (ETX from lost hellos)
/// is off: braid takes a dead link's carrier away within a second, and ETX would keep a
/// link that comes back at four times its cost until many hellos have come in (RFC 8966,
/// appendix A.2.2); babeld then uses a link again after two hellos (A.2.1). And hellos go
/// at half the hello interval, with updates at babeld's usual four hello intervals: a
/// neighbour learns its cost from the other's IHU, which babeld sends every third hello,
/// so a link that comes back is used again after about 1.5 hello intervals instead of 3-5
/// (measured: 0.9-1.3 s instead of 3.5-4.9 s at a 1 s hello interval).
pub fn interface_parameters(hello_interval: u16, liveness: bool) -> String {
    let timing = if liveness {
        format!(
            "hello-interval {:.1} update-interval {}",
            f64::from(hello_interval) / 2.0,
            4 * u32::from(hello_interval)
        )
    } else {
        format!("hello-interval {hello_interval}")
    };
    format!(
        "type tunnel link-quality {} split-horizon false rxcost {} {timing} enable-timestamps true max-rtt-penalty 1024 rtt-max 1024",
        !liveness,
        super::cost::NORMAL_RXCOST
    )
}

/// Each link's babeld interface parameters: `parameters` (see [`interface_parameters`]),
/// with the `rxcost` of `rxcosts` for the links there (lossy links, `routing::cost`).
pub fn link_interfaces(
    links: &BTreeSet<String>,
    parameters: &str,
    rxcosts: &BTreeMap<String, u16>,
) -> BTreeMap<String, String> {
    links
        .iter()
        .map(|link| {
            let p = match rxcosts.get(link) {
                Some(&cost) => with_rxcost(parameters, cost),
                None => parameters.to_string(),
            };
            (link.clone(), p)
        })
        .collect()
}

/// `parameters` with its `rxcost` set to `cost` (added when it has none).
pub fn with_rxcost(parameters: &str, cost: u16) -> String {
    let mut words: Vec<String> = parameters.split_whitespace().map(str::to_string).collect();
    match words.iter().position(|w| w == "rxcost") {
        Some(i) if i + 1 < words.len() => words[i + 1] = cost.to_string(),
        _ => words.extend(["rxcost".to_string(), cost.to_string()]),
    }
    words.join(" ")
}

/// babeld's configuration file for this node. `liveness`: braid's link liveness is on
/// (see [`liveness_options`]).
pub fn config_text(
    ctl: &Path,
    bridge: &str,
    hello_interval: u16,
    links: &str,
    liveness: bool,
    redistribute: &[String],
) -> String {
    // babeld installs its routes into braid's table and redistributes from it (braid's own
    // routes there: the node's prefixes on the bridge, an exit's way upstream).
    let table = braid_system::routes::MESH_TABLE;
    let mut text = format!(
        "# written by braid; babeld is driven over {}\nlocal-path-readwrite {}\nexport-table {table}\nimport-table {table}\n",
        ctl.display(),
        ctl.display()
    );
    if liveness {
        text.push_str(liveness_options());
    }
    text.push_str(&format!(
        "interface {bridge} type wired hello-interval {hello_interval}\n"
    ));
    // The links' parameters go over the control socket; written here too, a change of
    // them starts babeld again (which then gets every link with the new ones).
    text.push_str(&format!("# links: {links}\n"));
    for rule in redistribute {
        text.push_str(&format!(
            "redistribute proto {} {rule}
",
            braid_system::routes::RTPROT_BRAID
        ));
    }
    text.push_str("redistribute local deny\nredistribute deny\n");
    text
}

/// babeld's global options with braid's link liveness on (docs/routing.md, "Link
/// liveness"):
/// - `link-detect true`: babeld follows the carrier of its interfaces (IFF_RUNNING, over
///   netlink, at once). braid takes a dead link's carrier away: babeld drops the
///   neighbour and its routes and switches to another at once (`-l` in babeld(8)).
/// - `smoothing-half-life 0`: babeld compares routes by their smoothed metric, and a new
///   route's smoothed metric starts near infinity and halves every half-life (4 s by
///   default): a link that comes back would wait about 10 half-lives (40 s, measured) before
///   babeld prefers it again. Without smoothing it is preferred at the first update that
///   says it is better. Smoothing damps RTT-driven flapping; babeld's RTT estimate is
///   smoothed on its own, and braid's liveness takes dead links out at once.
pub fn liveness_options() -> &'static str {
    "# braid's link liveness: babeld follows the links' carrier; no metric smoothing\nlink-detect true\nsmoothing-half-life 0\n"
}

/// The program braid runs in routing mode `babel`.
pub const PROGRAM: &str = "babeld";

/// The files of braid's babeld, all in one directory (`<control socket dir>/babeld`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    /// babeld's config file (`babeld.conf`), given with `-c`.
    pub conf: PathBuf,
    /// babeld's local control socket (`babeld.ctl`, `local-path-readwrite`).
    pub ctl: PathBuf,
    /// babeld's pid file (`babeld.pid`), given with `-I`.
    pub pid: PathBuf,
    /// babeld's state file (`babeld.state`: its sequence numbers across restarts), `-S`.
    pub state: PathBuf,
    /// Where babeld's stdout and stderr go (`babeld.log`).
    pub log: PathBuf,
}

impl Files {
    /// The files in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            conf: dir.join("babeld.conf"),
            ctl: dir.join("babeld.ctl"),
            pid: dir.join("babeld.pid"),
            state: dir.join("babeld.state"),
            log: dir.join("babeld.log"),
        }
    }
}

/// An exchange with babeld's control socket that failed.
#[derive(Debug, thiserror::Error)]
pub enum BabelError {
    /// Connecting, writing or reading failed.
    #[error("babeld: {0}")]
    Io(#[from] std::io::Error),
    /// babeld answered something other than `ok`: its answer, and the command.
    #[error("babeld answered `{0}` to `{1}`")]
    Refused(String, String),
}

/// The babeld command line for `files` (foreground, its pid file and state file there),
/// with stdout and stderr appended to `log`.
pub fn command(files: &Files, log: std::fs::File) -> std::io::Result<Command> {
    let mut command = Command::new(PROGRAM);
    command
        .arg("-c")
        .arg(&files.conf)
        .arg("-I")
        .arg(&files.pid)
        .arg("-S")
        .arg(&files.state)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    Ok(command)
}

/// What [`sync_interfaces`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InterfaceChanges {
    /// Interfaces added.
    pub added: usize,
    /// Interfaces removed.
    pub removed: usize,
    /// Interfaces removed and added again with other parameters (a new `rxcost`).
    pub readded: usize,
}

/// Makes babeld's interfaces (besides the bridge, which is in its config) exactly `want`
/// (name -> parameters), over its control socket; `have` is what babeld was told so far
/// and is kept up to date. An interface whose parameters changed is removed (`flush
/// interface`) and added again: babeld 1.12 answers `ok` to `interface X ...` for an
/// interface it has but keeps the old parameters ("attempting to add existing interface,
/// new configuration ignored" in its log). Removing it drops the routes over it until the
/// neighbour is heard again (hellos and an IHU: 1-4 s measured at braid's 0.5 s hellos).
/// Each answer is awaited at most [`ANSWER_TIMEOUT`].
pub fn sync_interfaces(
    ctl: &Path,
    have: &mut BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> Result<InterfaceChanges, BabelError> {
    let add: Vec<(&String, &String)> = want
        .iter()
        .filter(|(name, p)| have.get(*name) != Some(*p))
        .collect();
    let remove: Vec<String> = have
        .keys()
        .filter(|name| !want.contains_key(*name))
        .cloned()
        .collect();
    let mut changes = InterfaceChanges::default();
    if add.is_empty() && remove.is_empty() {
        return Ok(changes);
    }
    let (mut reader, writer) = connect(ctl)?;
    let mut say = |line: String| -> Result<(), BabelError> {
        send_line(&writer, &line)?;
        read_until_ok(&mut reader, &line, &mut |_| {})
    };
    for (name, parameters) in add {
        if have.contains_key(name) {
            say(format!("flush interface {name}"))?;
            have.remove(name);
            changes.readded += 1;
        } else {
            changes.added += 1;
        }
        say(format!("interface {name} {parameters}"))?;
        have.insert(name.clone(), parameters.clone());
    }
    for name in remove {
        say(format!("flush interface {name}"))?;
        have.remove(&name);
        changes.removed += 1;
    }
    Ok(changes)
}

/// A route a routing daemon selected and means to have in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedRoute {
    /// The destination prefix.
    pub destination: ipnet::IpNet,
    /// The source prefix of a source-specific route (`None`: any source).
    pub source: Option<ipnet::IpNet>,
    /// The next hop and interface, as the daemon says them (for messages).
    pub via: String,
}

impl std::fmt::Display for SelectedRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.destination)?;
        if let Some(source) = self.source {
            write!(f, " from {source}")?;
        }
        if !self.via.is_empty() {
            write!(f, " {}", self.via)?;
        }
        Ok(())
    }
}

/// The routes babeld installed (by its own account), from a `dump` line such as
/// `add route 55a1 prefix 0.0.0.0/0 from 0.0.0.0/0 installed yes id .. metric 196 ..
/// via fe80::1 if brd4x40004`. Other lines, and routes not installed, give `None`.
pub fn installed_route(line: &str) -> Option<SelectedRoute> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.get(..2) != Some(&["add", "route"][..]) {
        return None;
    }
    let after = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1))
            .copied()
    };
    if after("installed") != Some("yes") {
        return None;
    }
    let destination: ipnet::IpNet = after("prefix")?.parse().ok()?;
    let source = after("from")
        .and_then(|s| s.parse::<ipnet::IpNet>().ok())
        .filter(|s| s.prefix_len() != 0);
    let via = match (after("via"), after("if")) {
        (Some(via), Some(dev)) => format!("via {via} dev {dev}"),
        _ => String::new(),
    };
    Some(SelectedRoute {
        destination: destination.trunc(),
        source: source.map(|s| s.trunc()),
        via,
    })
}

/// The routes babeld installed, from its `dump` over the control socket.
pub fn installed_routes(ctl: &Path) -> Result<Vec<SelectedRoute>, BabelError> {
    let (mut reader, writer) = connect(ctl)?;
    send_line(&writer, "dump")?;
    let mut out = Vec::new();
    read_until_ok(&mut reader, "dump", &mut |line| {
        out.extend(installed_route(line));
    })?;
    Ok(out)
}

/// How long braid waits for one answer of babeld on its control socket.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// Writes `line` and a newline with MSG_NOSIGNAL: babeld dying in the middle of a
/// conversation is an error here (EPIPE), never a SIGPIPE for braid.
fn send_line(stream: &UnixStream, line: &str) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let bytes = format!("{line}\n").into_bytes();
    let mut sent = 0;
    while sent < bytes.len() {
        let rest = &bytes[sent..];
        // SAFETY: send on a connected socket this function borrows, from a live buffer of
        // `rest.len()` bytes.
        let n = unsafe {
            libc::send(
                stream.as_raw_fd(),
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        match n {
            n if n > 0 => sent += n as usize,
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

fn connect(ctl: &Path) -> Result<(BufReader<UnixStream>, UnixStream), BabelError> {
    let stream = UnixStream::connect(ctl)?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    read_until_ok(&mut reader, "(banner)", &mut |_| {})?;
    Ok((reader, stream))
}

fn read_until_ok(
    reader: &mut impl BufRead,
    request: &str,
    each: &mut dyn FnMut(&str),
) -> Result<(), BabelError> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(BabelError::Refused(
                "(connection closed)".into(),
                request.into(),
            ));
        }
        match line.trim() {
            "ok" => return Ok(()),
            l if l.starts_with("no") || l.starts_with("bad") => {
                return Err(BabelError::Refused(l.into(), request.into()));
            }
            l => each(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_lines_give_the_installed_routes() {
        let route = installed_route("add route 55a1d3e60560 prefix 0.0.0.0/0 from 0.0.0.0/0 installed yes id bc:31:d3:a6:3c:cc:38:5f metric 196 refmetric 100 via fe80::9c78:7dff:fed9:8f91 if vb").unwrap();
        assert_eq!(route.destination.to_string(), "0.0.0.0/0");
        assert_eq!(route.source, None);
        assert_eq!(
            route.to_string(),
            "0.0.0.0/0 via fe80::9c78:7dff:fed9:8f91 dev vb"
        );
        let specific = installed_route("add route 1 prefix ::/0 from 2001:db8:bd00::/48 installed yes id x metric 96 refmetric 0 via fe80::1 if brd4x1").unwrap();
        assert_eq!(specific.source.unwrap().to_string(), "2001:db8:bd00::/48");
        assert!(installed_route("add route 2 prefix ::/0 from ::/0 installed no id x metric 96 refmetric 0 via fe80::1 if brd4x1").is_none());
        assert!(
            installed_route(
                "add xroute 10.0.1.0/24-0.0.0.0/0 prefix 10.0.1.0/24 from 0.0.0.0/0 metric 0"
            )
            .is_none()
        );
        assert!(installed_route("add interface vb up true").is_none());
    }

    #[test]
    fn lossy_links_get_their_rxcost_and_the_others_the_parameters() {
        let parameters = interface_parameters(1, true);
        let links: BTreeSet<String> = ["brd4x1".to_string(), "brd4x2".to_string()].into();
        let costs: BTreeMap<String, u16> = [("brd4x2".to_string(), 1024)].into();
        let each = link_interfaces(&links, &parameters, &costs);
        assert_eq!(each["brd4x1"], parameters);
        assert_eq!(
            each["brd4x2"],
            parameters.replace("rxcost 32", "rxcost 1024")
        );
        assert_eq!(with_rxcost("type tunnel", 64), "type tunnel rxcost 64");
    }

    #[test]
    fn config_redistributes_only_the_node_prefixes() {
        let text = config_text(
            Path::new("/run/braid/babeld.ctl"),
            "braid0",
            4,
            &interface_parameters(4, true),
            true,
            &[
                "ip 2001:db8:bd00:1::/64 eq 64 allow".into(),
                "ip 10.0.1.0/24 eq 24 allow".into(),
            ],
        );
        assert!(text.contains("local-path-readwrite /run/braid/babeld.ctl"));
        assert!(
            text.contains("export-table 98\nimport-table 98\n"),
            "{text}"
        );
        assert!(text.contains("interface braid0 type wired"));
        assert!(
            text.contains("\nlink-detect true\nsmoothing-half-life 0\n"),
            "{text}"
        );
        assert!(text.contains("redistribute proto 98 ip 2001:db8:bd00:1::/64 eq 64 allow"));
        assert!(text.ends_with("redistribute local deny\nredistribute deny\n"));
        assert!(
            interface_parameters(4, true).contains("rxcost 32")
                && interface_parameters(4, true).contains("max-rtt-penalty 1024")
                && interface_parameters(4, true).contains("link-quality false")
                && interface_parameters(4, false).contains("link-quality true")
                && interface_parameters(1, true).contains("hello-interval 0.5 update-interval 4 ")
                && interface_parameters(1, false).contains("hello-interval 1 ")
        );
    }
}
