//! Routing mode `babel`: braid runs babeld (Debian's package) and keeps babeld's set of
//! interfaces equal to braid's links through babeld's control socket (`interface X ...`,
//! `flush interface X`), without restarting it when peers come and go. babeld announces the
//! node's /64 and /24 (braid installs them as `proto 98` routes on the bridge so babeld can
//! redistribute exactly those) and nothing else.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

pub struct Babeld {
    child: Child,
    ctl: PathBuf,
    hello_interval: u16,
    /// The interfaces babeld was told about, besides the bridge.
    interfaces: BTreeSet<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BabelError {
    #[error("babeld: {0}")]
    Io(#[from] std::io::Error),
    #[error("babeld's control socket {0} did not come up; see {1}")]
    NoSocket(String, String),
    #[error("babeld answered `{0}` to `{1}`")]
    Refused(String, String),
}

impl Babeld {
    /// Writes the config into `dir` and starts babeld (in `netns` when given).
    pub fn start(
        dir: &Path,
        netns: Option<&str>,
        bridge: &str,
        hello_interval: u16,
        redistribute: &[String],
    ) -> Result<Babeld, BabelError> {
        std::fs::create_dir_all(dir)?;
        let ctl = dir.join("babeld.ctl");
        let _ = std::fs::remove_file(&ctl);
        let conf = dir.join("babeld.conf");
        std::fs::write(
            &conf,
            config_text(&ctl, bridge, hello_interval, redistribute),
        )?;
        let log = dir.join("babeld.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut command = Command::new("babeld");
        command
            .arg("-c")
            .arg(&conf)
            .arg("-I")
            .arg(dir.join("babeld.pid"))
            .arg("-S")
            .arg(dir.join("babeld.state"))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        // A process started from a thread inside the namespace runs in that namespace.
        let child = match netns {
            None => command.spawn()?,
            Some(ns) => braid_system::netns::run_in(ns, move || command.spawn())
                .map_err(|e| std::io::Error::other(e.to_string()))??,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while UnixStream::connect(&ctl).is_err() {
            if Instant::now() > deadline {
                return Err(BabelError::NoSocket(
                    ctl.display().to_string(),
                    log.display().to_string(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::info!(pid = child.id(), "babeld started");
        Ok(Babeld {
            child,
            ctl,
            hello_interval,
            interfaces: BTreeSet::new(),
        })
    }

    /// False once babeld has exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Makes babeld's interfaces exactly `links` (plus the bridge).
    pub fn sync(&mut self, links: &BTreeSet<String>) -> Result<(), BabelError> {
        let add: Vec<String> = links.difference(&self.interfaces).cloned().collect();
        let remove: Vec<String> = self.interfaces.difference(links).cloned().collect();
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let stream = UnixStream::connect(&self.ctl)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut writer = stream;
        read_until_ok(&mut reader, "(banner)")?;
        let parameters = interface_parameters(self.hello_interval);
        for name in &add {
            let line = format!("interface {name} {parameters}");
            writeln!(writer, "{line}")?;
            read_until_ok(&mut reader, &line)?;
            self.interfaces.insert(name.clone());
        }
        for name in &remove {
            let line = format!("flush interface {name}");
            writeln!(writer, "{line}")?;
            read_until_ok(&mut reader, &line)?;
            self.interfaces.remove(name);
        }
        tracing::info!(
            added = add.len(),
            removed = remove.len(),
            "babeld interfaces"
        );
        Ok(())
    }

    /// Stops babeld (by its PID) and waits for it.
    pub fn stop(mut self) {
        // SAFETY: kill on the PID of the babeld this struct started and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn read_until_ok(reader: &mut impl BufRead, request: &str) -> Result<(), BabelError> {
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
            _ => {}
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
