//! The status page at `/` in a real headless browser (Debian's chromium, run inside node
//! 1's namespace to reach its listener on 127.0.0.1:8091, with a throwaway profile): it
//! shows every lab node and every link of node 1 with its state and routes, refreshes
//! itself, and after a cut shows the links going stale and the far node reached through
//! the third (babel), on the same page left open (read over the DevTools protocol by
//! tests/page/cdp_dom.py) as on a fresh load; a bonded lab's paths appear with their
//! shares. Screenshots are left in target/page-*.png as artefacts.

mod common;
use common::*;

use braid_bond::PathState;
use braid_daemon::status::Status;
use braid_lab::{ConfigOptions, Lab, LabSpec};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const URL: &str = "http://127.0.0.1:8091/";

/// Where the screenshots go: the workspace's target directory.
fn artefact(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    target.join(name)
}

/// The chromium binary, or None (with a loud SKIP) when it is not installed.
fn chromium(test: &str) -> Option<&'static str> {
    let found = Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIP {test}: chromium is not installed (scripts/deps.sh installs it)");
    }
    found.then_some("chromium")
}

/// The arguments after `ip` that run headless chromium inside `ns` with the throwaway
/// profile `profile`, the page's window size and `extra` flags, on the page.
fn chromium_args(ns: &str, profile: &Path, extra: &[&str]) -> Vec<String> {
    let fixed = [
        "netns",
        "exec",
        ns,
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--window-size=1280,1400",
    ];
    let profile = format!("--user-data-dir={}", profile.display());
    fixed
        .into_iter()
        .chain([profile.as_str()])
        .chain(extra.iter().copied())
        .chain([URL])
        .map(String::from)
        .collect()
}

/// Loads the page in headless chromium inside `ns`, with a throwaway profile that is
/// removed afterwards; returns the DOM after the page ran for a few seconds (it fetches
/// /status at once and every 1.5 s), and saves a screenshot to `shot`.
fn load(ns: &str, shot: &Path) -> String {
    let profile = tempfile::Builder::new()
        .prefix("braid-page-chromium")
        .tempdir()
        .unwrap();
    let run = |extra: &[&str]| {
        let extra = [&["--virtual-time-budget=4000"][..], extra].concat();
        let out = Command::new("timeout")
            .args(["60", "ip"])
            .args(chromium_args(ns, profile.path(), &extra))
            .output()
            .expect("run chromium");
        assert!(
            out.status.success(),
            "chromium: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let dom = run(&["--dump-dom"]);
    if let Some(dir) = shot.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    run(&[&format!("--screenshot={}", shot.display())]);
    assert!(
        std::fs::metadata(shot).is_ok_and(|m| m.len() > 1000),
        "no screenshot at {}",
        shot.display()
    );
    dom
}

/// A headless chromium that keeps the page open in a namespace (DevTools on
/// 127.0.0.1:9229 there, with a throwaway profile); [`LivePage::dom`] reads the page as it
/// is now, without reloading it. Dropping it kills the browser's process group.
struct LivePage {
    child: std::process::Child,
    ns: String,
    _profile: tempfile::TempDir,
}

impl LivePage {
    fn open(ns: &str) -> Self {
        use std::os::unix::process::CommandExt;
        let profile = tempfile::Builder::new()
            .prefix("braid-page-live")
            .tempdir()
            .unwrap();
        let child = Command::new("ip")
            .args(chromium_args(
                ns,
                profile.path(),
                &["--remote-debugging-port=9229"],
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromium");
        Self {
            child,
            ns: ns.to_string(),
            _profile: profile,
        }
    }

    fn dom(&self) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/page/cdp_dom.py");
        let out = Command::new("timeout")
            .args([
                "30", "ip", "netns", "exec", &self.ns, "python3", script, "9229",
            ])
            .output()
            .expect("run cdp_dom.py");
        assert!(
            out.status.success(),
            "cdp_dom.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for LivePage {
    fn drop(&mut self) {
        // SAFETY: kill on the process group of the chromium this test started.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// How often the page read /status (its `data-polls`).
fn polls(dom: &str) -> u32 {
    dom.split("data-polls=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The `data-state` of the link drawn on the map, if it is there.
fn drawn_state(dom: &str, link: &str) -> Option<String> {
    let at = dom.find(&format!("class=\"link\" data-link=\"{link}\""))?;
    let rest = &dom[at..];
    let state = rest.split("data-state=\"").nth(1)?;
    Some(state.split('"').next()?.to_string())
}

/// The status document of the daemon in `ns` (empty when it did not answer).
fn read_status(ns: &str) -> Status {
    serde_json::from_str(&http(ns, "GET", "/status").1).unwrap_or_default()
}

/// The planned links: (name, peer, state).
fn links(status: &Status) -> Vec<(String, String, String)> {
    status
        .links
        .iter()
        .map(|l| (l.name.clone(), l.peer.clone(), l.state.to_string()))
        .collect()
}

/// The other nodes and the node through which n1 reaches each, from /status `mesh`.
fn via(status: &Status) -> Vec<(String, Option<String>)> {
    status
        .mesh
        .iter()
        .map(|n| (n.name.clone(), n.via.clone()))
        .collect()
}

/// Waits until babel settled on the direct links of n1: a link to each peer carrying
/// routes, and each peer reached directly.
fn wait_for_direct_routes(ns: &str) {
    let carrying = |status: &Status, peer: &str| {
        status
            .links
            .iter()
            .any(|l| l.peer == peer && l.routes.is_some_and(|n| n > 0))
    };
    let direct = [
        ("n2".to_string(), Some("n2".to_string())),
        ("n3".to_string(), Some("n3".to_string())),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = read_status(ns);
        if carrying(&status, "n2") && carrying(&status, "n3") && via(&status) == direct {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "babel did not settle on the direct links (a link to each peer carrying routes, each reached directly): {status:#?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The page left open, read until `ok` holds (at most `tries` reads, `pause` apart); the
/// last read.
fn read_until(live: &LivePage, tries: usize, pause: Duration, ok: impl Fn(&str) -> bool) -> String {
    let mut dom = live.dom();
    for _ in 1..tries {
        if ok(&dom) {
            break;
        }
        std::thread::sleep(pause);
        dom = live.dom();
    }
    dom
}

/// A fresh load before the cut: every node on the map, every link up and in the table,
/// routing healthy, links carrying, and the page refreshing itself.
fn check_page_before_cut(dom: &str, planned: &[(String, String, String)]) {
    for node in ["n1", "n2", "n3"] {
        assert!(
            dom.contains(&format!("data-node=\"{node}\"")),
            "{node} is not on the map:\n{dom}"
        );
    }
    for (name, peer, _) in planned {
        assert_eq!(
            drawn_state(dom, name).as_deref(),
            Some("up"),
            "link {name} to {peer} on the map:\n{dom}"
        );
        assert!(dom.contains(&format!("<tr data-link=\"{name}\">")), "{dom}");
    }
    assert!(dom.contains("routing babel (healthy)"), "{dom}");
    assert!(dom.contains("(carrying)"), "the links carry routes:\n{dom}");
    assert!(
        dom.contains("data-ok=\"true\""),
        "the page read /status:\n{dom}"
    );
    // It reads /status again by itself (every 1.5 s; 4 s of the page's time ran).
    let read = polls(dom);
    assert!(read >= 2, "the page refreshed {read} times:\n{dom}");
}

/// After the cut of n1-n2: n2's links are not up on the map, the others are.
fn cut_from_n2(dom: &str, planned: &[(String, String, String)]) -> bool {
    planned.iter().all(|(name, peer, _)| {
        let state = drawn_state(dom, name);
        if peer == "n2" {
            state.as_deref().is_some_and(|s| s != "up")
        } else {
            state.as_deref() == Some("up")
        }
    })
}

#[test]
fn the_page_draws_the_mesh_and_follows_a_cut() {
    const TEST: &str = "the_page_draws_the_mesh_and_follows_a_cut";
    if !braid_lab::available_or_skip(TEST) {
        return;
    }
    let Some(_) = chromium(TEST) else { return };
    let lab = Lab::up(LabSpec::new(
        &format!("pg{:x}", std::process::id() % 0xffff),
        3,
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Keepalive 1 s: a cut link is stale 5 s after its last datagram.
    // Babel routing (hellos every second): after the cut n1 reaches n2 through n3.
    let options = ConfigOptions {
        keepalive: 1,
        routing: "babel".into(),
        ..ConfigOptions::default()
    };
    let files = lab.write_configs(dir.path(), &options).unwrap();
    for f in &files {
        edit_json(&f.config, |c| {
            c["routing"]["hello_interval"] = serde_json::json!(1)
        });
    }
    start_daemons(&lab, &files);
    let ns = lab.ns(1);
    wait_until("every link of n1 up", Duration::from_secs(30), || {
        let (code, body) = http(&ns, "GET", "/metrics");
        code == 200 && sample(&body, "braid_links", &["state=\"up\""]) == Some(4.0)
    });
    // babeld picks one link per neighbour for its routes (the IPv4 or the IPv6 one).
    wait_for_direct_routes(&ns);
    let planned = links(&read_status(&ns));
    assert_eq!(planned.len(), 4, "{planned:?}");
    let table = braid(&["status", "-c", files[0].config.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    eprintln!("braid status on n1:\n{table}");
    assert!(
        table.contains("routing babel (healthy)") && table.contains("exit    ipv4 "),
        "{table}"
    );
    check_page_before_cut(&load(&ns, &artefact("page-mesh.png")), &planned);
    // The same page, left open: every link up before the cut.
    let live = LivePage::open(&ns);
    let all_up = |dom: &str| {
        planned
            .iter()
            .all(|(name, _, _)| drawn_state(dom, name).as_deref() == Some("up"))
    };
    let before = read_until(&live, 50, Duration::from_millis(200), all_up);
    assert!(all_up(&before), "the open page before the cut:\n{before}");
    // Cut n1-n2: n2's links go stale on the page, n3's stay up, and n2 is reached
    // through n3.
    lab.cut(1, 2).unwrap();
    wait_until(
        "n1's links to n2 stale, n2 reached through n3",
        Duration::from_secs(30),
        || {
            let status = read_status(&ns);
            let now = links(&status);
            !now.is_empty()
                && now
                    .iter()
                    .filter(|(_, peer, _)| peer == "n2")
                    .all(|(_, _, state)| state != "up")
                && via(&status).contains(&("n2".to_string(), Some("n3".into())))
        },
    );
    // The open page follows by itself: n2's links leave `up` without a reload.
    let stale = |dom: &str| cut_from_n2(dom, &planned);
    let after = read_until(&live, 51, Duration::from_millis(300), stale);
    assert!(stale(&after), "the open page after the cut:\n{after}");
    assert!(
        polls(&after) > polls(&before),
        "the open page read /status again: {} then {}",
        polls(&before),
        polls(&after)
    );
    drop(live);
    check_page_after_cut(&ns, &planned);
}

/// A fresh load after the cut: n2's links not up, n2 drawn reached through n3. babeld may
/// still be settling on the detour: the page is loaded again (up to 5 times) until it
/// shows it.
fn check_page_after_cut(ns: &str, planned: &[(String, String, String)]) {
    let relayed =
        |dom: &str| dom.contains("data-node=\"n2\" data-via=\"n3\"") && dom.contains("via n3");
    let mut dom = load(ns, &artefact("page-cut.png"));
    for _ in 0..4 {
        if relayed(&dom) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        dom = load(ns, &artefact("page-cut.png"));
    }
    assert!(
        cut_from_n2(&dom, planned),
        "the links after the cut:\n{dom}"
    );
    assert!(relayed(&dom), "n2 through n3 on the map:\n{dom}");
    eprintln!(
        "screenshots: {} and {}",
        artefact("page-mesh.png").display(),
        artefact("page-cut.png").display()
    );
}

/// The bonded paths of node 1's first link, from /status: (name, state, share).
fn paths(ns: &str) -> Vec<(String, PathState, f64)> {
    let status = read_status(ns);
    let bond = status.links.first().and_then(|l| l.stats.bond.as_ref());
    bond.map_or_else(Vec::new, |b| {
        b.paths
            .iter()
            .map(|p| (p.name.clone(), p.state, p.share))
            .collect()
    })
}

#[test]
fn the_page_shows_bonded_paths_with_their_shares() {
    const TEST: &str = "the_page_shows_bonded_paths_with_their_shares";
    if !braid_lab::available_or_skip(TEST) {
        return;
    }
    let Some(_) = chromium(TEST) else { return };
    // Node 1 has two uplinks (wan0, wan1) through the lab's hub; node 2 one.
    let lab = Lab::up(
        LabSpec::new(&format!("pb{:x}", std::process::id() % 0xffff), 2).with_wans(&[2, 1]),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = ConfigOptions {
        ip6: false,
        scheduler: Some("round-robin".into()),
        ..ConfigOptions::default()
    };
    let files = lab.write_configs(dir.path(), &options).unwrap();
    start_daemons(&lab, &files);
    let ns = lab.ns(1);
    wait_until("both paths up", Duration::from_secs(30), || {
        let p = paths(&ns);
        p.len() == 2 && p.iter().all(|(_, state, _)| *state == PathState::Up)
    });
    // Traffic over both paths (round-robin), so each has a share.
    let ping = lab
        .try_exec(
            1,
            "ping",
            &["-c", "300", "-i", "0.01", "-s", "1000", "-q", "169.254.0.2"],
        )
        .unwrap();
    assert!(ping.status.success());
    let now = paths(&ns);
    assert!(
        now.iter().all(|(_, _, share)| *share > 0.2),
        "round-robin shares: {now:?}"
    );
    let table = braid(&["status", "-c", files[0].config.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    eprintln!("braid status on n1:\n{table}");
    assert!(
        table.contains("\n  wan0 ") && table.contains("\n  wan1 "),
        "{table}"
    );
    let dom = load(&ns, &artefact("page-bond.png"));
    for path in ["wan0", "wan1"] {
        let row = dom
            .split("<tr data-path=\"")
            .find(|r| {
                r.split('"')
                    .next()
                    .is_some_and(|id| id.ends_with(&format!("/{path}")))
            })
            .unwrap_or_else(|| panic!("no row for {path}:\n{dom}"));
        assert!(row.contains("state-up"), "{path}: {row}");
        assert!(
            dom.contains(&format!("{path} up ")),
            "{path} on the map:\n{dom}"
        );
    }
    eprintln!("screenshot: {}", artefact("page-bond.png").display());
}

/// A text of the map: its link, and the box it covers, estimated from its position,
/// anchor and length (12 px system-ui: about 6 px a character, 12 px high).
#[derive(Debug)]
struct Label {
    link: String,
    text: String,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let value = tag.split(&format!(" {name}=\"")).nth(1)?;
    Some(value.split('"').next()?.to_string())
}

/// The label lines drawn for each link on the map, from the DOM.
fn labels(dom: &str) -> Vec<Label> {
    let mut out = Vec::new();
    for group in dom.split("<g class=\"link\"").skip(1) {
        let group = group.split("</g>").next().unwrap_or("");
        let link = attr(group, "data-link").unwrap_or_default();
        for text in group.split("<text").skip(1) {
            let (tag, rest) = text.split_once('>').unwrap_or((text, ""));
            let content = rest.split("</text>").next().unwrap_or("").to_string();
            let num = |name| attr(tag, name).and_then(|v| v.parse::<f64>().ok()).unwrap();
            let (x, y) = (num("x"), num("y"));
            let width = content.chars().count() as f64 * 6.0;
            let left = match attr(tag, "text-anchor").as_deref() {
                Some("end") => x - width,
                Some("middle") => x - width / 2.0,
                _ => x,
            };
            out.push(Label {
                link: link.clone(),
                text: content,
                left,
                right: left + width,
                top: y - 10.0,
                bottom: y + 2.0,
            });
        }
    }
    out
}

#[test]
fn the_labels_of_different_links_do_not_overlap() {
    // Four nodes: three peers, two links each. The labels of the two lower peers' inner
    // links used to be drawn on top of each other below the node.
    const TEST: &str = "the_labels_of_different_links_do_not_overlap";
    if !braid_lab::available_or_skip(TEST) {
        return;
    }
    let Some(_) = chromium(TEST) else { return };
    let lab = Lab::up(LabSpec::new(
        &format!("pl{:x}", std::process::id() % 0xffff),
        4,
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = lab
        .write_configs(dir.path(), &ConfigOptions::default())
        .unwrap();
    start_daemons(&lab, &files);
    for i in [1, 2] {
        let ns = lab.ns(i);
        wait_until("every link up", Duration::from_secs(30), || {
            let (code, body) = http(&ns, "GET", "/metrics");
            code == 200 && sample(&body, "braid_links", &["state=\"up\""]) == Some(6.0)
        });
        let dom = load(&ns, &artefact(&format!("page-labels-n{i}.png")));
        let labels = labels(&dom);
        assert!(labels.len() >= 6 * 3, "n{i}: {labels:#?}\n{dom}");
        for a in &labels {
            for b in labels.iter().filter(|b| b.link != a.link) {
                let apart = a.right <= b.left
                    || b.right <= a.left
                    || a.bottom <= b.top
                    || b.bottom <= a.top;
                assert!(
                    apart,
                    "n{i}: `{}` ({}) overlaps `{}` ({}): {a:?} {b:?}",
                    a.text, a.link, b.text, b.link
                );
            }
        }
    }
}
