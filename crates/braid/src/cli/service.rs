//! Telling systemd how `braid run` is doing, as `sd_notify(3)` does: `READY=1` once the
//! first reconcile is done and the links, routes and control socket are in place (units
//! with `Type=notify`), `STOPPING=1` when it starts to take everything down.
//!
//! The protocol is one datagram of `KEY=VALUE` lines to the Unix socket named by
//! `$NOTIFY_SOCKET`: a file system path, or an abstract name written with a leading `@`
//! (sd_notify(3), "NOTIFY_SOCKET"). Without the variable (not started by a service
//! manager) nothing is sent. Written here rather than taken from the `sd-notify` crate
//! because its 0.5 release does not handle abstract names.

use braid_daemon::reconciler::Summary;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable naming the service manager's socket.
pub(crate) const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// One state change (sd_notify(3), "Well-known assignments").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// `READY=1`: start-up finished.
    Ready,
    /// `STOPPING=1`: shutting down.
    Stopping,
    /// `STATUS=...`: one line shown by `systemctl status` (newlines become `; `).
    Status(String),
}

impl State {
    fn line(&self) -> String {
        match self {
            Self::Ready => "READY=1".to_string(),
            Self::Stopping => "STOPPING=1".to_string(),
            Self::Status(text) => format!("STATUS={}", text.replace('\n', "; ")),
        }
    }
}

/// The datagram for `states`: one `KEY=VALUE` line each.
pub(crate) fn message(states: &[State]) -> String {
    states.iter().map(|s| s.line() + "\n").collect()
}

/// Sends `states` to the service manager. Ok(false) when there is none (`NOTIFY_SOCKET`
/// unset); an error when the variable names no socket that takes the datagram.
pub(crate) fn notify(states: &[State]) -> std::io::Result<bool> {
    let Some(name) = std::env::var_os(NOTIFY_SOCKET) else {
        return Ok(false);
    };
    send_to(&name, states)?;
    Ok(true)
}

/// Sends `states` to the socket `name`: a path, or `@` and an abstract name.
pub(crate) fn send_to(name: &std::ffi::OsStr, states: &[State]) -> std::io::Result<()> {
    let bytes = name.as_bytes();
    let addr = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        <SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(abstract_name)?
    } else if bytes.starts_with(b"/") {
        SocketAddr::from_pathname(name)?
    } else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{NOTIFY_SOCKET}={name:?} is neither a path nor an @abstract name"),
        ));
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(message(states).as_bytes(), &addr)?;
    Ok(())
}

/// Sends `states`, logging (not failing) when the service manager cannot be told.
fn tell(states: &[State]) {
    match notify(states) {
        Ok(true) => tracing::debug!("told the service manager {:?}", message(states)),
        Ok(false) => {}
        Err(e) => tracing::warn!("cannot notify the service manager ({NOTIFY_SOCKET}): {e}"),
    }
}

/// Called by the daemon once the first reconcile is done (see `braid_daemon::run::run`).
pub(crate) fn ready(summary: &Summary) {
    tell(&[State::Ready, State::Status(format!("running: {summary}"))]);
}

/// Says the daemon is stopping.
pub(crate) fn stopping() {
    tell(&[State::Stopping, State::Status("stopping".to_string())]);
}

/// When a service manager listens: a task that says `STOPPING=1` as soon as SIGTERM or
/// SIGINT arrives, before the daemon (which gets the same signal) takes the links down.
/// Call inside the daemon's runtime.
pub(crate) fn stopping_on_signal() {
    if std::env::var_os(NOTIFY_SOCKET).is_none() {
        return;
    }
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot watch SIGTERM/SIGINT for the service manager's STOPPING=1");
        return;
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        stopping();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_has_one_line_per_state_and_status_stays_one_line() {
        let text = message(&[
            State::Ready,
            State::Status("2 added\nfailed: brd4x1".into()),
        ]);
        assert_eq!(text, "READY=1\nSTATUS=2 added; failed: brd4x1\n");
        assert_eq!(message(&[State::Stopping]), "STOPPING=1\n");
    }

    fn receive(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    }

    #[test]
    fn datagrams_reach_a_path_and_an_abstract_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), &[State::Ready]).unwrap();
        assert_eq!(receive(&socket), "READY=1\n");

        let unique = format!("braid-test-notify-{}", std::process::id());
        let addr = <SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(&unique)
            .unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(
            std::ffi::OsStr::new(&format!("@{unique}")),
            &[State::Stopping],
        )
        .unwrap();
        assert_eq!(receive(&socket), "STOPPING=1\n");
    }

    #[test]
    fn a_relative_name_is_refused() {
        let err = send_to(std::ffi::OsStr::new("notify.sock"), &[State::Ready]).unwrap_err();
        assert!(err.to_string().contains("neither a path"), "{err}");
    }
}
