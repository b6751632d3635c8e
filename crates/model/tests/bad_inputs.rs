//! Every bad input gets an error that names the file, the JSON path, what is wrong and the
//! fix. Each case edits a valid document and asserts the problem it must produce.

use braid_model::{Config, Registry, mesh};
use serde_json::{Value, json};

const KEY_A: &str = "KOfdX54OtHAOMqSn2rytCDHSFNe8prw43O8A98z21Xg=";
const PUB_A: &str = "sZp4uL3rvCumiTHMdvGWUqnqO2dOYv9UqkPQxjgqqRc=";
const PUB_B: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
const PUB_C: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

fn good_config() -> Value {
    json!({
        "registry": "registry.json",
        "private_key": KEY_A,
        "vrf": "",
        "stale_group": 1,
        "active_group": 2,
        "transport": [
            {"address_family": "ip4", "address": "192.0.2.1", "send_port": 50001, "mtu": 1420, "prefix": "brd4x", "fwmark": 54, "random_port": false},
            {"address_family": "ip6", "address": "2001:db8::1", "send_port": 50002, "mtu": 1420, "prefix": "brd6x", "fwmark": 54, "random_port": false}
        ],
        "remarks": {}
    })
}

fn good_registry() -> Value {
    json!([
        {"public_key": PUB_A, "endpoints": [
            {"send_port": 50001, "address_family": "ip4", "address": "192.0.2.1"},
            {"send_port": 50002, "address_family": "ip6", "address": "2001:db8::1"}], "remarks": {}},
        {"public_key": PUB_B, "endpoints": [
            {"send_port": 50003, "address_family": "ip4", "address": "node-b.example.net"},
            {"send_port": 50004, "address_family": "ip6", "address": ""}], "remarks": {}},
        {"public_key": PUB_C, "endpoints": [
            {"send_port": 50005, "address_family": "ip4"}]}
    ])
}

fn config_errors(doc: &Value) -> String {
    config_text_errors(&doc.to_string())
}

fn config_text_errors(text: &str) -> String {
    match Config::parse("node.json", text) {
        Ok(_) => panic!("expected the config to be rejected:\n{text}"),
        Err(problems) => {
            assert!(problems.has_errors());
            problems.to_string()
        }
    }
}

fn registry_errors(doc: &Value) -> String {
    registry_text_errors(&doc.to_string())
}

fn registry_text_errors(text: &str) -> String {
    match Registry::parse("registry.json", text) {
        Ok(_) => panic!("expected the registry to be rejected:\n{text}"),
        Err(problems) => problems.to_string(),
    }
}

fn with(mut doc: Value, pointer: &str, value: Value) -> Value {
    *doc.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer}")) = value;
    doc
}

fn without(mut doc: Value, parent: &str, key: &str) -> Value {
    doc.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap()
        .remove(key);
    doc
}

fn assert_has(problems: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            problems.contains(needle),
            "expected `{needle}` in:\n{problems}"
        );
    }
    assert!(
        problems.contains("fix: "),
        "every problem says how to fix it:\n{problems}"
    );
}

#[test]
fn good_inputs_pass() {
    let (config, warnings) = Config::parse("node.json", &good_config().to_string()).unwrap();
    assert!(warnings.0.is_empty());
    let (registry, _) = Registry::parse("registry.json", &good_registry().to_string()).unwrap();
    let cross = mesh::check(&config, "node.json", &registry, "registry.json");
    assert!(cross.0.is_empty(), "{cross}");
}

#[test]
fn an_explicit_zero_keepalive_is_told_apart_from_an_absent_one() {
    let keepalive = |doc: Value| {
        let (config, _) = Config::parse("node.json", &doc.to_string()).unwrap();
        config.transports[0].keepalive
    };
    assert_eq!(keepalive(good_config()), None);
    let set = |k: u16| {
        let mut doc = good_config();
        doc["transport"][0]["keepalive"] = json!(k);
        doc
    };
    assert_eq!(keepalive(set(0)), Some(0));
    assert_eq!(keepalive(set(25)), Some(25));
}

// ---- config ----

#[test]
fn c01_malformed_json_gives_line_and_column() {
    let p = config_text_errors("{\n  \"registry\": \"r.json\",\n  \"private_key\" \"x\"\n}");
    assert_has(
        &p,
        &[
            "error: node.json: line 3, column 17: malformed JSON",
            "expected `:`",
        ],
    );
}

#[test]
fn c02_document_not_an_object() {
    assert_has(
        &config_errors(&json!([1, 2])),
        &["node.json: expected an object, found an array"],
    );
}

#[test]
fn c03_missing_registry() {
    assert_has(
        &config_errors(&without(good_config(), "", "registry")),
        &["node.json: registry: missing required field `registry`"],
    );
}

#[test]
fn c04_empty_registry_path() {
    assert_has(
        &config_errors(&with(good_config(), "/registry", json!(""))),
        &["node.json: registry: the registry path is empty"],
    );
}

#[test]
fn c05_missing_private_key() {
    assert_has(
        &config_errors(&without(good_config(), "", "private_key")),
        &["private_key: missing required field", "braid keygen"],
    );
}

#[test]
fn c06_private_key_bad_base64() {
    assert_has(
        &config_errors(&with(good_config(), "/private_key", json!("not*base64"))),
        &["node.json: private_key: the private key is not valid base64"],
    );
}

#[test]
fn c07_private_key_wrong_length() {
    assert_has(
        &config_errors(&with(good_config(), "/private_key", json!("AAAA"))),
        &["private_key: the private key decodes to 3 bytes, but a WireGuard key is 32 bytes"],
    );
}

#[test]
fn c08_stale_group_zero() {
    assert_has(
        &config_errors(&with(good_config(), "/stale_group", json!(0))),
        &[
            "node.json: stale_group: 0 is outside 1..=4294967295",
            "nonzero interface group",
        ],
    );
}

#[test]
fn c09_active_group_zero() {
    assert_has(
        &config_errors(&with(good_config(), "/active_group", json!(0))),
        &["node.json: active_group: 0 is outside"],
    );
}

#[test]
fn c10_groups_equal() {
    assert_has(
        &config_errors(&with(good_config(), "/active_group", json!(1))),
        &[
            "active_group: stale_group and active_group are both 1",
            "two different nonzero values",
        ],
    );
}

#[test]
fn c11_transport_missing() {
    assert_has(
        &config_errors(&without(good_config(), "", "transport")),
        &["transport: missing required field `transport`"],
    );
}

#[test]
fn c12_transport_empty() {
    assert_has(
        &config_errors(&with(good_config(), "/transport", json!([]))),
        &["transport: the transport list is empty"],
    );
}

#[test]
fn c13_transport_not_a_list() {
    assert_has(
        &config_errors(&with(good_config(), "/transport", json!({"a": 1}))),
        &["transport: expected an array, found an object"],
    );
}

#[test]
fn c14_unknown_address_family() {
    assert_has(
        &config_errors(&with(
            good_config(),
            "/transport/0/address_family",
            json!("ip5"),
        )),
        &[
            "node.json: transport[0].address_family: unknown value `ip5`",
            "did you mean `ip4`?",
        ],
    );
}

#[test]
fn c15_send_port_zero() {
    assert_has(
        &config_errors(&with(good_config(), "/transport/1/send_port", json!(0))),
        &["node.json: transport[1].send_port: 0 is outside 1..=65535"],
    );
}

#[test]
fn c16_send_port_too_large() {
    assert_has(
        &config_errors(&with(good_config(), "/transport/0/send_port", json!(70000))),
        &["transport[0].send_port: 70000 is outside 1..=65535"],
    );
}

#[test]
fn c17_send_port_not_a_number() {
    assert_has(
        &config_errors(&with(
            good_config(),
            "/transport/0/send_port",
            json!("50001"),
        )),
        &["transport[0].send_port: expected a whole number in 1..=65535, found a string"],
    );
}

#[test]
fn c18_mtu_too_small() {
    assert_has(
        &config_errors(&with(good_config(), "/transport/0/mtu", json!(1200))),
        &[
            "transport[0].mtu: 1200 is outside 1280..=65535",
            "IPv6, which needs 1280",
        ],
    );
}

#[test]
fn c19_mtu_too_large() {
    assert_has(
        &config_errors(&with(good_config(), "/transport/1/mtu", json!(70000))),
        &["transport[1].mtu: 70000 is outside 1280..=65535"],
    );
}

#[test]
fn c20_empty_prefix() {
    assert_has(
        &config_errors(&with(good_config(), "/transport/0/prefix", json!(""))),
        &["transport[0].prefix: the interface name prefix is empty"],
    );
}

#[test]
fn c21_prefix_with_bad_characters() {
    assert_has(
        &config_errors(&with(good_config(), "/transport/0/prefix", json!("br d/"))),
        &["transport[0].prefix: interface prefix name `br d/` contains a character Linux refuses"],
    );
}

#[test]
fn c22_prefix_longer_than_an_interface_name() {
    assert_has(
        &config_errors(&with(
            good_config(),
            "/transport/0/prefix",
            json!("averyverylongprefix"),
        )),
        &[
            "transport[0].prefix: interface prefix name `averyverylongprefix` is 19 bytes; Linux allows at most 15",
        ],
    );
}

#[test]
fn c23_same_family_same_send_port() {
    let doc = with(good_config(), "/transport/1/address_family", json!("ip4"));
    let doc = with(doc, "/transport/1/address", json!("192.0.2.1"));
    let doc = with(doc, "/transport/1/send_port", json!(50001));
    assert_has(
        &config_errors(&doc),
        &[
            "transport[1].send_port: transport[0] and transport[1] are both ip4 with send port 50001",
        ],
    );
}

#[test]
fn c24_same_prefix_twice() {
    assert_has(
        &config_errors(&with(good_config(), "/transport/1/prefix", json!("brd4x"))),
        &["transport[1].prefix: transport[0] and transport[1] share the prefix `brd4x`"],
    );
}

#[test]
fn c25_unknown_top_level_field_suggests() {
    let mut doc = good_config();
    doc["registy"] = json!("x");
    assert_has(
        &config_errors(&doc),
        &[
            "node.json: registy: unknown field `registy`",
            "did you mean `registry`?",
        ],
    );
}

#[test]
fn c26_unknown_transport_field_suggests() {
    let mut doc = good_config();
    doc["transport"][0]["sendport"] = json!(1);
    assert_has(
        &config_errors(&doc),
        &[
            "transport[0].sendport: unknown field `sendport`",
            "did you mean `send_port`?",
        ],
    );
}

#[test]
fn c27_wrong_type_for_random_port() {
    assert_has(
        &config_errors(&with(
            good_config(),
            "/transport/0/random_port",
            json!("yes"),
        )),
        &["transport[0].random_port: expected true or false, found a string"],
    );
}

#[test]
fn c28_negative_fwmark() {
    assert_has(
        &config_errors(&with(good_config(), "/transport/0/fwmark", json!(-1))),
        &["transport[0].fwmark: expected a whole number in 0..=4294967295, found -1"],
    );
}

#[test]
fn c29_address_of_the_wrong_family() {
    assert_has(
        &config_errors(&with(
            good_config(),
            "/transport/0/address",
            json!("2001:db8::1"),
        )),
        &["transport[0].address: `2001:db8::1` is an ip6 address but the address family is ip4"],
    );
}

#[test]
fn c30_address_with_a_port() {
    assert_has(
        &config_errors(&with(
            good_config(),
            "/transport/0/address",
            json!("192.0.2.1:50001"),
        )),
        &[
            "transport[0].address: `192.0.2.1:50001` is neither an IP address nor a DNS name",
            "no port",
        ],
    );
}

#[test]
fn c31_unknown_backend() {
    let mut doc = good_config();
    doc["backend"] = json!("kernal");
    assert_has(
        &config_errors(&doc),
        &["backend: unknown value `kernal`", "did you mean `kernel`?"],
    );
}

#[test]
fn c32_address_plan_longer_than_64() {
    let mut doc = good_config();
    doc["address_plan"] = json!({"ipv6": "2001:db8::/80"});
    assert_has(
        &config_errors(&doc),
        &["address_plan.ipv6: 2001:db8::/80 is longer than /64"],
    );
}

#[test]
fn c33_address_plan_not_a_prefix() {
    let mut doc = good_config();
    doc["address_plan"] = json!({"ipv6": "2001:db8::"});
    assert_has(
        &config_errors(&doc),
        &["address_plan.ipv6: `2001:db8::` is not an IPv6 prefix"],
    );
}

#[test]
fn c34_address_plan_host_bits() {
    let mut doc = good_config();
    doc["address_plan"] = json!({"ipv6": "2001:db8::1/48"});
    assert_has(
        &config_errors(&doc),
        &[
            "address_plan.ipv6: 2001:db8::1/48 has host bits set",
            "2001:db8::/48",
        ],
    );
}

#[test]
fn c35_ipv4_pool_too_long() {
    let mut doc = good_config();
    doc["address_plan"] = json!({"ipv6": "2001:db8::/48", "ipv4_pool": "10.0.0.0/25"});
    assert_has(
        &config_errors(&doc),
        &["address_plan.ipv4_pool: 10.0.0.0/25 is longer than /24"],
    );
}

#[test]
fn c36_unknown_routing_mode() {
    let mut doc = good_config();
    doc["address_plan"] = json!({"ipv6": "2001:db8::/48"});
    doc["routing"] = json!({"mode": "babeld"});
    assert_has(
        &config_errors(&doc),
        &[
            "routing.mode: unknown value `babeld`",
            "did you mean `babel`?",
        ],
    );
}

#[test]
fn c37_routing_without_address_plan() {
    let mut doc = good_config();
    doc["routing"] = json!({"mode": "static"});
    assert_has(
        &config_errors(&doc),
        &["routing.mode: routing mode `static` needs the address plan"],
    );
}

#[test]
fn c37b_liveness_dead_time_shorter_than_two_keepalives() {
    let mut doc = good_config();
    doc["address_plan"] = json!({"ipv6": "2001:db8::/48"});
    doc["routing"] = json!({"mode": "babel", "liveness_interval_ms": 500, "dead_after_ms": 600});
    assert_has(
        &config_errors(&doc),
        &[
            "routing.dead_after_ms: 600 ms is less than two keepalives (500 ms each",
            "use at least 1000 ms",
        ],
    );
    doc["routing"] = json!({"mode": "babel", "liveness_interval_ms": 70000});
    assert_has(
        &config_errors(&doc),
        &["routing.liveness_interval_ms: 70000 is outside 0..=60000"],
    );
}

#[test]
fn c38_bad_status_listen() {
    let mut doc = good_config();
    doc["status"] = json!({"listen": "localhost"});
    assert_has(
        &config_errors(&doc),
        &["status.listen: `localhost` is not an address:port"],
    );
}

#[test]
fn c39_vrf_and_netns_together() {
    let mut doc = with(good_config(), "/vrf", json!("braid"));
    doc["netns"] = json!("braid");
    assert_has(&config_errors(&doc), &["netns: both vrf and netns are set"]);
}

#[test]
fn c40_vrf_name_too_long() {
    assert_has(
        &config_errors(&with(good_config(), "/vrf", json!("a-very-long-vrf-name"))),
        &["vrf: VRF name `a-very-long-vrf-name` is 20 bytes"],
    );
}

#[test]
fn c41_path_without_interface_or_source() {
    let mut doc = good_config();
    doc["transport"][0]["paths"] = json!([{"weight": 2}]);
    assert_has(
        &config_errors(&doc),
        &["transport[0].paths[0]: a path needs an interface or a source address"],
    );
}

#[test]
fn c42_path_weight_zero() {
    let mut doc = good_config();
    doc["transport"][0]["paths"] = json!([{"interface": "wan0", "weight": 0}]);
    assert_has(
        &config_errors(&doc),
        &["transport[0].paths[0].weight: 0 is outside 1..=1000000"],
    );
}

#[test]
fn c43_unknown_scheduler() {
    let mut doc = good_config();
    doc["transport"][0]["scheduler"] = json!("roundrobin");
    assert_has(
        &config_errors(&doc),
        &[
            "transport[0].scheduler: unknown value `roundrobin`",
            "did you mean `round-robin`?",
        ],
    );
}

#[test]
fn c44_exit_without_gateway() {
    let mut doc = good_config();
    doc["exit"] = json!({"upstream_interface": "eth0"});
    assert_has(
        &config_errors(&doc),
        &["node.json: exit: an exit needs at least one upstream gateway"],
    );
}

#[test]
fn c45_remarks_not_an_object() {
    assert_has(
        &config_errors(&with(good_config(), "/remarks", json!("earth"))),
        &["remarks: remarks must be an object"],
    );
}

#[test]
fn c46_all_problems_are_reported_at_once() {
    let doc = with(good_config(), "/transport/0/send_port", json!(0));
    let doc = with(doc, "/transport/1/mtu", json!(9));
    let doc = with(doc, "/stale_group", json!(0));
    let p = config_errors(&doc);
    assert_has(
        &p,
        &["transport[0].send_port", "transport[1].mtu", "stale_group"],
    );
    assert_eq!(p.lines().count(), 3, "{p}");
}

// ---- registry ----

#[test]
fn r01_malformed_json() {
    assert_has(
        &registry_text_errors("[\n {\"public_key\": \"x\" \"y\"}\n]"),
        &[
            "error: registry.json: line 2, column 21: malformed JSON",
            "expected `,` or `}`",
        ],
    );
}

#[test]
fn r02_not_an_array() {
    assert_has(
        &registry_errors(&json!({"nodes": []})),
        &["registry.json: expected an array, found an object"],
    );
}

#[test]
fn r03_public_key_bad_base64() {
    assert_has(
        &registry_errors(&with(good_registry(), "/1/public_key", json!("%%%"))),
        &["registry.json: [1].public_key: the public key is not valid base64"],
    );
}

#[test]
fn r04_public_key_wrong_length() {
    assert_has(
        &registry_errors(&with(good_registry(), "/1/public_key", json!("AAAAAAAA"))),
        &["[1].public_key: the public key decodes to 6 bytes"],
    );
}

#[test]
fn r05_duplicate_public_keys() {
    assert_has(
        &registry_errors(&with(good_registry(), "/2/public_key", json!(PUB_B))),
        &["registry.json: [2].public_key: public key HIgo9xNz is also used by node [1]"],
    );
}

#[test]
fn r06_send_port_zero() {
    assert_has(
        &registry_errors(&with(good_registry(), "/2/endpoints/0/send_port", json!(0))),
        &["registry.json: [2].endpoints[0].send_port: 0 is outside 1..=65535"],
    );
}

#[test]
fn r07_duplicate_send_port_across_the_mesh() {
    assert_has(
        &registry_errors(&with(
            good_registry(),
            "/2/endpoints/0/send_port",
            json!(50003),
        )),
        &[
            "registry.json: [2].endpoints[0].send_port: send port 50003 is also used by node [1]",
            "unique across the whole mesh",
        ],
    );
}

#[test]
fn r08_unknown_address_family() {
    assert_has(
        &registry_errors(&with(
            good_registry(),
            "/1/endpoints/1/address_family",
            json!("ipv6"),
        )),
        &[
            "[1].endpoints[1].address_family: unknown value `ipv6`",
            "did you mean `ip6`?",
        ],
    );
}

#[test]
fn r09_unknown_node_field_suggests() {
    let mut doc = good_registry();
    doc[1]["endpoint"] = json!([]);
    assert_has(
        &registry_errors(&doc),
        &[
            "[1].endpoint: unknown field `endpoint`",
            "did you mean `endpoints`?",
        ],
    );
}

#[test]
fn r10_missing_endpoints() {
    assert_has(
        &registry_errors(&without(good_registry(), "/1", "endpoints")),
        &["[1].endpoints: missing required field `endpoints`"],
    );
}

#[test]
fn r11_bad_address() {
    assert_has(
        &registry_errors(&with(
            good_registry(),
            "/1/endpoints/0/address",
            json!("node b.example"),
        )),
        &["[1].endpoints[0].address: `node b.example` is neither an IP address nor a DNS name"],
    );
}

#[test]
fn r12_duplicate_explicit_index() {
    let mut doc = good_registry();
    doc[0]["index"] = json!(5);
    doc[2]["index"] = json!(5);
    assert_has(
        &registry_errors(&doc),
        &["[2].index: index 5 is also used by node [0]"],
    );
}

#[test]
fn r13_index_zero() {
    let mut doc = good_registry();
    doc[0]["index"] = json!(0);
    assert_has(
        &registry_errors(&doc),
        &[
            "[0].index: 0 is outside 1..=",
            "reserved for the upstream segment",
        ],
    );
}

#[test]
fn r14_same_endpoint_twice_in_one_node() {
    let doc = with(
        good_registry(),
        "/1/endpoints/1",
        json!({"send_port": 50003, "address_family": "ip4", "address": ""}),
    );
    assert_has(
        &registry_errors(&doc),
        &[
            "[1].endpoints[1].send_port: endpoints[0] and endpoints[1] are both ip4 with send port 50003",
        ],
    );
}

#[test]
fn r15_node_not_an_object() {
    assert_has(
        &registry_errors(&with(good_registry(), "/1", json!("node-b"))),
        &["registry.json: [1]: expected an object, found a string"],
    );
}

#[test]
fn r16_duplicate_key_gives_line_column_and_field() {
    // The last value used to win silently (serde_json keeps it).
    let text = "[\n  {\"public_key\": \"PUB_A\", \"endpoints\": [],\n   \"remarks\": {\"name\": \"n1\",\n     \"name\": \"n9\"}}\n]"
        .replace("PUB_A", PUB_A);
    assert_has(
        &registry_text_errors(&text),
        &[
            "error: registry.json: [0].remarks.name: duplicate field `name` at line 4, column 6 (first at line 3, column 16)",
            "fix: keep one `name`",
        ],
    );
}

#[test]
fn c47_duplicate_key_in_config() {
    let text = good_config().to_string().replacen(
        "\"prefix\":\"brd4x\"",
        "\"prefix\":\"brd4x\",\"mtu\":1280",
        1,
    );
    assert_has(
        &config_text_errors(&text),
        &["node.json: transport[0].mtu: duplicate field `mtu` at line 1, column"],
    );
}

// ---- config against registry ----

fn cross(config: Value, registry: Value) -> String {
    let (config, _) = Config::parse("node.json", &config.to_string()).unwrap();
    let (registry, _) = Registry::parse("registry.json", &registry.to_string()).unwrap();
    mesh::check(&config, "node.json", &registry, "registry.json").to_string()
}

#[test]
fn x01_own_key_not_in_registry_is_a_warning() {
    let registry = Value::Array(good_registry().as_array().unwrap()[1..].to_vec());
    assert_has(
        &cross(good_config(), registry),
        &[
            "warning: node.json: private_key: this node's public key sZp4uL3r",
            "is not in registry.json",
            "braid meta",
        ],
    );
}

#[test]
fn x02_interface_name_too_long_for_a_peer_port() {
    let config = with(good_config(), "/transport/0/prefix", json!("braidmesh4x"));
    assert_has(
        &cross(config, good_registry()),
        &[
            "error: node.json: transport[0].prefix: interface name `braidmesh4x50003`",
            "is 16 bytes; Linux allows at most 15",
            "at most 10 bytes",
        ],
    );
}

#[test]
fn x03_own_entry_disagrees_with_config() {
    let config = with(good_config(), "/transport/0/send_port", json!(50009));
    assert_has(
        &cross(config, good_registry()),
        &[
            "warning: registry.json: [0].endpoints: this node's entry has no ip4 endpoint with send port 50009",
        ],
    );
}

#[test]
fn x04_exit_without_exit_preference() {
    let mut config = good_config();
    config["exit"] = json!({"upstream_interface": "eth0", "gateway6": "fe80::1"});
    assert_has(
        &cross(config, good_registry()),
        &["warning: registry.json: [0].exit_preference: the config makes this node an exit"],
    );
}

#[test]
fn problems_are_located_in_the_right_file() {
    let p = registry_errors(&with(good_registry(), "/0/endpoints/0/send_port", json!(0)));
    assert!(
        p.starts_with("error: registry.json: [0].endpoints[0].send_port"),
        "{p}"
    );
}

// ---- private_key_file ----

use braid_model::KeyFile;

/// The config with its key in a file named `key.txt` instead of inline.
fn key_file_config() -> Value {
    let mut doc = without(good_config(), "", "private_key");
    doc["private_key_file"] = json!("key.txt");
    doc
}

/// Parses `doc` with the key file read as `text` with permission bits `mode`.
fn parse_with_key_file(
    doc: &Value,
    text: &str,
    mode: u32,
) -> Result<(Config, braid_model::Problems), braid_model::Problems> {
    let read = |path: &str| KeyFile::Read {
        path: format!("/etc/braid/{path}"),
        text: text.to_string(),
        mode,
    };
    Config::parse_with("node.json", &doc.to_string(), &read)
}

fn key_file_errors(doc: &Value, text: &str, mode: u32) -> String {
    match parse_with_key_file(doc, text, mode) {
        Ok(_) => panic!("expected the key file to be refused: {text:?} mode {mode:o}"),
        Err(problems) => problems.to_string(),
    }
}

#[test]
fn k01_key_file_as_wg_genkey_writes_it() {
    // `wg genkey > key.txt` leaves a trailing newline; CRLF and spaces are fine too.
    for text in [
        format!("{KEY_A}\n"),
        KEY_A.to_string(),
        format!("  {KEY_A}\r\n\n"),
    ] {
        let (config, warnings) = parse_with_key_file(&key_file_config(), &text, 0o600).unwrap();
        assert_eq!(config.private_key.to_base64(), KEY_A);
        assert_eq!(config.private_key_file.as_deref(), Some("key.txt"));
        assert!(warnings.0.is_empty(), "{warnings}");
    }
    let (config, _) = parse_with_key_file(&key_file_config(), KEY_A, 0o400).unwrap();
    assert_eq!(config.private_key.public_key().to_base64(), PUB_A);
}

#[test]
fn k02_key_file_others_can_read() {
    for mode in [0o644, 0o640, 0o606, 0o602] {
        assert_has(
            &key_file_errors(&key_file_config(), KEY_A, mode),
            &[
                &format!(
                    "error: node.json: private_key_file: the private key file /etc/braid/key.txt can be read or written by other users (mode {mode:04o})"
                ),
                "fix: chmod 600 /etc/braid/key.txt",
            ],
        );
    }
}

#[test]
fn k03_key_file_with_a_bad_key() {
    assert_has(
        &key_file_errors(&key_file_config(), "not*base64\n", 0o600),
        &[
            "node.json: private_key_file: the private key in /etc/braid/key.txt is not valid base64",
            "braid keygen > /etc/braid/key.txt",
        ],
    );
    assert_has(
        &key_file_errors(&key_file_config(), "", 0o600),
        &["the private key in /etc/braid/key.txt decodes to 0 bytes"],
    );
    assert_has(
        &key_file_errors(&key_file_config(), &format!("{KEY_A}\n{KEY_A}\n"), 0o600),
        &["private_key_file: the private key file /etc/braid/key.txt holds more than one line"],
    );
}

#[test]
fn k04_key_file_unreadable() {
    let read = |path: &str| KeyFile::Unreadable {
        path: format!("/etc/braid/{path}"),
        message: "No such file or directory (os error 2)".into(),
        fix: "check the path".into(),
    };
    let p = Config::parse_with("node.json", &key_file_config().to_string(), &read)
        .unwrap_err()
        .to_string();
    assert_has(
        &p,
        &[
            "error: node.json: private_key_file: cannot read the private key file /etc/braid/key.txt: No such file or directory",
        ],
    );
    // Parsing text alone never opens the file.
    assert_has(
        &config_errors(&key_file_config()),
        &["private_key_file: cannot read the private key file key.txt"],
    );
}

#[test]
fn k05_key_inline_and_in_a_file() {
    let mut doc = good_config();
    doc["private_key_file"] = json!("key.txt");
    assert_has(
        &key_file_errors(&doc, KEY_A, 0o600),
        &["node.json: private_key_file: both private_key and private_key_file are set"],
    );
    assert_has(
        &key_file_errors(
            &with(key_file_config(), "/private_key_file", json!("")),
            KEY_A,
            0o600,
        ),
        &["private_key_file: the private key file's path is empty"],
    );
}

#[test]
fn k06_entry_fields_in_the_config() {
    let mut doc = good_config();
    doc["name"] = json!("alpha");
    doc["index"] = json!(7);
    doc["exit"] = json!({"upstream_interface": "eth0", "gateway6": "fe80::1", "preference": 20});
    let (config, _) = Config::parse("node.json", &doc.to_string()).unwrap();
    assert_eq!(
        (config.name.as_deref(), config.index),
        (Some("alpha"), Some(7))
    );
    assert_eq!(config.exit.map(|e| e.preference), Some(20));
    doc["exit"] = json!({"upstream_interface": "eth0", "gateway6": "fe80::1"});
    let (config, _) = Config::parse("node.json", &doc.to_string()).unwrap();
    assert_eq!(config.exit.map(|e| e.preference), Some(100));
    assert_has(
        &config_errors(&with(doc, "/index", json!(0))),
        &["node.json: index: 0 is outside 1..="],
    );
}

// ---- registry source and signing keys ----

const SIGNING_KEY: &str = "RWSaNeQHrIQwztZwOXcSS6kfVMGL3ECitizHRTY3tC+gkwVEx5CmceWf";

#[test]
fn s01_plain_http_and_unknown_schemes_are_refused() {
    assert_has(
        &config_errors(&with(
            good_config(),
            "/registry",
            json!("http://reg.example.net/r.json"),
        )),
        &[
            "node.json: registry: `http://reg.example.net/r.json` is plain HTTP",
            "fix: serve the registry over https://",
        ],
    );
    assert_has(
        &config_errors(&with(
            good_config(),
            "/registry",
            json!("ftp://reg.example.net/r.json"),
        )),
        &["registry: `ftp://reg.example.net/r.json` has a scheme braid does not fetch"],
    );
    assert_has(
        &config_errors(&with(good_config(), "/registry", json!("file://r.json"))),
        &[
            "is not a file:// URL of an absolute path",
            "file:///etc/braid/registry.json",
        ],
    );
}

#[test]
fn s02_bad_trusted_keys() {
    let mut doc = good_config();
    doc["registry_keys"] = json!(["RWQ-not-a-key"]);
    assert_has(
        &config_errors(&doc),
        &[
            "node.json: registry_keys[0]: `RWQ-not-a-key` is not base64",
            "second line of the signing key's .pub file",
        ],
    );
    doc["registry_keys"] = json!([SIGNING_KEY, SIGNING_KEY]);
    assert_has(
        &config_errors(&doc),
        &["registry_keys[1]: key CE3084AC07E4359A is listed twice"],
    );
    doc["registry_keys"] = json!(SIGNING_KEY);
    assert_has(
        &config_errors(&doc),
        &["registry_keys: expected an array, found a string"],
    );
}

#[test]
fn s03_refresh_and_max_age_bounds() {
    let mut doc = good_config();
    doc["registry"] = json!("https://reg.example.net/r.json");
    doc["registry_keys"] = json!([SIGNING_KEY]);
    doc["registry_refresh"] = json!(1);
    assert_has(
        &config_errors(&doc),
        &["registry_refresh: 1 is outside 5..=86400"],
    );
    doc["registry_refresh"] = json!(60);
    doc["registry_max_age"] = json!(10);
    assert_has(
        &config_errors(&doc),
        &["registry_max_age: 10 is outside 60..="],
    );
    doc["registry_max_age"] = json!(86400);
    let (config, warnings) = Config::parse("node.json", &doc.to_string()).unwrap();
    assert!(warnings.0.is_empty(), "{warnings}");
    assert_eq!(config.registry_options.refresh, 60);
    assert_eq!(config.registry_options.max_age, Some(86400));
    assert_eq!(config.registry_options.keys.len(), 1);
    // A max age needs signatures.
    let mut unsigned = doc.clone();
    unsigned.as_object_mut().unwrap().remove("registry_keys");
    assert_has(
        &config_errors(&unsigned),
        &["registry_max_age: registry_max_age needs signed registries"],
    );
}

#[test]
fn s04_an_unsigned_url_and_url_options_on_a_path_are_warnings() {
    let mut doc = good_config();
    doc["registry"] = json!("https://reg.example.net/r.json");
    let (_, warnings) = Config::parse("node.json", &doc.to_string()).unwrap();
    assert!(
        warnings.to_string().contains("warning: node.json: registry_keys: the registry comes from https://reg.example.net/r.json and no signing key is trusted"),
        "{warnings}"
    );
    let mut doc = good_config();
    doc["registry_refresh"] = json!(60);
    let (_, warnings) = Config::parse("node.json", &doc.to_string()).unwrap();
    assert!(
        warnings.to_string().contains("registry_refresh: `registry_refresh` applies to a registry URL, and `registry` is a path"),
        "{warnings}"
    );
}

// ---- paths the split readers took over that had no case (whole lines, so the wording is
// pinned) ----

#[test]
fn c48_registry_file_names_must_not_be_empty() {
    let mut doc = good_config();
    doc["registry"] = json!("https://reg.example.net/r.json");
    doc["registry_ca_file"] = json!("");
    doc["registry_cache"] = json!("");
    assert_has(
        &config_errors(&doc),
        &[
            "error: node.json: registry_ca_file: the path is empty; fix: name a file, or remove the field",
            "error: node.json: registry_cache: the path is empty; fix: name a file, or remove the field",
        ],
    );
}

#[test]
fn c49_control_socket_must_be_absolute() {
    assert_has(
        &config_errors(&{
            let mut doc = good_config();
            doc["control_socket"] = json!("braid.sock");
            doc
        }),
        &[
            "error: node.json: control_socket: `braid.sock` is not an absolute path; fix: use an absolute path such as /run/braid/braid.sock",
        ],
    );
}

#[test]
fn c50_netns_must_be_a_plain_name() {
    assert_has(
        &config_errors(&{
            let mut doc = good_config();
            doc["netns"] = json!("..");
            doc
        }),
        &[
            "error: node.json: netns: `..` is not a usable namespace name; fix: use a plain name such as \"braid\" (it becomes /run/netns/<name>)",
        ],
    );
}

#[test]
fn c51_wan_auto_and_listed_paths_exclude_each_other() {
    let mut doc = good_config();
    doc["transport"][0]["wan"] = json!("auto");
    doc["transport"][0]["paths"] = json!([{"interface": "wan0"}]);
    assert_has(
        &config_errors(&doc),
        &[
            "error: node.json: transport[0].wan: \"wan\": \"auto\" finds the paths itself, but paths are also listed; fix: remove either \"wan\" or \"paths\"",
        ],
    );
}

#[test]
fn c52_exit_interface_and_gateway_families() {
    let mut doc = good_config();
    doc["exit"] =
        json!({"upstream_interface": "", "gateway6": "192.0.2.1", "gateway4": "2001:db8::1"});
    assert_has(
        &config_errors(&doc),
        &[
            "error: node.json: exit.upstream_interface: the upstream interface is empty; fix: name the interface toward the upstream router, e.g. \"eth0\"",
            "error: node.json: exit.gateway6: `192.0.2.1` is not an ip6 address; fix: write the upstream router's ip6 address",
            "error: node.json: exit.gateway4: `2001:db8::1` is not an ip4 address; fix: write the upstream router's ip4 address",
        ],
    );
}

#[test]
fn c53_path_source_of_the_transport_family() {
    let mut doc = good_config();
    doc["transport"][0]["paths"] = json!([{"source": "2001:db8::9"}, {"source": "wan0"}]);
    assert_has(
        &config_errors(&doc),
        &[
            "error: node.json: transport[0].paths[0].source: 2001:db8::9 is not an address of this transport's family; fix: use a source address of the transport's address family",
            "error: node.json: transport[0].paths[1].source: `wan0` is not an IP address; fix: write a local IP address such as \"192.0.2.10\"",
        ],
    );
}

#[test]
fn c54_address_plan_bridge_and_pool() {
    let mut doc = good_config();
    doc["address_plan"] = json!({"ipv6": "2001:db8::/48", "ipv4_pool": "10.0.0.0", "bridge": ""});
    assert_has(
        &config_errors(&doc),
        &[
            "error: node.json: address_plan.bridge: the bridge name is empty; fix: name the node's bridge, e.g. \"braid0\"",
            "error: node.json: address_plan.ipv4_pool: `10.0.0.0` is not an IPv4 prefix; fix: write it as address/length, e.g. \"10.0.0.0/8\", or \"off\"",
        ],
    );
}

#[test]
fn c55_problems_come_in_file_order() {
    // The readers are split per field group; the problems still come in the order of the
    // fields as documented (registry, key, identity, groups, transports, sections).
    let mut doc = good_config();
    doc["registry"] = json!("");
    doc["index"] = json!(0);
    doc["active_group"] = json!(1);
    doc["transport"][0]["mtu"] = json!(1000);
    doc["netns"] = json!("a/b");
    doc["routing"] = json!({"mode": "static"});
    doc["control_socket"] = json!("x");
    let errors = config_errors(&doc);
    let paths: Vec<&str> = errors
        .lines()
        .map(|line| line.split(": ").nth(2).unwrap_or(line))
        .collect();
    assert_eq!(
        paths,
        [
            "registry",
            "index",
            "active_group",
            "transport[0].mtu",
            "netns",
            "control_socket",
            "routing.mode"
        ],
        "{errors}"
    );
}

#[test]
fn r17_lan_subnets_are_lan_prefixes() {
    let mut doc = good_registry();
    doc[0]["lan_subnets"] = json!(["0.0.0.0/0", "192.0.2.0", "192.0.2.0/24", "192.0.2.0/24"]);
    assert_has(
        &registry_errors(&doc),
        &[
            "error: registry.json: [0].lan_subnets[0]: 0.0.0.0/0 is a default route, not a LAN; fix: list the LAN's own prefix, e.g. \"192.0.2.0/24\"; default routes come from exits",
            "error: registry.json: [0].lan_subnets[1]: `192.0.2.0` is not an IP prefix; fix: write it as address/length, e.g. \"192.0.2.0/24\" or \"2001:db8:1::/48\"",
            "error: registry.json: [0].lan_subnets[3]: 192.0.2.0/24 is listed twice; fix: list each LAN subnet once",
        ],
    );
}
