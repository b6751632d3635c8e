//! Routing mode `bird`: braid writes a BIRD 2 configuration (the babel protocol on every
//! link, matched by the transports' interface-name patterns, plus filters that export the
//! node's /64 and /24 and nothing else), runs BIRD, and reloads it with `birdc configure`
//! when the configuration changes. BIRD picks up links as they come and go by itself.
//! BIRD 2.0.12 (Debian 12) has no Babel RTT metric; braid adds it when BIRD does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the configuration depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirdInputs {
    pub router_id: std::net::Ipv4Addr,
    pub bridge: String,
    /// Interface-name patterns of the links, e.g. `brd4x*`.
    pub patterns: Vec<String>,
    pub hello_interval: u16,
    pub prefix6: Option<String>,
    pub subnet4: Option<String>,
    /// On an exit: the upstream gateways (IPv6, IPv4) for the default routes BIRD announces,
    /// with the exit preference as their Babel metric.
    pub exit_gateway6: Option<std::net::IpAddr>,
    pub exit_gateway4: Option<std::net::IpAddr>,
    pub exit_metric: u32,
}

pub fn config_text(i: &BirdInputs) -> String {
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
    format!(
        "# written by braid\nrouter id {};\nprotocol device {{ scan time 10; }}\n\
protocol direct {{ ipv4; ipv6; interface \"{}\"; }}\n\
protocol kernel {{ ipv4 {{ export where source = RTS_BABEL; }}; }}\n\
protocol kernel {{ ipv6 {{ export where source = RTS_BABEL; }}; }}\n{statics}\
protocol babel {{\n  interface {patterns} {{ type wired; rxcost 32; hello interval {} s; }};\n  ipv4 {{ import all; {} }};\n  ipv6 {{ import all; {} }};\n}}\n",
        i.router_id,
        i.bridge,
        i.hello_interval,
        export(&i.subnet4),
        export(&i.prefix6)
    )
}

#[derive(Debug, thiserror::Error)]
pub enum BirdError {
    #[error("bird: {0}")]
    Io(#[from] std::io::Error),
    #[error("bird's control socket {0} did not come up; see {1}")]
    NoSocket(String, String),
    #[error("birdc configure: {0}")]
    Configure(String),
}

pub struct Bird {
    child: Child,
    dir: PathBuf,
    netns: Option<String>,
    inputs: BirdInputs,
}

fn spawn_in(netns: Option<&str>, mut command: Command) -> std::io::Result<Child> {
    match netns {
        None => command.spawn(),
        // A process started from a thread inside the namespace runs in that namespace.
        Some(ns) => braid_system::netns::run_in(ns, move || command.spawn())
            .map_err(|e| std::io::Error::other(e.to_string()))?,
    }
}

impl Bird {
    pub fn start(dir: &Path, netns: Option<&str>, inputs: BirdInputs) -> Result<Bird, BirdError> {
        std::fs::create_dir_all(dir)?;
        let (conf, ctl, log) = (
            dir.join("bird.conf"),
            dir.join("bird.ctl"),
            dir.join("bird.log"),
        );
        std::fs::write(&conf, config_text(&inputs))?;
        let _ = std::fs::remove_file(&ctl);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut command = Command::new("bird");
        command
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(&ctl)
            .arg("-P")
            .arg(dir.join("bird.pid"))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = spawn_in(netns, command)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::os::unix::net::UnixStream::connect(&ctl).is_err() {
            if Instant::now() > deadline {
                return Err(BirdError::NoSocket(
                    ctl.display().to_string(),
                    log.display().to_string(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::info!(pid = child.id(), "bird started");
        Ok(Bird {
            child,
            dir: dir.to_path_buf(),
            netns: netns.map(str::to_string),
            inputs,
        })
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Rewrites the configuration and reloads BIRD when the inputs changed.
    pub fn update(&mut self, inputs: BirdInputs) -> Result<(), BirdError> {
        if inputs == self.inputs {
            return Ok(());
        }
        std::fs::write(self.dir.join("bird.conf"), config_text(&inputs))?;
        let mut command = Command::new("birdc");
        command
            .arg("-s")
            .arg(self.dir.join("bird.ctl"))
            .arg("configure")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = spawn_in(self.netns.as_deref(), command)?;
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() || !text.contains("Reconfigured") {
            return Err(BirdError::Configure(text.trim().to_string()));
        }
        tracing::info!("bird reconfigured");
        self.inputs = inputs;
        Ok(())
    }

    pub fn stop(mut self) {
        // SAFETY: kill on the PID of the bird this struct started and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        });
        assert!(text.contains(
            "interface \"brd4x*\", \"brd6x*\" { type wired; rxcost 32; hello interval 4 s; }"
        ));
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
    }
}
