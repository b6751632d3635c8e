//! Hostile UAPI clients against real links in real namespaces: a client that trickles one
//! byte every 150 ms, and one that sends 1 MiB without ever ending its request. Neither may
//! stall the data plane (a flood ping across the link loses under 2 %) nor keep `wg show`
//! (wireguard-tools, on the same socket) waiting for more than a second. Traffic stays inside
//! the lab's namespaces; the links' UAPI sockets are in `/var/run/wireguard` (where `wg`
//! looks) under names unique to this process, and go with the links.

mod common;

use braid_lab::{Lab, LabSpec};
use braid_link::Link;
use braid_model::PublicKey;
use common::*;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Pings in each flood: 200 at 10 ms (about 2 s).
const PINGS: u32 = 200;
/// Loss allowed under attack: under 2 % of [`PINGS`].
const MAX_LOST: u32 = PINGS * 2 / 100 - 1;
/// How long `wg show` may take while a hostile client is connected.
const WG_SHOW_WITHIN: Duration = Duration::from_secs(1);

/// Two links joined over the lab: node 1's serves UAPI at `/var/run/wireguard/<ifname>.sock`.
struct Pair {
    lab: Lab,
    ifname: String,
    peer_key: String,
    // Dropped before the lab: the links remove their devices and their UAPI socket.
    links: Vec<Link>,
}

impl Pair {
    fn up(tag: &str) -> Self {
        let lab = Lab::up(LabSpec::new(&lab_name(tag), 2)).unwrap();
        let (a, b) = (key_pair(), key_pair());
        // /var/run/wireguard is shared by every process on this machine: a name unique to
        // this process and test.
        let ifname = format!("brdu{:x}{tag}", std::process::id() % 0xffff);
        let mut ca = config(&ifname, 40004, Some("198.18.0.2:40002"), &a, &b.1, 1);
        ca.uapi_dir = Some(braid_link::UAPI_DIR.into());
        let la = start_in(&lab, 1, ca);
        let lb = start_in(
            &lab,
            2,
            config(
                &format!("{ifname}p"),
                40002,
                Some("198.18.0.1:40004"),
                &b,
                &a.1,
                2,
            ),
        );
        wait_for("ping over the link", || lab.ping(1, "169.254.0.2"));
        Self {
            lab,
            ifname,
            peer_key: PublicKey(b.1).to_base64(),
            links: vec![la, lb],
        }
    }

    fn socket(&self) -> PathBuf {
        PathBuf::from(braid_link::UAPI_DIR).join(format!("{}.sock", self.ifname))
    }

    /// Pings lost out of [`PINGS`] across the link.
    fn flood_loss(&self) -> u32 {
        self.lab.lost_pings(1, "169.254.0.2", PINGS, 56)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.links.clear();
    }
}

/// Sets its flag when dropped: the helper threads stop also when the test panics.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `wg show <ifname>` (killed after 5 s); returns how long it took, or why it failed.
fn wg_show(ifname: &str, peer_key: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let out = Command::new("timeout")
        .args(["5", "wg", "show", ifname])
        .output()
        .map_err(|e| format!("running wg: {e}"))?;
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains(&format!("peer: {peer_key}")) {
        return Err(format!(
            "wg show failed after {took:?} ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(took)
}

/// `wg show` every 200 ms until `stop`: the slowest answer, or the first failure.
fn wg_show_repeatedly(
    ifname: String,
    peer_key: String,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Result<Duration, String>> {
    std::thread::spawn(move || {
        let mut worst = Duration::ZERO;
        while !stop.load(Ordering::Relaxed) {
            worst = worst.max(wg_show(&ifname, &peer_key)?);
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(worst)
    })
}

/// A client that connects to `socket` and sends `get=1\n`, then one `x` every 150 ms, never
/// the blank line that ends a request; when the server drops it, it connects again. Returns
/// how many connections it made.
fn trickle(socket: PathBuf, stop: Arc<AtomicBool>) -> JoinHandle<u32> {
    std::thread::spawn(move || {
        let mut connections = 0;
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut stream) = UnixStream::connect(&socket) else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            connections += 1;
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            for byte in b"get=1\n".iter().chain(std::iter::repeat(&b'x')) {
                if stop.load(Ordering::Relaxed) || stream.write_all(&[*byte]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        }
        connections
    })
}

#[test]
fn a_client_trickling_bytes_stalls_neither_the_link_nor_wg_show() {
    if !braid_lab::available_or_skip("a_client_trickling_bytes_stalls_neither_the_link_nor_wg_show")
    {
        return;
    }
    if Command::new("wg").arg("--version").output().is_err() {
        eprintln!(
            "\n*** SKIPPED a_client_trickling_bytes_...: wg (wireguard-tools) is not installed ***\n"
        );
        return;
    }
    let pair = Pair::up("us");
    let quiet = pair.flood_loss();
    eprintln!("flood ping without a UAPI client: {quiet} of {PINGS} lost");

    let stop = Arc::new(AtomicBool::new(false));
    let _stop_helpers = StopOnDrop(stop.clone());
    let slow = trickle(pair.socket(), stop.clone());
    // The client is connected and trickling before the flood starts.
    std::thread::sleep(Duration::from_millis(300));
    let shows = wg_show_repeatedly(pair.ifname.clone(), pair.peer_key.clone(), stop.clone());
    let started = Instant::now();
    let attacked = pair.flood_loss();
    // Keep the client at it for several seconds in all.
    std::thread::sleep(Duration::from_secs(4).saturating_sub(started.elapsed()));
    stop.store(true, Ordering::Relaxed);
    let connections = slow.join().unwrap();
    let shows = shows.join().unwrap();
    eprintln!(
        "flood ping while a UAPI client trickles a byte every 150 ms: {attacked} of {PINGS} lost; \
         wg show meanwhile: {shows:?}; the client connected {connections} times in {:?}",
        started.elapsed()
    );

    assert!(
        attacked <= MAX_LOST,
        "{attacked} of {PINGS} pings lost while a UAPI client trickled bytes (quiet: {quiet})"
    );
    let worst = shows.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        worst < WG_SHOW_WITHIN,
        "wg show took {worst:?} while a UAPI client trickled bytes"
    );
    assert!(
        connections >= 3,
        "the trickling client was not cut off at the deadline ({connections} connections)"
    );
    // Afterwards: the link and its UAPI socket still work.
    assert!(pair.lab.ping(1, "169.254.0.2"));
    wg_show(&pair.ifname, &pair.peer_key).unwrap();
}

#[test]
fn a_client_sending_a_mebibyte_without_a_newline_is_refused_and_the_link_keeps_working() {
    if !braid_lab::available_or_skip("a_client_sending_a_mebibyte_without_a_newline_is_refused") {
        return;
    }
    if Command::new("wg").arg("--version").output().is_err() {
        eprintln!(
            "\n*** SKIPPED a_client_sending_a_mebibyte_...: wg (wireguard-tools) is not installed ***\n"
        );
        return;
    }
    let pair = Pair::up("um");
    let mut stream = UnixStream::connect(pair.socket()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    // The server stops reading at its size cap, so the write may block until it closes.
    let sending = std::thread::spawn(move || writer.write_all(&vec![b'x'; 1 << 20]));
    let mut answer = Vec::new();
    let end = loop {
        let mut chunk = [0u8; 256];
        match stream.read(&mut chunk) {
            Ok(0) => break "closed".to_string(),
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break "reset".to_string(),
            Err(e) => break format!("read error {e}"),
        }
    };
    let took = started.elapsed();
    let sent = sending.join().unwrap();
    let answer = String::from_utf8_lossy(&answer).to_string();
    eprintln!(
        "1 MiB without a newline: answer {answer:?}, then {end} after {took:?}; the sender: {sent:?}"
    );
    assert!(
        end == "closed" || end == "reset",
        "the server neither answered nor closed: {end}"
    );
    assert!(
        answer.is_empty() || answer == "errno=-22\n\n",
        "unexpected answer {answer:?}"
    );
    assert!(
        sent.is_err(),
        "the server took all of 1 MiB: there is no size cap"
    );
    assert!(took < Duration::from_secs(2), "refused only after {took:?}");
    // The link and its UAPI socket keep working.
    let lost = pair.flood_loss();
    eprintln!("flood ping afterwards: {lost} of {PINGS} lost");
    assert!(lost <= MAX_LOST, "{lost} of {PINGS} pings lost afterwards");
    let took = wg_show(&pair.ifname, &pair.peer_key).unwrap();
    assert!(took < WG_SHOW_WITHIN, "wg show took {took:?}");
}
