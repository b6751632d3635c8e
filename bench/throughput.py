#!/usr/bin/env python3
"""braid against the userspace WireGuard anchors, on one veth pair between two namespaces.

Implementations (all on the same veth pair of the lab `bnch`, namespaces brd-bnch-n1 and
brd-bnch-n2, one after the other; pick some with --only, comma-separated keys):

  braid                 the lab's `braid run` daemons (release build), link brd4x40004
  wireguard-go          wireguard-go 0.0.20250522 from ../shared/anchors/bin (TUN offloads,
                        UDP GSO/GRO), run as `wireguard-go -f IF`
  boringtun             boringtun-cli 0.7.1 from ../shared/anchors/bin, run as
                        `boringtun-cli -f -t 1 --disable-multi-queue --disable-drop-privileges IF`
                        (as root without sudo its privilege drop fails: getlogin() has no
                        login user, or setuid(0) still works; the process stays root like
                        the others)
  debian-wireguard-go   Debian's wireguard-go (package wireguard-go, 0.0.20220316:
                        no batching, no offloads), run as `wireguard-go -f IF`

Each anchor runs in its own private mount namespace with a tmpfs on /run/wireguard (as the
lab does for braid), so UAPI sockets never collide with other engineers' or land in the
host's /run/wireguard; `wg` reaches them with `nsenter -t PID -m -n`. Interface names are
distinct per implementation as well. Every anchor gets the link MTU of braid's lab link,
fe80::1 / fe80::2 on its tunnel and the underlay 198.18.0.1 / 198.18.0.2 (UDP 51821/51822).

For each: iperf3 from n1 to n2 over the tunnel (IPv6 link-local), one TCP stream and four
(SECONDS each); ping RTT average and p99 (500 pings at 5 ms, tunnel otherwise idle); and
the CPU seconds (user + system, all threads, from /proc/PID/stat) that the tunnel processes
of both ends used during each iperf3 run, divided by the Gbit iperf3 delivered: CPU s/Gbit.

The ChaCha20-Poly1305 floor of this machine: `openssl speed -evp chacha20-poly1305 -bytes
MTU` (encrypt) and the same with `-decrypt` give R_enc and R_dec, bytes of plaintext per
second on one core with one AEAD call per MTU-sized buffer, as WireGuard seals one packet per
call (openssl divides by its CPU user time, so a loaded machine skews it less than a wall
clock would). One Gbit through the tunnel is 1e9/8 bytes sealed once by the sender and
opened once by the receiver, so the least CPU both ends together can spend on it is

    floor [CPU s/Gbit] = (1e9 / 8) / R_enc + (1e9 / 8) / R_dec

It is compared with the measured CPU s/Gbit of iperf3 goodput. The tunnel also encrypts the
inner TCP/IP headers (72 of every 1420 bytes for IPv6 TCP with timestamps, about 5 %), which
the floor does not count: the comparison is slightly stricter than the true lower bound.

Printed: the table, the floor, and the ratios of issue 15 ("Speed: no regression, against the
honest peer"): braid / wireguard-go 0.0.20250522 on one and four streams (required >= 1.5,
target >= 2.0), braid RTT against boringtun's (required: no worse), braid CPU s/Gbit against
the floor (target <= 1.3x). With --json the whole result is written as JSON (to stdout with
`--json -`, the table then going to stderr; or to a file).

Run as root from the repository, after `cargo build --release` and `scripts/deps.sh`:
    python3 bench/throughput.py [--seconds 10] [--only braid,wireguard-go] [--json out.json]
Needs: iproute2, iperf3, ping, nsenter, wireguard-go, wireguard-tools (wg), openssl.
The namespaces brd-bnch-*, the daemons and the iperf3 servers are removed on success, on
error, on Ctrl-C and on SIGTERM (a SIGKILLed run leaves them for the next run, which removes
them first, or for `braid lab down --name bnch`).
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

LAB = "bnch"
NS = [f"brd-{LAB}-n1", f"brd-{LAB}-n2"]
UNDERLAY = ["198.18.0.1", "198.18.0.2"]  # the lab's addresses of n1 and n2 on their veth pair
ANCHOR_PORTS = [51821, 51822]
PINGS = 500
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANCHOR_ENV = {"LOG_LEVEL": "error", "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}
# `ip netns exec` gives the command its own mount namespace (the root made a slave, so
# nothing propagates back); this puts a private tmpfs on /run/wireguard in it.
PRIVATE_UAPI = 'mkdir -p /run/wireguard && mount -t tmpfs -o mode=0755 brd-bnch-uapi /run/wireguard && exec "$@"'

ORDER = ["braid", "wireguard-go", "boringtun", "debian-wireguard-go"]

out = sys.stdout  # the table; stderr when JSON goes to stdout


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def sh(*args, check=True, **kw):
    r = subprocess.run(args, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise BenchError(f"failed ({r.returncode}): {' '.join(args)}\n{r.stdout}{r.stderr}")
    return r


def netns(i, *args, **kw):
    return sh("ip", "netns", "exec", NS[i], *args, **kw)


def loadavg():
    return [float(x) for x in open("/proc/loadavg").read().split()[:3]]


def cpu_seconds(pids):
    """User + system CPU seconds of these processes (all their threads)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / tick


def alive(pid):
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


class Bench:
    """Owns everything the run creates; `close` removes it, whatever happened."""

    def __init__(self, braid, work, seconds):
        self.braid = braid
        self.work = work
        self.seconds = seconds
        self.lab_dir = os.path.join(work, "lab")
        self.procs = []  # Popen of the daemons and servers this run started
        self.lab_up = False

    # -- processes ---------------------------------------------------------------

    def spawn(self, i, argv, logname, env=None, private_uapi=False):
        """Starts argv in namespace i (own session: Ctrl-C reaches only this script)."""
        if private_uapi:
            argv = ["sh", "-c", PRIVATE_UAPI, "sh", *argv]
        logf = open(os.path.join(self.work, logname), "ab")
        p = subprocess.Popen(["ip", "netns", "exec", NS[i], *argv], stdin=subprocess.DEVNULL, stdout=logf,
                             stderr=subprocess.STDOUT, env=dict(os.environ, **(env or {})), start_new_session=True)
        logf.close()
        self.procs.append(p)
        return p

    def stop(self, p):
        """SIGTERM to one process this run started, SIGKILL after 5 s."""
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_pids(self, pids):
        """The same for processes the lab started for this run (not our children)."""
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + 10
        while any(alive(p) for p in pids) and time.time() < deadline:
            time.sleep(0.1)
        for pid in pids:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def close(self):
        for p in list(self.procs):
            try:
                self.stop(p)
            except Exception as e:  # keep cleaning up
                log(f"cleanup: stopping {p.pid}: {e}")
        if self.lab_up:
            # Removes brd-bnch-* and ends whatever still runs inside them (the lab's daemons).
            r = sh(self.braid, "lab", "down", "--name", LAB, "--dir", self.lab_dir, check=False)
            if r.returncode != 0:
                log(f"cleanup: braid lab down --name {LAB} failed: {r.stderr.strip()}")
            self.lab_up = False

    # -- the lab -----------------------------------------------------------------

    def lab(self, with_braid):
        """Two lab nodes on one veth pair; with braid's daemons and configs when asked."""
        self.lab_up = True  # from here on, a failure still removes the namespaces
        if with_braid:
            r = sh(self.braid, "lab", "up", "--links-only", "--nodes", "2", "--name", LAB, "--dir", self.lab_dir, "--seconds", "0", check=False)
            if r.returncode != 0:
                raise BenchError(f"braid lab up failed:\n{r.stdout}{r.stderr}")
        else:
            sh(self.braid, "lab", "up", "--bare", "--nodes", "2", "--name", LAB)

    def braid_link(self):
        """(n1's link to n2 on the ip4 transport, n2's link-local address), from the plans."""
        plans = [json.loads(sh(self.braid, "plan", "--json", "-c", f"{self.lab_dir}/n{i}/config.json").stdout) for i in (1, 2)]
        peer = plans[1]["node"]
        for link in plans[0]["links"]:
            if link["peer_public_key"] == peer["public_key"] and link["family"] == "ip4":
                return link, peer["link_local6"]
        raise BenchError("n1's plan has no ip4 link to n2")

    def braid_pids(self):
        pids = []
        for ns in NS:
            for pid in sh("ip", "netns", "pids", ns).stdout.split():
                try:
                    if open(f"/proc/{pid}/comm").read().strip() == "braid":
                        pids.append(int(pid))
                except OSError:
                    pass
        if len(pids) != 2:
            raise BenchError(f"expected one braid daemon per namespace, found PIDs {pids}")
        return pids

    # -- anchors -----------------------------------------------------------------

    def anchor_up(self, key, binary, args, ifname, mtu):
        """Both ends of one anchor implementation; returns its two Popen handles."""
        keys = [sh("wg", "genkey").stdout.strip() for _ in NS]
        pubs = [sh("wg", "pubkey", input=k).stdout.strip() for k in keys]
        procs = []
        for i in (0, 1):
            p = self.spawn(i, [binary, *args, ifname], f"{key}-n{i + 1}.log", env=ANCHOR_ENV, private_uapi=True)
            procs.append(p)
            sock = f"/proc/{p.pid}/root/run/wireguard/{ifname}.sock"
            deadline = time.time() + 10
            while not os.path.exists(sock):
                if p.poll() is not None or time.time() > deadline:
                    raise BenchError(f"{key} in {NS[i]} did not open its UAPI socket (exit {p.poll()}); "
                                     f"log: {self.work}/{key}-n{i + 1}.log:\n{open(os.path.join(self.work, f'{key}-n{i + 1}.log')).read()[-2000:]}")
                time.sleep(0.05)
            comm = open(f"/proc/{p.pid}/comm").read().strip()
            if comm != os.path.basename(binary)[:15]:  # the CPU figures are this PID's
                raise BenchError(f"PID {p.pid} is `{comm}`, not {binary}: the exec chain did not end in the daemon")
            peer = 1 - i
            sh("nsenter", "-t", str(p.pid), "-m", "-n", "wg", "set", ifname, "private-key", "/dev/stdin",
               "listen-port", str(ANCHOR_PORTS[i]), "peer", pubs[peer], "endpoint", f"{UNDERLAY[peer]}:{ANCHOR_PORTS[peer]}",
               "allowed-ips", "0.0.0.0/0,::/0", input=keys[i] + "\n")
            sh("ip", "-n", NS[i], "addr", "add", f"fe80::{i + 1}/64", "dev", ifname, "nodad")
            sh("ip", "-n", NS[i], "link", "set", ifname, "mtu", str(mtu), "up")
        return procs

    # -- measurements ------------------------------------------------------------

    def wait_path(self, target):
        deadline = time.time() + 20
        while time.time() < deadline:
            if netns(0, "ping", "-c", "1", "-W", "1", "-n", target, check=False).returncode == 0:
                return
        raise BenchError(f"no ping reply from {target} within 20 s (handshake?)")

    def iperf(self, target, streams, pids):
        server = self.spawn(1, ["iperf3", "-s"], "iperf3-server.log")
        try:
            deadline = time.time() + 10
            while True:
                before = cpu_seconds(pids)
                r = netns(0, "iperf3", "-c", target, "-t", str(self.seconds), "-P", str(streams), "-J", check=False)
                used = cpu_seconds(pids) - before
                try:
                    report = json.loads(r.stdout)
                except json.JSONDecodeError:
                    raise BenchError(f"iperf3 printed no JSON: {r.stdout[-500:]}{r.stderr[-500:]}")
                if "unable to connect" in report.get("error", "") and time.time() < deadline:
                    time.sleep(0.2)
                    continue
                if "error" in report:
                    raise BenchError(f"iperf3 -P {streams} to {target}: {report['error']}")
                received = report["end"]["sum_received"]
                gbit = received["bytes"] * 8 / 1e9
                return {"gbps": received["bits_per_second"] / 1e9, "gbit": gbit, "cpu_s": used, "cpu_s_per_gbit": used / gbit,
                        "retransmits": report["end"].get("sum_sent", {}).get("retransmits")}
        finally:
            self.stop(server)

    def ping(self, target):
        r = netns(0, "ping", "-i", "0.005", "-c", str(PINGS), "-n", target, check=False)
        times = sorted(float(t) for t in re.findall(r"time=([0-9.]+)", r.stdout))
        if not times:
            raise BenchError(f"ping {target}: no replies\n{r.stdout[-500:]}{r.stderr}")
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        return sum(times) / len(times), p99, PINGS - len(times)

    def measure(self, key, label, target, pids):
        load = loadavg()
        self.wait_path(target)
        log(f"{label}: iperf3, 1 stream, {self.seconds} s")
        one = self.iperf(target, 1, pids)
        log(f"{label}: iperf3, 4 streams, {self.seconds} s")
        four = self.iperf(target, 4, pids)
        log(f"{label}: {PINGS} pings")
        avg, p99, lost = self.ping(target)
        for pid in pids:
            if not alive(pid):
                raise BenchError(f"{label}: tunnel process {pid} died during the measurement")
        r = {"impl": key, "label": label, "target": target, "pids": pids, "loadavg_before": load,
             "one_stream": one, "four_streams": four, "rtt_avg_ms": avg, "rtt_p99_ms": p99, "ping_lost": lost}
        log(f"{label}: {one['gbps']:.2f} / {four['gbps']:.2f} Gbit/s, {one['cpu_s_per_gbit']:.2f} / {four['cpu_s_per_gbit']:.2f} CPU s/Gbit, RTT {avg:.3f} / {p99:.3f} ms")
        return r


def chacha_floor(mtu, seconds):
    """The ChaCha20-Poly1305 floor, see the module docstring."""
    rates = {}
    for direction, extra in (("encrypt", []), ("decrypt", ["-decrypt"])):
        argv = ["openssl", "speed", "-mr", "-seconds", str(seconds), "-bytes", str(mtu), *extra, "-evp", "chacha20-poly1305"]
        r = sh(*argv, cwd=tempfile.gettempdir())
        m = re.search(r"^\+F:\d+:[^:]+:([0-9.]+)", r.stdout, re.M)
        if not m:
            raise BenchError(f"no +F line in `{' '.join(argv)}`:\n{r.stdout}{r.stderr}")
        rates[direction] = float(m.group(1))
    per_gbit = {d: 1e9 / 8 / rate for d, rate in rates.items()}
    return {"command": f"openssl speed -evp chacha20-poly1305 -bytes {mtu} -seconds {seconds} [-decrypt]", "bytes": mtu,
            "encrypt_bytes_per_s": rates["encrypt"], "decrypt_bytes_per_s": rates["decrypt"],
            "encrypt_s_per_gbit": per_gbit["encrypt"], "decrypt_s_per_gbit": per_gbit["decrypt"],
            "s_per_gbit": per_gbit["encrypt"] + per_gbit["decrypt"]}


def ratios(results, floor):
    by = {r["impl"]: r for r in results}
    b, w, bt = by.get("braid"), by.get("wireguard-go"), by.get("boringtun")
    q = {}
    if b and w:
        q["braid_over_wireguard_go_one_stream"] = b["one_stream"]["gbps"] / w["one_stream"]["gbps"]
        q["braid_over_wireguard_go_four_streams"] = b["four_streams"]["gbps"] / w["four_streams"]["gbps"]
    if b and bt:
        q["braid_rtt_avg_over_boringtun"] = b["rtt_avg_ms"] / bt["rtt_avg_ms"]
        q["braid_rtt_p99_over_boringtun"] = b["rtt_p99_ms"] / bt["rtt_p99_ms"]
    if b and floor:
        q["braid_cpu_over_floor_one_stream"] = b["one_stream"]["cpu_s_per_gbit"] / floor["s_per_gbit"]
        q["braid_cpu_over_floor_four_streams"] = b["four_streams"]["cpu_s_per_gbit"] / floor["s_per_gbit"]
    return q


def verdict(value, required=None, target=None, lower_is_better=False):
    def ok(bound):
        return value <= bound if lower_is_better else value >= bound
    parts = []
    if required is not None:
        parts.append(f"required {'<=' if lower_is_better else '>='} {required}: {'met' if ok(required) else 'NOT MET'}")
    if target is not None:
        parts.append(f"target {'<=' if lower_is_better else '>='} {target}: {'met' if ok(target) else 'not met'}")
    return "; ".join(parts)


def print_report(doc):
    p = lambda s="": print(s, file=out)
    p(f"\n{doc['date']}  {doc['machine']['nproc']} CPUs, load average {doc['machine']['loadavg_start']} at start, "
      f"{doc['machine']['loadavg_end']} at end; link MTU {doc['mtu']}; iperf3 {doc['seconds']} s per run")
    p(f"{'':34} {'1 stream':>9} {'4 streams':>9} {'CPU s/Gbit':>11} {'CPU s/Gbit':>11} {'RTT avg':>8} {'RTT p99':>8} {'lost':>5} {'load':>5}")
    p(f"{'':34} {'Gbit/s':>9} {'Gbit/s':>9} {'(1 stream)':>11} {'(4 streams)':>11} {'ms':>8} {'ms':>8} {'':>5} {'':>5}")
    for r in doc["results"]:
        p(f"{r['label']:34} {r['one_stream']['gbps']:>9.2f} {r['four_streams']['gbps']:>9.2f} {r['one_stream']['cpu_s_per_gbit']:>11.3f} "
          f"{r['four_streams']['cpu_s_per_gbit']:>11.3f} {r['rtt_avg_ms']:>8.3f} {r['rtt_p99_ms']:>8.3f} {r['ping_lost']:>5} {r['loadavg_before'][0]:>5.2f}")
    f = doc["floor"]
    if f:
        p(f"{'ChaCha20-Poly1305 floor':34} {'':>9} {'':>9} {f['s_per_gbit']:>11.3f} {f['s_per_gbit']:>11.3f}"
          f"   (openssl at {f['bytes']} B: encrypt {f['encrypt_bytes_per_s'] * 8 / 1e9:.1f} Gbit/s, decrypt {f['decrypt_bytes_per_s'] * 8 / 1e9:.1f} Gbit/s per core)")
    q = doc["ratios"]
    p()
    if "braid_over_wireguard_go_one_stream" in q:
        for n, k in (("one stream", "braid_over_wireguard_go_one_stream"), ("four streams", "braid_over_wireguard_go_four_streams")):
            p(f"braid / wireguard-go 0.0.20250522, {n}: {q[k]:.2f}x  ({verdict(q[k], 1.5, 2.0)})")
    if "braid_rtt_avg_over_boringtun" in q:
        p(f"braid RTT / boringtun RTT: average {q['braid_rtt_avg_over_boringtun']:.2f}x ({verdict(q['braid_rtt_avg_over_boringtun'], 1.0, lower_is_better=True)}), "
          f"p99 {q['braid_rtt_p99_over_boringtun']:.2f}x")
    if "braid_cpu_over_floor_one_stream" in q:
        for n, k in (("one stream", "braid_cpu_over_floor_one_stream"), ("four streams", "braid_cpu_over_floor_four_streams")):
            p(f"braid CPU s/Gbit / ChaCha20-Poly1305 floor, {n}: {q[k]:.2f}x  ({verdict(q[k], target=1.3, lower_is_better=True)})")


def main():
    global out
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10, help="length of each iperf3 run (default 10)")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(ORDER)} (default: all)")
    ap.add_argument("--braid", default=os.path.join(REPO, "target/release/braid"), help="braid binary (default target/release/braid)")
    ap.add_argument("--anchors", default=os.path.join(REPO, "..", "shared", "anchors", "bin"), help="directory of the anchor binaries (default ../shared/anchors/bin)")
    ap.add_argument("--debian-wireguard-go", default="/usr/bin/wireguard-go", help="Debian's wireguard-go (default /usr/bin/wireguard-go)")
    ap.add_argument("--openssl-seconds", type=int, default=3, help="length of each openssl speed run (default 3)")
    ap.add_argument("--json", nargs="?", const="-", metavar="FILE", help="write the results as JSON to FILE, or to stdout (table to stderr) without FILE or with -")
    args = ap.parse_args()

    only = ORDER if not args.only else [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = [k for k in only if k not in ORDER]
    if unknown or not only:
        sys.exit(f"--only: unknown implementation {', '.join(unknown) or '(none given)'}; use a comma list of {', '.join(ORDER)}")
    only = [k for k in ORDER if k in only]
    if args.json == "-":
        out = sys.stderr
    if os.geteuid() != 0:
        sys.exit("run as root (network namespaces)")
    braid = os.path.abspath(args.braid)
    anchors = os.path.abspath(args.anchors)
    impls = {
        "wireguard-go": ("wireguard-go 0.0.20250522", os.path.join(anchors, "wireguard-go-0.0.20250522"), ["-f"], "bb-wggo"),
        "boringtun": ("boringtun 0.7.1 (-t 1)", os.path.join(anchors, "boringtun-cli-0.7.1"),
                      ["-f", "-t", "1", "--disable-multi-queue", "--disable-drop-privileges"], "bb-btun"),
        "debian-wireguard-go": ("wireguard-go (Debian)", args.debian_wireguard_go, ["-f"], "bb-debgo"),
    }
    needed = [braid] + [impls[k][1] for k in only if k in impls]
    missing = [b for b in needed if not os.access(b, os.X_OK)]
    missing += [t for t in ("ip", "iperf3", "ping", "nsenter", "wg", "openssl") if not shutil.which(t)]
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (run `cargo build --release` and `scripts/deps.sh`; anchors: --anchors)")
    if "debian-wireguard-go" in only and args.debian_wireguard_go == "/usr/bin/wireguard-go":
        v = sh("dpkg-query", "-W", "-f=${Version}", "wireguard-go", check=False).stdout.strip()
        if v:
            impls["debian-wireguard-go"] = (f"wireguard-go {v.split('-')[0]} (Debian)", *impls["debian-wireguard-go"][1:])

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    work = tempfile.mkdtemp(prefix="braid-bench-")
    bench = Bench(braid, work, args.seconds)
    doc = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "command": " ".join(sys.argv),
           "seconds": args.seconds,
           "machine": {"nproc": os.cpu_count(), "kernel": os.uname().release, "loadavg_start": loadavg()},
           "results": []}
    status = 0
    try:
        log(f"lab {LAB}: namespaces {NS[0]}, {NS[1]}; logs in {work}")
        bench.lab(with_braid="braid" in only)
        if "braid" in only:
            link, ll = bench.braid_link()
            mtu = link["mtu"]
        else:
            mtu = 1420  # the lab's default link MTU (crates/lab/src/configs.rs)
        doc["mtu"] = mtu
        log(f"ChaCha20-Poly1305 floor: openssl speed at {mtu} bytes")
        doc["floor"] = chacha_floor(mtu, args.openssl_seconds)
        for key in only:
            if key == "braid":
                pids = bench.braid_pids()
                doc["results"].append(bench.measure("braid", "braid", f"{ll}%{link['name']}", pids))
                bench.stop_pids(pids)
                continue
            label, binary, flags, ifname = impls[key]
            log(f"{label}: starting `{os.path.basename(binary)} {' '.join(flags)} {ifname}` in both namespaces")
            procs = bench.anchor_up(key, binary, flags, ifname, mtu)
            doc["results"].append(bench.measure(key, label, f"fe80::2%{ifname}", [p.pid for p in procs]))
            for p in procs:
                bench.stop(p)
        doc["machine"]["loadavg_end"] = loadavg()
        doc["ratios"] = ratios(doc["results"], doc["floor"])
    except BenchError as e:
        log(f"error: {e}")
        status = 1
    except KeyboardInterrupt as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}); cleaning up")
        status = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.close()
        log(f"removed the namespaces {NS[0]}, {NS[1]} and every process this run started")
    if status:
        log(f"logs kept in {work}")
        sys.exit(status)
    shutil.rmtree(work, ignore_errors=True)
    print_report(doc)
    if args.json == "-":
        json.dump(doc, sys.stdout, indent=2)
        print()
    elif args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)


if __name__ == "__main__":
    main()
