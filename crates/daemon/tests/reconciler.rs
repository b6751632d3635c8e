//! The reconcile decisions over real config and registry files: unchanged links are not
//! touched, removed peers' links go, invalid input changes nothing, failures are retried.
//! The backend here records calls; the data-plane tests exercise real links.

use braid_daemon::backend::{BackendError, LinkBackend, LinkSetup, LinkStats};
use braid_daemon::reconciler::Reconciler;
use braid_plan::reconcile::Change;
use std::collections::BTreeSet;
use std::path::Path;

#[derive(Default)]
struct Recorder {
    links: BTreeSet<String>,
    calls: Vec<String>,
    fail_add: Option<String>,
    /// Every link reports a live session (a handshake and traffic just now).
    live: bool,
    /// Every link was declared dead by braid's liveness (carrier off).
    dead: bool,
}

impl LinkBackend for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn add(&mut self, setup: LinkSetup<'_>) -> Result<(), BackendError> {
        self.calls.push(format!("add {}", setup.link.name));
        if self.fail_add.as_deref() == Some(setup.link.name.as_str()) {
            return Err(BackendError {
                link: setup.link.name.clone(),
                message: "UDP port in use".into(),
            });
        }
        self.links.insert(setup.link.name.clone());
        Ok(())
    }
    fn update(&mut self, setup: LinkSetup<'_>, changes: &[Change]) -> Result<(), BackendError> {
        self.calls
            .push(format!("update {} {changes:?}", setup.link.name));
        Ok(())
    }
    fn remove(&mut self, name: &str) -> Result<(), BackendError> {
        self.calls.push(format!("remove {name}"));
        self.links.remove(name);
        Ok(())
    }
    fn dead(&self, _: &str) -> bool {
        self.dead
    }
    fn stats(&self, _: &str) -> Option<LinkStats> {
        let now = std::time::SystemTime::now();
        self.live.then(|| LinkStats {
            last_handshake: Some(now),
            last_rx: Some(now),
            ..LinkStats::default()
        })
    }
}

fn example_dir() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/three-nodes");
    let dir = tempfile::tempdir().unwrap();
    for name in ["alpha.json", "bravo.json", "charlie.json", "registry.json"] {
        std::fs::copy(src.join(name), dir.path().join(name)).unwrap();
    }
    dir
}

/// Node alpha of the example, loaded, over a backend whose links all have a live session.
fn live_alpha() -> (tempfile::TempDir, Reconciler<Recorder>) {
    let dir = example_dir();
    let backend = Recorder {
        live: true,
        ..Recorder::default()
    };
    let mut r = Reconciler::new(&dir.path().join("alpha.json"), backend);
    r.reload().unwrap();
    (dir, r)
}

fn edit(path: &Path, f: impl Fn(String) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, f(text)).unwrap();
}

#[test]
fn reconcile_touches_only_what_changed() {
    let dir = example_dir();
    let mut r = Reconciler::new(&dir.path().join("alpha.json"), Recorder::default());
    let s = r.reload().unwrap();
    assert_eq!(s.added.len(), 4);
    // Same inputs: nothing happens.
    r.backend_mut().calls.clear();
    let s = r.reload().unwrap();
    assert_eq!(
        (s.added.len(), s.updated.len(), s.removed.len(), s.unchanged),
        (0, 0, 0, 4)
    );
    assert!(r.backend().calls.is_empty());
    // Charlie leaves the registry: only its two links go.
    let registry: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("registry.json")).unwrap())
            .unwrap();
    let two = serde_json::Value::Array(registry.as_array().unwrap()[..2].to_vec());
    std::fs::write(dir.path().join("registry.json"), two.to_string()).unwrap();
    let s = r.reload().unwrap();
    assert_eq!(s.removed, vec!["brd4x50106", "brd6x50107"]);
    assert_eq!(s.unchanged, 2);
    assert_eq!(r.backend().links.len(), 2);
    // An MTU change updates in place.
    edit(&dir.path().join("alpha.json"), |t| {
        t.replacen("\"mtu\": 1420", "\"mtu\": 1380", 1)
    });
    let s = r.reload().unwrap();
    assert_eq!(s.updated, vec!["brd4x50104"]);
    assert!(r.backend().calls.last().unwrap().contains("[Mtu]"));
}

#[test]
fn invalid_input_leaves_everything_as_it_was() {
    let dir = example_dir();
    let mut r = Reconciler::new(&dir.path().join("alpha.json"), Recorder::default());
    r.reload().unwrap();
    r.backend_mut().calls.clear();
    edit(&dir.path().join("registry.json"), |t| {
        t.replacen("\"send_port\": 50104", "\"send_port\": 0", 1)
    });
    let err = r.reload().unwrap_err().to_string();
    assert!(err.contains("the running network is unchanged"), "{err}");
    assert!(err.contains("[1].endpoints[0].send_port"), "{err}");
    assert!(r.backend().calls.is_empty());
    assert_eq!(r.backend().links.len(), 4);
    assert!(r.reload_record().last_error.is_some());
}

#[test]
fn a_failed_link_is_retried_on_the_next_reload() {
    let dir = example_dir();
    let backend = Recorder {
        fail_add: Some("brd4x50104".into()),
        ..Recorder::default()
    };
    let mut r = Reconciler::new(&dir.path().join("alpha.json"), backend);
    let s = r.reload().unwrap();
    assert_eq!(s.added.len(), 3);
    assert!(
        s.failed[0].contains("link brd4x50104: UDP port in use"),
        "{s}"
    );
    r.backend_mut().fail_add = None;
    let s = r.reload().unwrap();
    assert_eq!(s.added, vec!["brd4x50104"]);
}

#[test]
fn a_link_whose_endpoint_becomes_a_name_is_looked_up_while_its_session_is_up() {
    // Seen in the lab: the registry changed a peer's address from an IP to a DNS name;
    // the link was updated in place without an address (backends never look names up)
    // and, its session being up, was not due for a look-up until the 135 s round: it sent
    // to no address, and a name that did not resolve went unnoticed.
    let (dir, mut r) = live_alpha();
    let due = |r: &Reconciler<Recorder>| -> Vec<String> {
        r.due_for_resolve(false, std::time::SystemTime::now())
            .into_iter()
            .map(|l| l.name)
            .collect()
    };
    // A new link with a named endpoint is due once, up or not, until an answer comes.
    assert_eq!(due(&r), vec!["brd6x50105"]);
    let link = r.due_for_resolve(true, std::time::SystemTime::now())[0].clone();
    r.resolved(&link, "[2001:db8::2]:50103".parse().unwrap());
    assert!(due(&r).is_empty(), "{:?}", due(&r));
    // The IPv4 endpoint becomes a name: due at once, although the session is up.
    edit(&dir.path().join("registry.json"), |t| {
        t.replacen("\"192.0.2.2\"", "\"bravo4.example.net\"", 1)
    });
    let s = r.reload().unwrap();
    assert_eq!(s.updated, vec!["brd4x50104"]);
    assert!(r.backend().calls.last().unwrap().contains("[Endpoint]"));
    assert_eq!(due(&r), vec!["brd4x50104"]);
    // An answer for the link as it was before a reload changed it again does not count.
    let named = r.due_for_resolve(false, std::time::SystemTime::now())[0].clone();
    edit(&dir.path().join("registry.json"), |t| {
        t.replacen("\"bravo4.example.net\"", "\"bravo5.example.net\"", 1)
    });
    r.reload().unwrap();
    r.resolved(&named, "192.0.2.2:50102".parse().unwrap());
    assert_eq!(due(&r), vec!["brd4x50104"]);
}

#[test]
fn a_link_declared_dead_is_not_shown_up() {
    // Seen in the lab: a link whose carrier braid's liveness had taken away (routing went
    // around it) showed `up` in `braid status` for minutes, its handshake being recent.
    let (_dir, mut r) = live_alpha();
    let now = std::time::SystemTime::now();
    let states = |r: &Reconciler<Recorder>| -> Vec<&'static str> {
        braid_daemon::status::status(r, now, now)
            .links
            .iter()
            .map(|l| l.state)
            .collect()
    };
    assert_eq!(states(&r), vec!["up"; 4]);
    r.backend_mut().dead = true;
    assert_eq!(states(&r), vec!["stale"; 4]);
}
