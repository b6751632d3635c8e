//! Routing mode `babel`: braid runs babeld (Debian's package) and keeps babeld's set of
//! interfaces equal to braid's links through babeld's control socket (`interface X ...`,
//! `flush interface X`), without restarting it when peers come and go. babeld announces the
//! node's /64 and /24 (braid installs them as `proto 98` routes on the bridge so babeld can
//! redistribute exactly those) and nothing else.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The per-interface parameters of RAIT's slides: a tunnel, link quality, no split horizon,
/// rxcost 32, and the RTT metric (timestamps, max-rtt-penalty 1024, rtt-max 1024).
pub fn interface_parameters(hello_interval: u16) -> String {
    format!(
        "type tunnel link-quality true split-horizon false rxcost 32 hello-interval {hello_interval} enable-timestamps true max-rtt-penalty 1024 rtt-max 1024"
    )
}

/// babeld's configuration file for this node.
pub fn config_text(
    ctl: &Path,
    bridge: &str,
    hello_interval: u16,
    redistribute: &[String],
) -> String {
    let mut text = format!(
        "# written by braid; babeld is driven over {}\nlocal-path-readwrite {}\n",
        ctl.display(),
        ctl.display()
    );
    text.push_str(&format!(
        "interface {bridge} type wired hello-interval {hello_interval}\n"
    ));
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

/// The program braid runs in routing mode `babel`.
pub const PROGRAM: &str = "babeld";

/// The files of braid's babeld, all in one directory (`<control socket dir>/babeld`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub conf: PathBuf,
    pub ctl: PathBuf,
    pub pid: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
}

impl Files {
    pub fn in_dir(dir: &Path) -> Files {
        Files {
            conf: dir.join("babeld.conf"),
            ctl: dir.join("babeld.ctl"),
            pid: dir.join("babeld.pid"),
            state: dir.join("babeld.state"),
            log: dir.join("babeld.log"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BabelError {
    #[error("babeld: {0}")]
    Io(#[from] std::io::Error),
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

/// Makes babeld's interfaces (besides the bridge, which is in its config) exactly `want`,
/// over its control socket; `have` is what babeld was told so far and is kept up to date.
/// Returns (added, removed). Each answer is awaited at most [`ANSWER_TIMEOUT`].
pub fn sync_interfaces(
    ctl: &Path,
    have: &mut BTreeSet<String>,
    want: &BTreeSet<String>,
    hello_interval: u16,
) -> Result<(usize, usize), BabelError> {
    let add: Vec<String> = want.difference(have).cloned().collect();
    let remove: Vec<String> = have.difference(want).cloned().collect();
    if add.is_empty() && remove.is_empty() {
        return Ok((0, 0));
    }
    let (mut reader, mut writer) = connect(ctl)?;
    let parameters = interface_parameters(hello_interval);
    for name in &add {
        let line = format!("interface {name} {parameters}");
        writeln!(writer, "{line}")?;
        read_until_ok(&mut reader, &line, &mut |_| {})?;
        have.insert(name.clone());
    }
    for name in &remove {
        let line = format!("flush interface {name}");
        writeln!(writer, "{line}")?;
        read_until_ok(&mut reader, &line, &mut |_| {})?;
        have.remove(name);
    }
    Ok((add.len(), remove.len()))
}

/// How long braid waits for one answer of babeld on its control socket.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

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
    fn config_redistributes_only_the_node_prefixes() {
        let text = config_text(
            Path::new("/run/braid/babeld.ctl"),
            "braid0",
            4,
            &[
                "ip 2001:db8:bd00:1::/64 eq 64 allow".into(),
                "ip 10.0.1.0/24 eq 24 allow".into(),
            ],
        );
        assert!(text.contains("local-path-readwrite /run/braid/babeld.ctl"));
        assert!(text.contains("interface braid0 type wired"));
        assert!(text.contains("redistribute proto 98 ip 2001:db8:bd00:1::/64 eq 64 allow"));
        assert!(text.ends_with("redistribute local deny\nredistribute deny\n"));
        assert!(
            interface_parameters(4).contains("rxcost 32")
                && interface_parameters(4).contains("max-rtt-penalty 1024")
        );
    }
}
