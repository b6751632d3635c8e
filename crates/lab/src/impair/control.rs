//! Talking to the forwarder: the requests and replies (one JSON line each way per
//! connection, over the abstract Unix socket [`CONTROL_SOCKET`] in the hub's network
//! namespace), and starting it.

use super::{CONTROL_SOCKET, Counters, Settings, WanImpairment};
use crate::LabError;
use crate::children::Children;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A request to the forwarder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Sets both directions of an uplink (binding their queues on first use).
    Set {
        /// The hub's name of the uplink, `n<i>w<k>`.
        uplink: String,
        /// The NFQUEUE number of traffic toward the node.
        queue_down: u16,
        /// The NFQUEUE number of traffic from the node.
        queue_up: u16,
        /// The settings.
        impairment: Box<WanImpairment>,
    },
    /// Every direction's settings and counters.
    Status,
}

/// The forwarder's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Reply {
    /// The error, when the request failed.
    pub error: Option<String>,
    /// For [`Request::Status`].
    pub status: Vec<DirectionStatus>,
}

impl Reply {
    pub(crate) fn ok(status: Vec<DirectionStatus>) -> Self {
        Self {
            error: None,
            status,
        }
    }

    pub(crate) fn error(message: &str) -> Self {
        Self {
            error: Some(message.to_string()),
            status: Vec::new(),
        }
    }
}

/// One direction of one uplink as the forwarder runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectionStatus {
    /// The hub's name of the uplink, `n<i>w<k>`.
    pub uplink: String,
    /// `down` (toward the node) or `up`.
    pub direction: String,
    /// Its NFQUEUE number.
    pub queue: u16,
    /// Its settings now.
    pub settings: Settings,
    /// Its counts since the forwarder first saw it.
    pub counters: Counters,
    /// Packets in its line's queue now.
    pub queued: usize,
    /// Verdicts the kernel refused and packets it could not queue to the forwarder, all
    /// directions together (should stay 0).
    pub kernel_errors: u64,
}

/// How to start the forwarder: a program and the arguments that make it serve (it runs
/// inside the hub namespace and takes no other input), and where its output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impairer {
    /// The program, e.g. the `braid` binary or `braid-lab-impair`.
    pub program: PathBuf,
    /// Its arguments, e.g. `["lab", "impair"]`.
    pub args: Vec<String>,
    /// Its stdout and stderr are appended here (default: discarded).
    pub log: Option<PathBuf>,
}

/// Runs `f` on a thread that has entered the network namespace `ns`.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T, LabError> + Send + 'static,
) -> Result<T, LabError> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).map_err(|source| LabError::Spawn {
            command: format!("open {path}"),
            source,
        })?;
        // SAFETY: setns on a namespace file we opened; it changes only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(LabError::Spawn {
                command: format!("setns {path}"),
                source: std::io::Error::last_os_error(),
            });
        }
        f()
    })
    .join()
    .unwrap_or_else(|_| Err(LabError::Impair("the control thread panicked".into())))
}

fn connect() -> std::io::Result<UnixStream> {
    UnixStream::connect_addr(&SocketAddr::from_abstract_name(CONTROL_SOCKET)?)
}

/// Sends `request` to the forwarder of the hub namespace `hub`. `Ok(None)` when no
/// forwarder runs there.
pub(crate) fn request(hub: &str, request: Request) -> Result<Option<Reply>, LabError> {
    in_netns(hub, move || {
        let Ok(stream) = connect() else {
            return Ok(None);
        };
        let io = |e: std::io::Error| LabError::Impair(format!("talking to the forwarder: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .map_err(io)?;
        let mut line =
            serde_json::to_string(&request).map_err(|e| LabError::Impair(e.to_string()))?;
        line.push('\n');
        (&stream).write_all(line.as_bytes()).map_err(io)?;
        let mut answer = String::new();
        BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
        let reply: Reply = serde_json::from_str(&answer)
            .map_err(|e| LabError::Impair(format!("the forwarder's answer `{answer}`: {e}")))?;
        match reply.error {
            Some(e) => Err(LabError::Impair(e)),
            None => Ok(Some(reply)),
        }
    })
}

/// Starts the forwarder in the hub namespace `hub` with `impairer` (tracked by
/// `children`) and waits until it answers (10 s at most).
pub(crate) fn start(hub: &str, impairer: &Impairer, children: &Children) -> Result<(), LabError> {
    let mut command = Command::new(&impairer.program);
    command.args(&impairer.args);
    let log = impairer
        .log
        .clone()
        .unwrap_or_else(|| PathBuf::from("/dev/null"));
    let pid = children.spawn(hub, &command, Some(&log))?;
    tracing::info!(hub, pid, "lab: started the impairment forwarder");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if request(hub, Request::Status)?.is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LabError::Impair(format!(
                "the forwarder (`{} {}`, pid {pid}) did not answer on @{CONTROL_SOCKET} in {hub} within 10 s; see {}",
                impairer.program.display(),
                impairer.args.join(" "),
                log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
