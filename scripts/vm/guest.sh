#!/bin/sh
# The VM test, run by /init inside Debian's stock kernel. Each node is a network namespace
# on one underlay bridge (192.0.2.0/24, 2001:db8::/64); overlays use 2001:db8:5e::/48 and
# 198.18.0.0/15. Every check prints "VMTEST PASS name" or "VMTEST FAIL name: why".
#
# 1. mesh:  3 nodes, kernel backend, `braid up`: wg show agrees with the plan, handshakes,
#           a ping over every link and between the nodes' networks; a registry change
#           removes one peer's links and leaves the others untouched; `braid down`.
# 2. vrf:   the same with "vrf": links and bridge in the VRF, braid's routes only in the
#           VRF's table, pings inside the VRF; `braid down` removes the VRF too.
# 3. babel: 3 nodes, `braid run` with the kernel backend, routing by babeld: babeld
#           learns every peer's network over the kernel links, pings between all nodes'
#           networks. Only when babeld is here.
# 4. mixed: `braid run` on a kernel-backend node (backend auto) and a userspace node whose
#           overlay is in a VRF, linked together; status names each backend; a reload
#           changes a kernel link in place.

P=brdvm
ok=0
bad=0
# Real iproute2, not busybox's applet (ash runs applets before PATH).
ip() { /usr/sbin/ip "$@"; }

pass() {
    echo "VMTEST PASS $*"
    ok=$((ok + 1))
}
fail() {
    echo "VMTEST FAIL $*"
    bad=$((bad + 1))
}
# check NAME COMMAND...: runs the command, passes when it succeeds.
check() {
    local name=$1
    shift
    if "$@" >/tmp/check.out 2>&1; then
        pass "$name"
    else
        fail "$name: $(tail -c 800 /tmp/check.out | tr '\n' ' ')"
    fi
}
# wait_until SECONDS COMMAND...
wait_until() {
    local t=$1 n=0
    shift
    while [ "$n" -lt "$t" ]; do
        "$@" && return 0
        sleep 1
        n=$((n + 1))
    done
    echo "still false after ${t}s: $*"
    "$@"
}
inns() {
    local ns=$1
    shift
    ip netns exec "$P-$ns" "$@"
}

port() { # port NODE FAMILY: the node's send port for the family (4 or 6)
    if [ "$2" = 4 ]; then echo $((51000 + $1 * 10)); else echo $((51001 + $1 * 10)); fi
}
ifname() { # ifname PEER FAMILY: the name of a node's link to PEER
    echo "wg$2x$(port "$1" "$2")"
}

keys() {
    local i
    for i in "$@"; do
        braid keygen >/cfg/n$i.key
        braid pubkey </cfg/n$i.key >/cfg/n$i.pub
    done
}

write_registry() { # write_registry NODE...
    local f=/cfg/registry.json sep="" i
    echo "[" >$f.new
    for i in "$@"; do
        printf '%s{"public_key": "%s", "name": "n%s", "index": %s, "endpoints": [{"send_port": %s, "address_family": "ip4", "address": "192.0.2.%s"}, {"send_port": %s, "address_family": "ip6", "address": "2001:db8::%s"}]}\n' \
            "$sep" "$(cat /cfg/n$i.pub)" "$i" "$i" "$(port "$i" 4)" "$i" "$(port "$i" 6)" "$i" >>$f.new
        sep=","
    done
    echo "]" >>$f.new
    mv $f.new $f
}

write_config() { # write_config NODE BACKEND VRF KEEPALIVE [ROUTING_MODE]
    cat >/cfg/n$1.json <<EOF
{
  "registry": "/cfg/registry.json",
  "private_key": "$(cat /cfg/n$1.key)",
  "vrf": "$3",
  "stale_group": 1,
  "active_group": 2,
  "transport": [
    {"address_family": "ip4", "address": "192.0.2.$1", "send_port": $(port "$1" 4), "mtu": 1420,
     "prefix": "wg4x", "fwmark": 54, "random_port": false, "keepalive": $4},
    {"address_family": "ip6", "address": "2001:db8::$1", "send_port": $(port "$1" 6), "mtu": 1420,
     "prefix": "wg6x", "fwmark": 54, "random_port": false, "keepalive": $4}
  ],
  "backend": "$2",
  "address_plan": {"ipv6": "2001:db8:5e::/48", "ipv4_pool": "198.18.0.0/15"},
  "routing": {"mode": "${5:-static}", "hello_interval": 1},
  "status": {"listen": "off"},
  "control_socket": "/run/braid/n$1/braid.sock"
}
EOF
}

underlay() { # underlay NODE...
    local i
    ip link add $P-br type bridge
    ip link set $P-br up
    for i in "$@"; do
        ip netns add $P-n$i
        ip link add $P-v$i type veth peer name eth0 netns $P-n$i
        ip link set $P-v$i master $P-br up
        inns n$i ip link set lo up
        inns n$i ip addr add 192.0.2.$i/24 dev eth0
        inns n$i ip addr add 2001:db8::$i/64 dev eth0 nodad
        inns n$i ip link set eth0 up
    done
}

teardown() {
    local i
    for i in 1 2 3; do ip netns del $P-n$i 2>/dev/null; done
    ip link del $P-br 2>/dev/null
    rm -f /cfg/*.json
}

# wg_agrees NODE PEER FAMILY: `wg show` on the node's link to PEER says what the plan says:
# listen on the peer's send port, send to the peer at the node's own send port, one peer
# (the peer's key) with allowed IPs 0.0.0.0/0 and ::/0, fwmark 54, keepalive 1.
wg_agrees() {
    local i=$1 j=$2 f=$3 dev endpoint
    dev=$(ifname "$j" "$f")
    inns n$i wg show "$dev" dump >/tmp/dump || return 1
    cat /tmp/dump
    if [ "$f" = 4 ]; then endpoint="192.0.2.$j:$(port "$i" 4)"; else endpoint="[2001:db8::$j]:$(port "$i" 6)"; fi
    set -- $(head -n1 /tmp/dump)
    [ "$2" = "$(cat /cfg/n$i.pub)" ] || { echo "public key $2"; return 1; }
    [ "$3" = "$(port "$j" "$f")" ] || { echo "listen port $3"; return 1; }
    [ "$4" = "0x36" ] || { echo "fwmark $4"; return 1; }
    [ "$(wc -l </tmp/dump)" = 2 ] || { echo "not exactly one peer"; return 1; }
    set -- $(tail -n1 /tmp/dump)
    [ "$1" = "$(cat /cfg/n$j.pub)" ] || { echo "peer $1"; return 1; }
    [ "$3" = "$endpoint" ] || { echo "endpoint $3, planned $endpoint"; return 1; }
    [ "$4" = "0.0.0.0/0,::/0" ] || { echo "allowed ips $4"; return 1; }
    [ "$8" = 1 ] || { echo "keepalive $8"; return 1; }
}

# all_handshakes NODE...: every WireGuard link of every node has a handshake.
all_handshakes() {
    local i
    for i in "$@"; do
        inns n$i wg show all latest-handshakes | awk '$3 == 0 { bad = 1; print } END { exit bad }' || return 1
    done
}

link_local() { # link_local NODE DEV
    inns n$1 ip -6 -o addr show dev "$2" scope link | awk '{ print $4 }' | cut -d/ -f1 | head -n1
}
overlay6() { inns n$1 ip -6 -o addr show dev braid0 scope global | awk '{ print $4 }' | cut -d/ -f1 | head -n1; }
overlay4() { inns n$1 ip -4 -o addr show dev braid0 | awk '{ print $4 }' | cut -d/ -f1 | head -n1; }

# ping_link NODE PEER FAMILY: the peer's link-local address over the node's link to it.
ping_link() {
    local dev far
    dev=$(ifname "$2" "$3")
    far=$(link_local "$2" "$(ifname "$1" "$3")")
    [ -n "$far" ] || { echo "no link-local address on n$2's link to n$1"; return 1; }
    inns n$1 ping -c 2 -i 0.5 -W 5 -I "$dev" "$far%$dev"
}

# ping_overlay NODE PEER VRF: the peer's bridge addresses (IPv6 and IPv4) over the mesh.
ping_overlay() {
    local via=""
    [ -n "$3" ] && via="-I $3"
    inns n$1 ping -c 2 -i 0.5 -W 5 $via "$(overlay6 "$2")" &&
        inns n$1 ping -c 2 -i 0.5 -W 5 $via "$(overlay4 "$2")"
}

index_of() { inns n$1 cat /sys/class/net/$2/ifindex 2>/dev/null || inns n$1 ip -o link show dev "$2" | cut -d: -f1; }
absent() { ! inns n$1 ip link show dev "$2" >/dev/null 2>&1; }
is_wireguard() { inns n$1 ip -d link show dev "$2" 2>/dev/null | grep -q wireguard; }
handshake_of() { inns n$1 wg show "$2" latest-handshakes | awk '{ print $2 }'; }
contains() { # contains FILE TEXT
    grep -q -- "$2" "$1" || { cat "$1"; return 1; }
}

# Nothing of braid's left in a node: no interface in its groups, no WireGuard device, no
# braid0, no VRF, no proto 98 route, no policy rule into braid's table.
nothing_left() {
    local i=$1
    [ -z "$(inns n$i ip link show group 2)" ] || { inns n$i ip link show group 2; return 1; }
    [ -z "$(inns n$i ip link show group 1)" ] || { inns n$i ip link show group 1; return 1; }
    [ -z "$(inns n$i ip link show type wireguard)" ] || { inns n$i ip link show type wireguard; return 1; }
    [ -z "$(inns n$i ip link show type vrf)" ] || { inns n$i ip link show type vrf; return 1; }
    [ -z "$(inns n$i ip route show table all proto 98)" ] || { inns n$i ip route show table all proto 98; return 1; }
    [ -z "$(inns n$i ip -6 route show table all proto 98)" ] || { inns n$i ip -6 route show table all proto 98; return 1; }
    ! inns n$i ip rule | grep -q "lookup 98" || { inns n$i ip rule; return 1; }
    ! inns n$i ip -6 rule | grep -q "lookup 98" || { inns n$i ip -6 rule; return 1; }
}

# count_is N NODE COMMAND...: the command, run in the node, succeeds and prints N lines.
count_is() {
    local n=$1 node=$2 out
    shift 2
    out=$(inns $node "$@") || return 1
    echo "$out"
    [ "$(echo "$out" | grep -c .)" = "$n" ]
}
# in_vrf_table NODE VRF: braid's routes (proto 98) to the peers' networks are in the table.
in_vrf_table() {
    local v6 v4
    v6=$(inns n$1 ip -6 route show vrf "$2" proto 98) || return 1
    v4=$(inns n$1 ip -4 route show vrf "$2" proto 98) || return 1
    echo "$v6"
    echo "$v4"
    echo "$v6" | grep -q "^2001:db8:5e:" && echo "$v4" | grep -q "^198\.18\."
}
# none_in_main NODE: no braid route in the main table, and the main table has no way into
# the overlay.
none_in_main() {
    local v6 v4 get
    v6=$(inns n$1 ip -6 route show table main proto 98) || return 1
    v4=$(inns n$1 ip -4 route show table main proto 98) || return 1
    [ -z "$v6$v4" ] || { echo "$v6$v4"; return 1; }
    get=$(inns n$1 ip -6 route get 2001:db8:5e:2::1 2>&1)
    echo "$get"
    ! echo "$get" | grep -q "dev wg"
}
status_says() { # status_says NODE TEXT
    inns n$1 braid status -c /cfg/n$1.json --json >/tmp/status.n$1 2>&1 && grep -q "$2" /tmp/status.n$1
}
reload_updates() { # reload_updates NODE TEXT
    inns n$1 braid reload -c /cfg/n$1.json >/tmp/reload.n$1 2>&1
    cat /tmp/reload.n$1
    grep -q "$2" /tmp/reload.n$1
}
keepalive_is() { # keepalive_is NODE DEV SECONDS
    local out
    out=$(inns n$1 wg show "$2" persistent-keepalive) || return 1
    echo "$out"
    [ "$(echo "$out" | awk '{ print $2 }')" = "$3" ]
}
same() { # same BEFORE AFTER
    echo "before: $1, after: $2"
    [ "$1" = "$2" ]
}
exited() { # exited PID...: none of the processes is alive
    local p
    for p in "$@"; do kill -0 "$p" 2>/dev/null && return 1; done
    return 0
}

up_fails() { # up_fails NODE TEXT: braid up fails and says TEXT
    ! up "$1" && grep -q "$2" /tmp/up.n$1
}

up() { # up NODE: braid up, output kept in /tmp/up.nNODE
    local s
    inns n$1 braid up -c /cfg/n$1.json >/tmp/up.n$1 2>&1
    s=$?
    cat /tmp/up.n$1
    return $s
}

# ----------------------------------------------------------------------------------------
mesh() { # mesh TAG VRF
    local tag=$1 vrf=$2 i j f before after
    underlay 1 2 3
    keys 1 2 3
    write_registry 1 2 3
    for i in 1 2 3; do write_config $i kernel "$vrf" 1; done
    for i in 1 2 3; do check "$tag: braid up on n$i" up $i; done
    for i in 1 2 3; do
        for j in 1 2 3; do
            [ $i = $j ] && continue
            for f in 4 6; do check "$tag: wg show on n$i's ip$f link to n$j agrees with the plan" wg_agrees $i $j $f; done
        done
    done
    check "$tag: every link has a handshake" wait_until 60 all_handshakes 1 2 3
    for i in 1 2 3; do
        for j in 1 2 3; do
            [ $i = $j ] && continue
            for f in 4 6; do check "$tag: ping n$i -> n$j over the ip$f link" ping_link $i $j $f; done
            check "$tag: ping n$i -> n$j's network (static routes)" wait_until 20 ping_overlay $i $j "$vrf"
        done
    done
    if [ -n "$vrf" ]; then
        for i in 1 2 3; do
            check "$tag: n$i's links and bridge are in VRF $vrf" count_is 5 n$i ip -o link show master "$vrf"
            check "$tag: n$i's braid routes are in the VRF's table" in_vrf_table $i "$vrf"
            check "$tag: n$i has no braid route in the main table" none_in_main $i
        done
    fi
    # Remove n3 from the registry: n1 and n2 lose their links to it and keep the others.
    before=""
    for f in 4 6; do before="$before $(index_of 1 "$(ifname 2 $f)"):$(handshake_of 1 "$(ifname 2 $f)")"; done
    write_registry 1 2
    check "$tag: braid up again on n1 after n3 left the registry" up 1
    check "$tag: n1 reports its links to n2 unchanged" contains /tmp/up.n1 "2 unchanged"
    check "$tag: braid up again on n2" up 2
    after=""
    for f in 4 6; do after="$after $(index_of 1 "$(ifname 2 $f)"):$(handshake_of 1 "$(ifname 2 $f)")"; done
    check "$tag: n1's links to n2 untouched (same ifindex and session)" same "$before" "$after"
    for f in 4 6; do
        check "$tag: n1's ip$f link to n3 removed" absent 1 "$(ifname 3 $f)"
        check "$tag: n2's ip$f link to n3 removed" absent 2 "$(ifname 3 $f)"
        check "$tag: ping n1 -> n2 over the ip$f link after the change" ping_link 1 2 $f
    done
    # Invalid input changes nothing: a registry that does not parse.
    before=""
    for f in 4 6; do before="$before $(index_of 1 "$(ifname 2 $f)"):$(handshake_of 1 "$(ifname 2 $f)")"; done
    cp /cfg/registry.json /cfg/registry.good
    echo '[{"public_key": "not a key"' >/cfg/registry.json
    check "$tag: braid up with an invalid registry fails naming it" up_fails 1 "registry.json"
    mv /cfg/registry.good /cfg/registry.json
    after=""
    for f in 4 6; do after="$after $(index_of 1 "$(ifname 2 $f)"):$(handshake_of 1 "$(ifname 2 $f)")"; done
    check "$tag: invalid input left n1's links as they were" same "$before" "$after"
    for i in 1 2 3; do
        check "$tag: braid down on n$i" inns n$i braid down -c /cfg/n$i.json
        check "$tag: nothing of braid's left on n$i" nothing_left $i
    done
    teardown
}

# babel_routes NODE: babeld installed routes to both peers' networks (in braid's table 98).
babel_routes() {
    local v6 v4
    v6=$(inns n$1 ip -6 route show table 98 proto babel) || return 1
    v4=$(inns n$1 ip -4 route show table 98 proto babel) || return 1
    echo "$v6"
    echo "$v4"
    [ "$(echo "$v6" | grep -c '^2001:db8:5e:')" -ge 2 ] && [ "$(echo "$v4" | grep -c '^198\.18\.')" -ge 2 ]
}
babel() {
    local tag=babel i j pids=""
    if [ ! -x /usr/sbin/babeld ]; then
        echo "VMTEST SKIP babel: babeld is not in the initramfs (install babeld on the host)"
        return
    fi
    underlay 1 2 3
    keys 1 2 3
    write_registry 1 2 3
    for i in 1 2 3; do
        write_config $i kernel "" 1 babel
        inns n$i braid run -c /cfg/n$i.json >/tmp/run.n$i 2>&1 &
        pids="$pids $!"
    done
    check "$tag: every link has a handshake" wait_until 60 all_handshakes 1 2 3
    for i in 1 2 3; do
        check "$tag: n$i learns both peers' networks" wait_until 60 babel_routes $i
    done
    for i in 1 2 3; do
        for j in 1 2 3; do
            [ $i = $j ] && continue
            check "$tag: ping n$i -> n$j's network" wait_until 20 ping_overlay $i $j ""
        done
    done
    # A kernel link deleted under the running daemon is made again (issue 17, defect 11).
    check "$tag: n1's ip4 link to n2 deleted by hand" inns n1 ip link del "$(ifname 2 4)"
    check "$tag: n1's deleted kernel link is made again" wait_until 20 is_wireguard 1 "$(ifname 2 4)"
    check "$tag: ping n1 -> n2 over the link made again" wait_until 20 ping_link 1 2 4
    for i in 1 2 3; do
        check "$tag: braid down on n$i (through its daemon)" inns n$i braid down -c /cfg/n$i.json
    done
    check "$tag: the daemons exited" wait_until 30 exited $pids
    kill $pids 2>/dev/null
    for i in 1 2 3; do check "$tag: nothing of braid's left on n$i" nothing_left $i; done
    teardown
}

mixed() {
    local tag=mixed pid1 pid2 before after f
    underlay 1 2
    keys 1 2
    write_registry 1 2
    write_config 1 auto "" 1
    write_config 2 userspace brdvrf 1
    inns n1 braid run -c /cfg/n1.json >/tmp/run.n1 2>&1 &
    pid1=$!
    inns n2 braid run -c /cfg/n2.json >/tmp/run.n2 2>&1 &
    pid2=$!
    check "$tag: n1 status: backend auto chose kernel" wait_until 60 status_says 1 '"backend": "kernel"'
    check "$tag: n2 status: backend userspace" wait_until 60 status_says 2 '"backend": "userspace"'
    check "$tag: n1's links are kernel WireGuard devices" count_is 2 n1 ip -o link show type wireguard
    check "$tag: n2's links are TUN devices" count_is 2 n2 ip -o link show type tun
    check "$tag: n2's TUN links and bridge are in VRF brdvrf" wait_until 20 count_is 3 n2 ip -o link show master brdvrf
    check "$tag: n2's braid routes are in the VRF's table" wait_until 20 in_vrf_table 2 brdvrf
    check "$tag: n2 has no braid route in the main table" none_in_main 2
    check "$tag: handshakes between kernel and userspace" wait_until 60 all_handshakes 1
    for f in 4 6; do
        check "$tag: ping kernel n1 -> userspace n2 over the ip$f link" ping_link 1 2 $f
        check "$tag: ping userspace n2 -> kernel n1 over the ip$f link" ping_link 2 1 $f
    done
    check "$tag: ping n1 -> n2's network" wait_until 20 ping_overlay 1 2 ""
    check "$tag: ping n2 -> n1's network (from its VRF)" wait_until 20 ping_overlay 2 1 brdvrf
    check "$tag: n1 status shows the link up" wait_until 10 status_says 1 '"state": "up"'
    check "$tag: n1 status counts the kernel links' packets" status_says 1 '"rx_packets": [1-9]'
    # A reload that changes the keepalive: the kernel link is updated in place.
    before=$(index_of 1 "$(ifname 2 4)")
    write_config 1 auto "" 3
    check "$tag: reload on n1 (keepalive 3) updates both links" reload_updates 1 "2 updated"
    after=$(index_of 1 "$(ifname 2 4)")
    check "$tag: n1's link updated in place (same ifindex)" same "$before" "$after"
    check "$tag: n1's link has keepalive 3" keepalive_is 1 "$(ifname 2 4)" 3
    check "$tag: braid down on n1 (through its daemon)" inns n1 braid down -c /cfg/n1.json
    check "$tag: braid down on n2 (through its daemon)" inns n2 braid down -c /cfg/n2.json
    check "$tag: both daemons exited" wait_until 30 exited $pid1 $pid2
    kill "$pid1" "$pid2" 2>/dev/null
    check "$tag: nothing of braid's left on n1" nothing_left 1
    check "$tag: nothing of braid's left on n2" nothing_left 2
    teardown
}

mkdir -p /cfg /run/braid
start=$(date +%s)
mesh mesh ""
mesh vrf brdvrf
babel
mixed
echo "VMTEST DONE pass=$ok fail=$bad seconds=$(($(date +%s) - start))"
