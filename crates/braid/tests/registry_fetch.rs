//! The registry from an https:// URL, against a real HTTPS server (Python's http.server
//! with TLS, a CA made with openssl here) in a lab namespace: a node added and signed on
//! the server reaches every node's links within one refresh period, with no reload; a
//! tampered byte, another key, a rollback, a server that hangs, a 5 MB response, a redirect
//! loop, a downgrade to http:// and an unreachable server are each refused or survived with
//! a clear message and the mesh unchanged; a node restarted while the server is down runs
//! on its last good copy.

mod common;
use common::*;

use braid_lab::{ConfigOptions, Lab, LabSpec, NodeFiles, exit};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SERVER_IP: &str = "198.18.0.1";
const PORT: u16 = 8443;
/// Every node fetches every REFRESH seconds.
const REFRESH: u64 = 5;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(program: &str, args: &[&str], dir: &Path) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        text(&out.stderr)
    );
}

/// A CA and a server certificate for SERVER_IP, made with openssl in `dir`.
fn make_ca(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=braid test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run("openssl", &ca, dir);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=braid test server",
    ]);
    run("openssl", &csr, dir);
    std::fs::write(
        dir.join("server.ext"),
        format!("subjectAltName=IP:{SERVER_IP}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
        dir,
    );
}

fn keygen(dir: &Path, name: &str) -> String {
    let out = braid(&[
        "registry",
        "keygen",
        "--no-password",
        "-s",
        &dir.join(format!("{name}.key")).display().to_string(),
        "-p",
        &dir.join(format!("{name}.pub")).display().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

/// Writes `nodes` as the served registry and signs it with `key`.
fn publish(d: &Path, nodes: &[Value], key: &str) {
    let served = d.join("www/registry.json");
    std::fs::write(&served, serde_json::to_string_pretty(&nodes).unwrap()).unwrap();
    let out = braid(&[
        "registry",
        "sign",
        "-s",
        &d.join(format!("{key}.key")).display().to_string(),
        served.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn status(config: &Path) -> Value {
    serde_json::from_slice(&braid(&["status", "--json", "-c", config.to_str().unwrap()]).stdout)
        .unwrap_or(Value::Null)
}

fn links(config: &Path) -> Vec<String> {
    status(config)["links"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|l| l["name"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn up_links(config: &Path) -> usize {
    status(config)["links"]
        .as_array()
        .map_or(0, |l| l.iter().filter(|l| l["state"] == "up").count())
}

fn refusals(config: &Path, reason: &str) -> u64 {
    status(config)["registry"]["refusals"][reason]
        .as_u64()
        .unwrap_or(0)
}

fn fetch_error(config: &Path) -> String {
    status(config)["registry"]["fetch"]["last_error"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Points node `f`'s config at `url` and reloads (which also fetches at once).
fn point_at(f: &NodeFiles, url: &str) {
    edit_json(&f.config, |c| c["registry"] = json!(url));
    let out = braid(&["reload", "-c", f.config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn wait_for_server(lab: &Lab) {
    wait_until(
        "the HTTPS server listening",
        Duration::from_secs(10),
        || {
            lab.try_exec(1, "ss", &["-ltn"])
                .is_ok_and(|o| text(&o.stdout).contains(&format!("{SERVER_IP}:{PORT}")))
        },
    );
}

/// As `wait_until` (30 s), printing the daemons' and the server's logs when it times out.
fn wait_or_dump(what: &str, s: &Setup, ok: impl FnMut() -> bool) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(what, Duration::from_secs(30), ok)
    }));
    if let Err(e) = result {
        for f in &s.files {
            let log =
                std::fs::read_to_string(f.config.with_file_name("braid.log")).unwrap_or_default();
            eprintln!("--- n{} braid.log:\n{log}", f.index);
        }
        for name in ["server.out", "requests.log"] {
            let log = std::fs::read_to_string(s.dir.path().join(name)).unwrap_or_default();
            eprintln!("--- {name}:\n{log}");
        }
        std::panic::resume_unwind(e);
    }
}

struct Setup {
    lab: Lab,
    dir: tempfile::TempDir,
    files: Vec<NodeFiles>,
    entries: Vec<Value>,
}

fn setup(tag: &str, nodes: usize) -> Option<Setup> {
    setup_with(tag, nodes, &ConfigOptions::default())
}

fn setup_with(tag: &str, nodes: usize, options: &ConfigOptions) -> Option<Setup> {
    if !braid_lab::available_or_skip(tag) {
        return None;
    }
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED {tag}: openssl is not installed");
        return None;
    }
    let lab = Lab::up(LabSpec::new(
        &format!("{}{:x}", &tag[..2], std::process::id() % 0xffff),
        nodes,
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("www")).unwrap();
    make_ca(d);
    let files = lab.write_configs(d, options).unwrap();
    let entries: Vec<Value> =
        serde_json::from_str::<Value>(&std::fs::read_to_string(d.join("registry.json")).unwrap())
            .unwrap()
            .as_array()
            .unwrap()
            .clone();
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/registry_server/server.py");
    lab.spawn_logged(
        1,
        Command::new("python3").arg(server).args([
            SERVER_IP,
            &PORT.to_string(),
            &d.join("server.pem").display().to_string(),
            &d.join("server.key").display().to_string(),
            &d.join("www").display().to_string(),
            &d.join("requests.log").display().to_string(),
        ]),
        Some(&d.join("server.out")),
    )
    .unwrap();
    let trusted = keygen(d, "ops");
    keygen(d, "other");
    for f in &files {
        edit_json(&f.config, |c| {
            c["registry"] = json!(format!("https://{SERVER_IP}:{PORT}/reg/registry.json"));
            c["registry_keys"] = json!([trusted]);
            c["registry_refresh"] = json!(REFRESH);
            c["registry_ca_file"] = json!(d.join("ca.pem").display().to_string());
        });
    }
    Some(Setup {
        lab,
        dir,
        files,
        entries,
    })
}

/// Reads a config that may have comments, edits it, writes it back as JSON.
fn edit_config(path: &Path, edit: impl FnOnce(&mut Value)) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut doc: Value = serde_json::from_str(&braid_model::jsonc::strip(&text)).unwrap();
    edit(&mut doc);
    std::fs::write(path, doc.to_string()).unwrap();
}

/// The "done when": a five-node mesh grows to six by `braid init` on the new node
/// and `braid registry add-node --sign` on the machine that keeps the registry; nothing is
/// done on the other five, which plan their links to the sixth within one refresh period.
#[test]
fn a_node_added_on_the_server_reaches_every_node_within_one_refresh_period() {
    let Some(s) = setup("rg_grow", 6) else { return };
    let d = s.dir.path();
    let url = format!("https://{SERVER_IP}:{PORT}/reg/registry.json");
    // The server lists n1..n5.
    publish(d, &s.entries[..5], "ops");
    wait_for_server(&s.lab);

    // n6 starts from `braid init` (in its namespace: it fetches the registry to pick free
    // send ports), not from the lab's generated config.
    let n6 = s.files[5].config.clone();
    std::fs::remove_file(&n6).unwrap();
    let trusted = std::fs::read_to_string(d.join("ops.pub")).unwrap();
    let trusted = trusted.lines().nth(1).unwrap().to_string();
    let out = s
        .lab
        .try_exec(
            6,
            env!("CARGO_BIN_EXE_braid"),
            &[
                "init",
                "-c",
                n6.to_str().unwrap(),
                "--registry",
                &url,
                "--registry-key",
                &trusted,
                "--registry-ca-file",
                d.join("ca.pem").to_str().unwrap(),
                "--address",
                "198.18.0.6",
                "--address",
                "2001:db8::6",
                "--address-plan",
                braid_lab::configs::LAB_ALLOCATION,
                "--routing",
                "none",
                "--name",
                "n6",
                "--index",
                "6",
            ],
        )
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let entry = out.stdout;
    let parsed: Value = serde_json::from_slice(&entry).unwrap();
    // n1..n5 use 40002..=40011: the lowest free ports are 40001 and 40012.
    assert_eq!(parsed["endpoints"][0]["send_port"], 40001);
    assert_eq!(parsed["endpoints"][1]["send_port"], 40012);
    // Only what a lab node on a shared machine needs: its own control socket, the userspace
    // data plane (no kernel WireGuard here), a short period for the test.
    edit_config(&n6, |c| {
        c["control_socket"] = json!(n6.with_file_name("braid.sock").display().to_string());
        c["backend"] = json!("userspace");
        c["registry_refresh"] = json!(REFRESH);
    });

    start_daemons(&s.lab, &s.files);
    let n = |i: usize| s.files[i - 1].config.clone();
    wait_or_dump("n1..n5 with 8 links up each", &s, || {
        (1..=5).all(|i| up_links(&n(i)) == 8)
    });
    // Each node keeps the last good copy, and its signature, beside its config.
    let cache = n(1).with_file_name("config.registry-cache.json");
    assert!(cache.exists() && cache.with_extension("json.minisig").exists());
    let st = status(&n(1));
    assert_eq!(st["registry"]["source"], url.as_str());
    assert_eq!(st["registry"]["fetch"]["refresh_seconds"], REFRESH);

    // The operator adds n6 on the registry's machine and signs; nothing else.
    let add = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args([
            "registry",
            "add-node",
            d.join("www/registry.json").to_str().unwrap(),
            "-",
            "--sign",
            d.join("ops.key").to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let mut add = add;
    add.stdin.take().unwrap().write_all(&entry).unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let published = Instant::now();
    wait_until(
        "n1..n5 planning links to n6 within one refresh period",
        Duration::from_secs(REFRESH + 3),
        || (1..=5).all(|i| links(&n(i)).len() == 10),
    );
    eprintln!(
        "links to n6 planned on n1..n5 {:.1} s after publishing (refresh period {REFRESH} s)",
        published.elapsed().as_secs_f64()
    );
    wait_or_dump("every link of the six nodes up", &s, || {
        (1..=6).all(|i| up_links(&n(i)) == 10)
    });
    // No reload anywhere; the fetchers made conditional requests (304s).
    for i in 1..=5 {
        let log = std::fs::read_to_string(n(i).with_file_name("braid.log")).unwrap();
        assert!(log.contains("registry: new version fetched"), "{log}");
        assert!(!log.contains("reload rejected"), "{log}");
    }
    let fetches = |result: &str| {
        let (_, metrics) = http(&s.lab.ns(1), "GET", "/metrics");
        sample(
            &metrics,
            "braid_registry_fetches_total",
            &[&format!("result=\"{result}\"")],
        )
        .unwrap_or(0.0)
    };
    wait_until(
        "n1's conditional request answered 304",
        Duration::from_secs(2 * REFRESH + 2),
        || fetches("not_modified") >= 1.0,
    );
    assert!(fetches("changed") >= 2.0);
    let requests = std::fs::read_to_string(d.join("requests.log")).unwrap();
    assert!(requests.contains("304 /reg/registry.json"), "{requests}");
    let (_, metrics) = http(&s.lab.ns(1), "GET", "/metrics");
    assert_eq!(
        sample(&metrics, "braid_registry_fetch_success", &[]),
        Some(1.0)
    );
    s.lab.down().unwrap();
}

#[test]
fn bad_registries_and_bad_servers_leave_the_mesh_unchanged() {
    let Some(s) = setup("rb_bad", 3) else { return };
    let d = s.dir.path();
    publish(d, &s.entries[..2], "ops");
    let old = (
        std::fs::read(d.join("www/registry.json")).unwrap(),
        std::fs::read(d.join("www/registry.json.minisig")).unwrap(),
    );
    // n3 joins in a newer version before the daemons start.
    std::thread::sleep(Duration::from_millis(1100));
    publish(d, &s.entries, "ops");
    let good = (
        std::fs::read(d.join("www/registry.json")).unwrap(),
        std::fs::read(d.join("www/registry.json.minisig")).unwrap(),
    );
    let restore = || {
        std::fs::write(d.join("www/registry.json"), &good.0).unwrap();
        std::fs::write(d.join("www/registry.json.minisig"), &good.1).unwrap();
    };
    wait_for_server(&s.lab);
    start_daemons(&s.lab, &s.files);
    let n1: PathBuf = s.files[0].config.clone();
    wait_until("n1's 4 links up", Duration::from_secs(30), || {
        up_links(&n1) == 4
    });
    let unchanged = |what: &str| {
        assert_eq!(links(&n1).len(), 4, "after {what}");
        assert_eq!(up_links(&n1), 4, "after {what}");
    };
    let wait_refusal = |reason: &str, before: u64| {
        wait_until(
            &format!("a {reason} refusal"),
            Duration::from_secs(3 * REFRESH + 10),
            || refusals(&n1, reason) > before,
        );
    };

    // A tampered byte, not signed again.
    let tampered = text(&good.0).replacen("\"n3\"", "\"n9\"", 1);
    std::fs::write(d.join("www/registry.json"), tampered).unwrap();
    wait_refusal("bad_signature", 0);
    let message = status(&n1)["registry"]["last_refusal"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains(&format!("https://{SERVER_IP}:{PORT}/reg/registry.json: registry refused: its signature does not match")),
        "{message}"
    );
    unchanged("a tampered byte");

    // Signed by a key the nodes do not trust.
    restore();
    std::fs::write(
        d.join("www/registry.json"),
        text(&good.0).replacen("\"n3\"", "\"n9\"", 1),
    )
    .unwrap();
    let out = braid(&[
        "registry",
        "sign",
        "-s",
        &d.join("other.key").display().to_string(),
        d.join("www/registry.json").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    wait_refusal("unknown_key", 0);
    unchanged("another key");

    // The older version with its valid signature: a rollback.
    std::fs::write(d.join("www/registry.json"), &old.0).unwrap();
    std::fs::write(d.join("www/registry.json.minisig"), &old.1).unwrap();
    wait_refusal("rollback", 0);
    assert!(
        status(&n1)["registry"]["last_refusal"]
            .as_str()
            .unwrap()
            .contains("it is older than the registry this node runs")
    );
    unchanged("a rollback");
    restore();

    // A 5 MB response, with and without Content-Length.
    for (path, n) in [("big", 1), ("bigstream", 2)] {
        point_at(
            &s.files[0],
            &format!("https://{SERVER_IP}:{PORT}/{path}/registry.json"),
        );
        wait_refusal("too_large", n - 1);
        assert!(
            status(&n1)["registry"]["last_refusal"]
                .as_str()
                .unwrap()
                .contains("sent more than 4194304 bytes; refused")
        );
        unchanged("a 5 MB response");
    }

    // A redirect loop, and a redirect to plain http://.
    point_at(
        &s.files[0],
        &format!("https://{SERVER_IP}:{PORT}/loop/registry.json"),
    );
    wait_until(
        "the redirect loop refused",
        Duration::from_secs(2 * REFRESH + 10),
        || fetch_error(&n1).contains("more than 3 redirects"),
    );
    unchanged("a redirect loop");
    point_at(
        &s.files[0],
        &format!("https://{SERVER_IP}:{PORT}/plain/registry.json"),
    );
    wait_until(
        "the downgrade refused",
        Duration::from_secs(2 * REFRESH + 10),
        || fetch_error(&n1).contains("which is not https://"),
    );
    unchanged("a redirect to http://");

    // A server that accepts and never answers: given up after 15 s.
    point_at(
        &s.files[0],
        &format!("https://{SERVER_IP}:{PORT}/hang/registry.json"),
    );
    wait_until(
        "the hanging server given up on",
        Duration::from_secs(40),
        || fetch_error(&n1).contains("did not answer within 15 s"),
    );
    unchanged("a hanging server");

    // Nobody listening; then the node restarts while the source is unreachable: it runs on
    // its last good copy.
    point_at(
        &s.files[0],
        &format!("https://{SERVER_IP}:9/reg/registry.json"),
    );
    wait_until(
        "the unreachable server noticed",
        Duration::from_secs(2 * REFRESH + 10),
        || fetch_error(&n1).contains("cannot reach"),
    );
    unchanged("an unreachable server");
    let out = braid(&["down", "-c", n1.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_until("n1's daemon gone", Duration::from_secs(10), || {
        status(&n1).is_null()
    });
    start_daemons(&s.lab, &s.files[..1]);
    wait_until(
        "n1 back up from its last good copy",
        Duration::from_secs(30),
        || up_links(&n1) == 4,
    );
    let log = std::fs::read_to_string(n1.with_file_name("braid.log")).unwrap();
    assert!(log.contains("running on the last good copy"), "{log}");
    let (_, metrics) = http(&s.lab.ns(1), "GET", "/metrics");
    assert_eq!(
        sample(&metrics, "braid_registry_fetch_success", &[]),
        Some(0.0),
        "{metrics}"
    );
    s.lab.down().unwrap();
}

/// The upstream router follows the mesh with one route set once: `braid routes --upstream
/// --aggregate` on the exit gives the network's allocation; a node that joins later (on the
/// server only) is reached from the "internet" beyond the router with nothing done there.
#[test]
fn the_upstream_router_reaches_a_new_node_through_the_aggregate_route() {
    let options = ConfigOptions {
        routing: "static".into(),
        ..ConfigOptions::default()
    };
    let Some(mut s) = setup_with("ru_agg", 4, &options) else {
        return;
    };
    let d = s.dir.path().to_path_buf();
    let lab = &s.lab;
    // n1 is the exit: its upstream router and the internet (removed with the lab).
    lab.add_upstream(1).unwrap();
    // n1 is the exit.
    edit_json(&s.files[0].config, |c| {
        c["exit"] = json!({
            "upstream_interface": exit::UPSTREAM_INTERFACE,
            "gateway6": exit::UPSTREAM_GATEWAY.v6.to_string(),
        });
    });
    s.entries[0]["exit_preference"] = json!(100);
    publish(&d, &s.entries[..3], "ops");
    wait_for_server(lab);
    start_daemons(lab, &s.files);
    wait_for_bridges(lab, 3);

    let routes = lab
        .exec(
            1,
            env!("CARGO_BIN_EXE_braid"),
            &[
                "routes",
                "--upstream",
                "--aggregate",
                "-c",
                s.files[0].config.to_str().unwrap(),
            ],
        )
        .unwrap();
    let routes = text(&routes.stdout);
    assert_eq!(
        routes,
        format!(
            "ip -6 route replace {} via {}\n",
            braid_lab::configs::LAB_ALLOCATION,
            exit::EXIT_UPSTREAM.v6
        )
    );
    assert_eq!(lab.route_back(&routes).unwrap(), 1);
    let w2 = lab.add_workload(2, "braid0").unwrap();
    wait_until("w2 -> internet", Duration::from_secs(30), || {
        lab.workload_reaches_internet(2, true)
    });
    let internet = lab.internet_ns();
    let internet_pings = |addr: &str| {
        Command::new("ip")
            .args([
                "netns", "exec", &internet, "ping", "-c", "1", "-W", "2", addr,
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(internet_pings(&w2.v6.to_string()));

    // n4 joins on the server only; the router is not touched.
    publish(&d, &s.entries, "ops");
    wait_for_bridges(lab, 4);
    let w4 = lab.add_workload(4, "braid0").unwrap();
    wait_until(
        "w4 -> internet through the exit",
        Duration::from_secs(3 * REFRESH + 30),
        || lab.workload_reaches_internet(4, true),
    );
    assert!(
        internet_pings(&w4.v6.to_string()),
        "the internet reaches n4's workload"
    );
    let router_routes = Command::new("ip")
        .args(["-n", &lab.router_ns(), "-6", "route", "show"])
        .output()
        .unwrap();
    assert!(
        !text(&router_routes.stdout).contains(":4::/64"),
        "no per-node route was added"
    );
    s.lab.down().unwrap();
}
