#!/usr/bin/env python3
"""Multi-WAN bonding in the lab (issue 5, section 6): a router n1 with two uplinks bonded to a
server n2 with one, each figure against the same setup with one path.

  (a) equal paths, 2 x 200 Mbit/s (tbf), ONE TCP stream, scheduler weighted: >= 90% of 400
  (b) unequal 300 + 100 Mbit/s, one stream, weighted:                        >= 85% of 400
  (x) as b with earliest-arrival, braid's default scheduler (issue 16):      >= 85% of 400
  (c) flow scheduler, 8 TCP streams over 2 x 200 Mbit/s:                      >= 90% of 400
  (d) failover: pings every 10 ms alongside a stream; one path cut both ways mid-stream:
      longest gap between answered pings <= 300 ms and the stream goes on (also shown: how
      long pings kept being lost after the cut, the outage of a per-packet scheduler's
      share on the dead path, and when the router stopped sending data on it, from the hub's
      veth counters sampled every 20 ms); after the restore the path carries data again
      (more than probes: > 16 packets per 200 ms at the hub) within 1 s. Run with the
      flow scheduler (the path carrying the pings is cut) and with weighted.
  (e) redundant, 5% random loss each way on each path: delivered loss <= 0.5% (UDP iperf3,
      one way; round-trip ping loss shown too: it is about twice the one-way figure)
  (f) CPU seconds (both daemons) per GB moved, bonded vs one path, from (a)
Realistic uplinks (issue 16, section 3), the lab's named profiles (docs/lab.md) on n1's two
uplinks, downloads n2 -> n1 (iperf3 -R, the profiles' down direction), braid's default
scheduler unless said; ceiling = the sum of what each profiled path carries alone:
  (p) DSL + LTE, one stream:                         >= 80% of the ceiling, >= the best alone
  (g) fibre + GEO, one stream, pings beside it:      >= the fibre alone, ping RTT within 10 ms
  (q) DSL + LTE, 8 streams, flow scheduler:          >= 90% of the ceiling
  (r) failover as (d) on DSL + LTE, earliest-arrival (uploads; the LTE path is cut)
  (v) voice: 50 packets/s UDP, redundant, DSL + LTE: jitter <= the better path's + 5 ms

The one-path setup is the same lab with `--wans 1`: the router's only uplink wan0 shaped like
the bonded run's fastest path (200, 300 Mbit/s) or equally lossy. Every run builds a fresh lab
(`braid lab up --nodes 2 --wans 2,1 --scheduler S`), shapes it with `braid lab wan`, measures
over the ip4 link n1 -> n2 (n2's link-local fe80::2), and removes it.

Run as root from the repository, with a release build:
    cargo build --release -p braid && python3 bench/bond.py [--seconds 10] [--json out.json]
Also (w) a and b with configured weights (1:1, 3:1) instead of measured capacity, to tell the
scheduler's estimator from the data plane. Options: --only a,b,... runs some cases; --braid PATH. Needs iproute2, tc, nft, iperf3, ping.
Everything happens in the namespaces brd-bond-n1, brd-bond-n2 and brd-bond-hub, removed at
the end, also on failure or Ctrl-C.
"""

import argparse, json, os, re, signal, subprocess, sys, tempfile, threading, time

LAB = "bond"
NS = {1: f"brd-{LAB}-n1", 2: f"brd-{LAB}-n2"}
PEER_LL = "fe80::2"  # n2's link-local address on every link (address plan index 2)
BRAID = "target/release/braid"
WORK = None
STARTED = []  # Popen objects this script started, ended by PID at cleanup


def sh(*args, check=True, **kw):
    r = subprocess.run(args, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"failed: {' '.join(args)}\n{r.stdout}{r.stderr}")
    return r


def netns(i, *args, **kw):
    return sh("ip", "netns", "exec", NS[i], *args, **kw)


def spawn(i, *args):
    p = subprocess.Popen(["ip", "netns", "exec", NS[i], *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    STARTED.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(3)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            pass
    return total / tick


def daemon_pids():
    pids = []
    for ns in NS.values():
        for pid in sh("ip", "netns", "pids", ns).stdout.split():
            try:
                if open(f"/proc/{pid}/comm").read().strip() == "braid":
                    pids.append(int(pid))
            except OSError:
                pass
    return pids


def status(i):
    r = sh(BRAID, "status", "--json", "-c", f"{WORK}/n{i}/config.json")
    return json.loads(r.stdout)


def ip4_link(i):
    for link in status(i)["links"]:
        if link["name"].startswith("brd4x"):
            return link
    raise RuntimeError(f"n{i} has no ip4 link")


def paths(i):
    bond = ip4_link(i).get("bond") or {}
    return bond.get("paths", [])


class Lab:
    """`braid lab up` with uplinks, daemons running; `braid lab down` on exit."""

    def __init__(self, wans, scheduler=None, weights=None):
        self.wans, self.scheduler, self.weights = wans, scheduler, weights

    def __enter__(self):
        args = [BRAID, "lab", "up", "--links-only", "--nodes", "2", "--wans", self.wans, "--name", LAB, "--dir", WORK, "--seconds", "0"]
        if self.scheduler:
            args += ["--scheduler", self.scheduler]
        if self.weights:
            # Configured weights: the lab writes the configs, the weights go into the
            # router's paths, then the daemons start here.
            sh(*args, "--plan-only")
            path = f"{WORK}/n1/config.json"
            config = json.load(open(path))
            for t in config["transport"]:
                t["paths"] = [{"interface": f"wan{k}", "weight": w} for k, w in enumerate(self.weights)]
            json.dump(config, open(path, "w"), indent=2)
            for i in (1, 2):
                p = subprocess.Popen(["ip", "netns", "exec", NS[i], BRAID, "run", "-c", f"{WORK}/n{i}/config.json"],
                                     stdout=subprocess.DEVNULL, stderr=open(f"{WORK}/n{i}/braid.log", "a"))
                STARTED.append(p)
            deadline = time.time() + 30
            while True:
                try:
                    if all(ip4_link(i)["state"] == "up" for i in (1, 2)):
                        break
                except (RuntimeError, ValueError, KeyError):
                    pass
                if time.time() > deadline:
                    raise RuntimeError("links with configured weights did not come up in 30 s")
                time.sleep(0.2)
        else:
            sh(*args)
        self.link = ip4_link(1)["name"]
        self.target = f"{PEER_LL}%{self.link}"
        return self

    def wan(self, k, *flags):
        sh(BRAID, "lab", "wan", "--name", LAB, "--node", "1", "--wan", str(k), *flags)

    def settle(self, seconds=2.0):
        """Lets probes measure the shaped paths (and the far side learn them)."""
        time.sleep(seconds)

    def __exit__(self, *exc):
        for p in STARTED:
            stop(p)
        STARTED.clear()
        sh(BRAID, "lab", "down", "--name", LAB, "--dir", WORK, check=False)


def iperf_server():
    p = spawn(2, "iperf3", "-s")
    time.sleep(0.3)
    return p


def iperf(lab, seconds, streams=1, extra=()):
    """iperf3 from n1 to n2 over the ip4 link; returns (report, CPU seconds of both daemons)."""
    server = iperf_server()
    pids = daemon_pids()
    try:
        for _ in range(30):
            before = cpu_seconds(pids)
            r = netns(1, "iperf3", "-c", lab.target, "-t", str(seconds), "-P", str(streams), "-J", *extra, check=False)
            report = json.loads(r.stdout or "{}")
            if "unable to connect" in report.get("error", ""):
                time.sleep(0.3)
                continue
            if "error" in report:
                raise RuntimeError(f"iperf3: {report['error']}")
            return report, cpu_seconds(pids) - before
        raise RuntimeError("iperf3 server never listened")
    finally:
        stop(server)


def tcp_mbps(report):
    return report["end"]["sum_received"]["bits_per_second"] / 1e6


def tcp_bytes(report):
    return report["end"]["sum_received"]["bytes"]


def path_bytes(before, after):
    """Share of tx bytes per path id between two readings."""
    b = {p["id"]: p["tx_bytes"] for p in before}
    return {p["id"]: p["tx_bytes"] - b.get(p["id"], 0) for p in after}


def throughput_case(name, rates, scheduler, streams, target_frac, seconds, weights=None):
    """Bonded over `rates` vs one path at max(rates)."""
    row = {"case": name, "target": f">= {target_frac:.0%} of the ceiling"}
    with Lab("2,1", scheduler, weights) as lab:
        for k, r in enumerate(rates):
            lab.wan(k, "--rate", str(r))
        lab.settle()
        before = paths(1)
        report, cpu = iperf(lab, seconds, streams)
        split = path_bytes(before, paths(1))
        row["bonded_mbps"] = tcp_mbps(report)
        row["bonded_cpu_s_per_gb"] = cpu / (tcp_bytes(report) / 1e9)
        total = sum(split.values()) or 1
        row["path_share"] = {f"wan{k}": round(v / total, 3) for k, v in sorted(split.items())}
        row["retransmits"] = report["end"].get("sum_sent", {}).get("retransmits")
    with Lab("1") as lab:
        lab.wan(0, "--rate", str(max(rates)))
        lab.settle(1.0)
        report, cpu = iperf(lab, seconds, streams)
        row["single_mbps"] = tcp_mbps(report)
        row["single_cpu_s_per_gb"] = cpu / (tcp_bytes(report) / 1e9)
    # What one path actually carries of its tbf rate (tunnel and TCP overhead, the tbf
    # queue), applied to the sum: the most the bond could reach.
    ceiling = row["single_mbps"] / max(rates) * sum(rates)
    row["of_ceiling"] = round(row["bonded_mbps"] / ceiling, 3)
    row["result"] = (f"{row['bonded_mbps']:.0f} vs {row['single_mbps']:.0f} Mbit/s (one path at {max(rates)}); "
                     f"{row['of_ceiling']:.0%} of {ceiling:.0f}")
    # Issue 16's measure: the share of the ceiling (the line rates less what the tunnel and
    # TCP cost on this machine), so a run on a busy machine is judged on the scheduler.
    row["pass"] = row["of_ceiling"] >= target_frac
    return row


def parse_ping(text):
    """[(receive time, seq)] from `ping -D` output."""
    out = []
    for m in re.finditer(r"^\[([0-9.]+)\].*icmp_seq=(\d+)", text, re.M):
        out.append((float(m.group(1)), int(m.group(2))))
    return out


def pinged_path(lab):
    """The path id the ping flow takes (flow scheduler): ping alone for a second."""
    before = {p["id"]: p["tx_packets"] for p in paths(1)}
    netns(1, "ping", "-q", "-i", "0.01", "-c", "100", lab.target, check=False)
    after = {p["id"]: p["tx_packets"] for p in paths(1)}
    return max(after, key=lambda k: after[k] - before.get(k, 0))


class HubCounter(threading.Thread):
    """Samples, every 20 ms, the packets the hub receives from n1 over one uplink (its veth
    n1w<k> counts what arrives before the hub's cut rules drop it)."""

    def __init__(self, k):
        super().__init__(daemon=True)
        self.dev, self.samples, self.done = f"n1w{k}", [], threading.Event()

    def run(self):
        while not self.done.is_set():
            r = sh("ip", "-n", f"brd-{LAB}-hub", "-s", "-j", "link", "show", "dev", self.dev, check=False)
            try:
                self.samples.append((time.time(), json.loads(r.stdout)[0]["stats64"]["rx"]["packets"]))
            except (ValueError, LookupError):
                pass
            time.sleep(0.02)

    def first_window(self, after, busy):
        """Start of the first 200 ms window after `after` with more (busy) or at most
        (not busy) 16 packets: an idle path carries about 8 (probe requests and replies,
        both every 50 ms), the 10 ms pings 20 more, a stream hundreds."""
        pts = [(t, n) for t, n in self.samples if t >= after]
        for i, (t, n) in enumerate(pts):
            later = [(t2, n2) for t2, n2 in pts[i:] if t2 - t >= 0.2]
            if not later:
                return None
            t2, n2 = later[0]
            count = (n2 - n) / (t2 - t) * 0.2
            if (count > 16) == busy:
                # Quiet: data had stopped by the window's start. Busy: in use by its end.
                return t2 if busy else t
        return None


def failover_case(scheduler, seconds, profiles=None):
    shaped = "+".join(profiles) if profiles else "2 x 200"
    row = {"case": f"{'r' if profiles else 'd'}: failover ({scheduler}, {shaped})", "target": "gap <= 300 ms, stream continues, used again <= 1 s"}
    run = max(seconds, 12)
    with Lab("2,1", scheduler) as lab:
        for k in (0, 1):
            if profiles:
                lab.wan(k, "--profile", profiles[k])
            else:
                lab.wan(k, "--rate", "200")
        lab.settle()
        cut = pinged_path(lab) if scheduler == "flow" else 1
        counter = HubCounter(cut)
        counter.start()
        server = iperf_server()
        stream = spawn(1, "iperf3", "-c", lab.target, "-t", str(run), "-J", "-i", "0.5")
        pinger = spawn(1, "ping", "-D", "-i", "0.01", "-w", str(run), lab.target)
        time.sleep(3)
        t_cut = time.time()
        lab.wan(cut, "--cut")
        time.sleep(3)
        t_restore = time.time()
        lab.wan(cut, "--restore")
        time.sleep(3)
        counter.done.set()
        out, _ = stream.communicate(timeout=run + 15)
        ping_out, _ = pinger.communicate(timeout=run + 15)
        stop(server)
        counter.join()
    # Out of use: the router stopped sending data on the cut path (only probes arrive);
    # used again: data arrives on it after the restore.
    out_at = counter.first_window(t_cut, busy=False)
    used_at = counter.first_window(t_restore, busy=True)
    replies = parse_ping(ping_out)
    window = [t for t, _ in replies if t_cut - 1 <= t <= t_restore]
    gaps = [b - a for a, b in zip(window, window[1:])]
    row["longest_gap_ms"] = round(max(gaps) * 1000, 1) if gaps else None
    seqs = {s for _, s in replies}
    last_seq = max(seqs) if seqs else 0
    row["pings_lost"] = last_seq + 1 - len(seqs)
    # When were the lost pings sent? Between the answered ones around them (10 ms apart).
    times = dict((s, t) for t, s in replies)
    lost_at = []
    for s in range(last_seq + 1):
        if s not in times:
            prev = max((x for x in times if x < s), default=None)
            if prev is not None:
                lost_at.append(times[prev] + (s - prev) * 0.01)
    lost_after_cut = [t for t in lost_at if t_cut - 0.05 <= t <= t_cut + 2]
    # The span of pings lost after the cut: with per-packet schedulers only those sent on
    # the dead path are lost, so the gap between answers understates the outage.
    row["loss_window_ms"] = round((max(lost_after_cut) - min(lost_after_cut)) * 1000 + 10) if lost_after_cut else 0
    row["path_cut"] = f"wan{cut}"
    row["out_of_use_after_ms"] = round((out_at - t_cut) * 1000) if out_at else None
    row["used_again_after_ms"] = round((used_at - t_restore) * 1000) if used_at else None
    report = json.loads(out or "{}")
    intervals = report.get("intervals", [])
    after_cut = [iv["sum"]["bits_per_second"] / 1e6 for iv in intervals if iv["sum"]["start"] >= 3.5]
    row["stream_mbps_min_after_cut"] = round(min(after_cut), 1) if after_cut else None
    row["stream_mbps"] = round(tcp_mbps(report), 1) if "end" in report and report["end"].get("sum_received") else None
    continues = bool(after_cut) and min(after_cut) > 0 and "error" not in report
    row["result"] = (f"gap {row['longest_gap_ms']} ms, losses for {row['loss_window_ms']} ms, out of use after {row['out_of_use_after_ms']} ms, "
                     f"used again after {row['used_again_after_ms']} ms, stream min {row['stream_mbps_min_after_cut']} Mbit/s")
    row["pass"] = (row["longest_gap_ms"] is not None and row["longest_gap_ms"] <= 300 and continues
                   and row["used_again_after_ms"] is not None and row["used_again_after_ms"] <= 1000)
    return row


def udp_run(lab, seconds, rate, length, what):
    """One UDP iperf3 run n1 -> n2; returns its `end.sum` (jitter, lost and sent packets).
    iperf3's control connection (TCP over the same, maybe lossy, link) now and then gives
    up; that run is repeated, up to 3 times."""
    last_error = None
    for _ in range(3):
        server = iperf_server()
        try:
            for _ in range(30):
                r = netns(1, "iperf3", "-c", lab.target, "-u", "-b", rate, "-l", str(length), "-t", str(seconds), "-J", check=False)
                report = json.loads(r.stdout or "{}")
                if "unable to connect" in report.get("error", ""):
                    time.sleep(0.3)
                    continue
                break
        finally:
            stop(server)
        if "error" in report:
            last_error = report["error"]
            continue
        return report["end"]["sum"]
    raise RuntimeError(f"iperf3 ({what}, 3 tries): {last_error}")


def udp_loss(lab, seconds):
    """One-way loss of a 20 Mbit/s UDP iperf3 run, in percent."""
    s = udp_run(lab, seconds, "20M", 1200, "UDP")
    return 100.0 * s["lost_packets"] / max(1, s["packets"])


def ping_loss(lab, count=2000):
    r = netns(1, "ping", "-q", "-i", "0.01", "-c", str(count), "-W", "1", lab.target, check=False)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", r.stdout)
    sent, got = int(m.group(1)), int(m.group(2))
    return 100.0 * (sent - got) / sent


def redundant_case(seconds):
    row = {"case": "e: redundant, 5% loss per path", "target": "delivered loss <= 0.5% (one way)"}
    with Lab("2,1", "redundant") as lab:
        for k in (0, 1):
            lab.wan(k, "--loss", "5")
        lab.settle(3.0)
        row["bonded_udp_loss_pct"] = round(udp_loss(lab, seconds), 3)
        row["bonded_ping_loss_pct"] = round(ping_loss(lab), 3)
        bond = ip4_link(2).get("bond") or {}
        row["duplicates_discarded"] = (bond.get("reorder") or {}).get("duplicates")
    with Lab("1") as lab:
        lab.wan(0, "--loss", "5")
        lab.settle(1.0)
        row["single_udp_loss_pct"] = round(udp_loss(lab, seconds), 3)
        row["single_ping_loss_pct"] = round(ping_loss(lab), 3)
    row["result"] = (f"UDP {row['bonded_udp_loss_pct']}% vs {row['single_udp_loss_pct']}% (one path); "
                     f"ping {row['bonded_ping_loss_pct']}% vs {row['single_ping_loss_pct']}%")
    row["pass"] = row["bonded_udp_loss_pct"] <= 0.5
    return row


# --- Realistic uplinks (issue 16, section 3): the lab's named profiles (docs/lab.md) ---------

def path_rx_bytes(before, after):
    """Received bytes per path id between two readings (downloads: the far side schedules)."""
    b = {p["id"]: p["rx_bytes"] for p in before}
    return {p["id"]: p["rx_bytes"] - b.get(p["id"], 0) for p in after}


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else None


def rtts(text):
    return [float(m) for m in re.findall(r"time=([0-9.]+) ms", text)]


def profile_transfer(lab, seconds, streams, ping):
    """A download n2 -> n1 (iperf3 -R) with, if asked, pings every 100 ms beside it; returns
    (Mbit/s, retransmits, median ping RTT ms or None, split of received bytes per path)."""
    before = paths(1)
    pinger = spawn(1, "ping", "-i", "0.1", "-w", str(seconds), lab.target) if ping else None
    report, _ = iperf(lab, seconds, streams, ("-R",))
    rtt = None
    if pinger:
        out, _ = pinger.communicate(timeout=seconds + 15)
        rtt = median(rtts(out))
    split = path_rx_bytes(before, paths(1)) if before else {}
    retrans = report["end"].get("sum_sent", {}).get("retransmits")
    return tcp_mbps(report), retrans, rtt, split


def profile_case(name, profiles, scheduler, streams, target_frac, seconds, ping=False):
    """Bonded over two profiled uplinks vs each uplink alone, downloads (n2 -> n1: the
    profiles' down direction). Ceiling: the sum of what each path carries alone. Floor: the
    bond carries at least the best path alone (within 3 %)."""
    row = {"case": name, "target": f">= {target_frac:.0%} of ceiling, >= best alone - 3%"}
    with Lab("2,1", scheduler) as lab:
        for k, prof in enumerate(profiles):
            lab.wan(k, "--profile", prof)
        lab.settle(3.0)
        mbps, retrans, rtt, split = profile_transfer(lab, seconds, streams, ping)
        total = sum(split.values()) or 1
        row["bonded_mbps"] = round(mbps, 1)
        row["retransmits"] = retrans
        row["path_share"] = {f"wan{k}={profiles[k]}": round(v / total, 3) for k, v in sorted(split.items()) if k < len(profiles)}
        if ping:
            row["bonded_ping_rtt_ms"] = rtt
    singles = {}
    for prof in dict.fromkeys(profiles):
        with Lab("1") as lab:
            lab.wan(0, "--profile", prof)
            lab.settle(2.0)
            mbps, retrans, rtt, _ = profile_transfer(lab, seconds, streams, ping)
            singles[prof] = {"mbps": round(mbps, 1), "retransmits": retrans, "ping_rtt_ms": rtt}
    row["alone"] = singles
    ceiling = sum(singles[p]["mbps"] for p in profiles)
    best = max(singles.values(), key=lambda v: v["mbps"])
    row["of_ceiling"] = round(row["bonded_mbps"] / ceiling, 3)
    row["vs_best_alone"] = round(row["bonded_mbps"] / best["mbps"], 3)
    row["result"] = (f"{row['bonded_mbps']:.1f} Mbit/s = {row['of_ceiling']:.0%} of {ceiling:.1f}, "
                     f"{row['vs_best_alone']:.0%} of the best alone; shares {row['path_share']}")
    row["pass"] = row["of_ceiling"] >= target_frac and row["vs_best_alone"] >= 0.97
    if ping:
        row["best_alone_ping_rtt_ms"] = best["ping_rtt_ms"]
        near = rtt is not None and best["ping_rtt_ms"] is not None and row["bonded_ping_rtt_ms"] <= best["ping_rtt_ms"] + 10
        row["result"] += f"; ping RTT {row['bonded_ping_rtt_ms']} vs {best['ping_rtt_ms']} ms alone"
        row["pass"] = row["pass"] and near
    return row


def voice_jitter(lab, seconds):
    """A 50 packets/s UDP flow (160-byte payloads, G.711-like) n1 -> n2: iperf3's jitter (ms,
    RFC 3550 estimator) and loss (%)."""
    s = udp_run(lab, seconds, "64k", 160, "voice")
    return s["jitter_ms"], 100.0 * s["lost_packets"] / max(1, s["packets"])


def voice_case(seconds):
    row = {"case": "v: voice, redundant, DSL + LTE", "target": "jitter <= better path's + 5 ms"}
    with Lab("2,1", "redundant") as lab:
        lab.wan(0, "--profile", "dsl")
        lab.wan(1, "--profile", "lte")
        lab.settle(3.0)
        jitter, loss = voice_jitter(lab, seconds)
        row["bonded_jitter_ms"], row["bonded_loss_pct"] = round(jitter, 2), round(loss, 2)
    alone = {}
    for prof in ("dsl", "lte"):
        with Lab("1") as lab:
            lab.wan(0, "--profile", prof)
            lab.settle(1.0)
            jitter, loss = voice_jitter(lab, seconds)
            alone[prof] = {"jitter_ms": round(jitter, 2), "loss_pct": round(loss, 2)}
    row["alone"] = alone
    better = min(v["jitter_ms"] for v in alone.values())
    row["result"] = f"jitter {row['bonded_jitter_ms']} ms (loss {row['bonded_loss_pct']}%) vs {alone}"
    row["pass"] = row["bonded_jitter_ms"] <= better + 5
    return row


def main():
    global BRAID, WORK
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--braid", default=BRAID)
    ap.add_argument("--only", default="a,b,x,c,d,e,w,p,g,q,r,v", help="comma list of cases (a..e, x; f comes with a; w: a and b with configured weights; p, g, q, r, v: profiled uplinks)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (namespaces)")
    BRAID = os.path.abspath(args.braid)
    if not os.path.exists(BRAID):
        sys.exit(f"{BRAID} does not exist: cargo build --release -p braid")
    WORK = tempfile.mkdtemp(prefix="braid-bond-")
    # SIGTERM and SIGHUP unwind like Ctrl-C, so the labs are removed.
    def interrupt(*_):
        raise KeyboardInterrupt()

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    only = set(args.only.split(","))
    rows = []
    try:
        if "a" in only:
            rows.append(throughput_case("a: 2 x 200, 1 stream, weighted", [200, 200], "weighted", 1, 0.90, args.seconds))
            a = rows[-1]
            rows.append({"case": "f: CPU s per GB (from a)", "target": "report",
                         "bonded_cpu_s_per_gb": round(a["bonded_cpu_s_per_gb"], 2), "single_cpu_s_per_gb": round(a["single_cpu_s_per_gb"], 2),
                         "result": f"{a['bonded_cpu_s_per_gb']:.2f} bonded vs {a['single_cpu_s_per_gb']:.2f} one path", "pass": None})
        if "b" in only:
            rows.append(throughput_case("b: 300 + 100, 1 stream, weighted", [300, 100], "weighted", 1, 0.85, args.seconds))
        if "x" in only:
            rows.append(throughput_case("x: 300 + 100, 1 stream, earliest-arrival", [300, 100], "earliest-arrival", 1, 0.85, args.seconds))
        if "w" in only:
            # Diagnostics: the same with configured weights instead of measured capacity.
            rows.append(throughput_case("a': as a, weights 1:1 configured", [200, 200], "weighted", 1, 0.90, args.seconds, [1, 1]))
            rows.append(throughput_case("b': as b, weights 3:1 configured", [300, 100], "weighted", 1, 0.85, args.seconds, [3, 1]))
        if "c" in only:
            rows.append(throughput_case("c: 2 x 200, 8 streams, flow", [200, 200], "flow", 8, 0.90, args.seconds))
        if "d" in only:
            rows.append(failover_case("flow", args.seconds))
            rows.append(failover_case("weighted", args.seconds))
        if "e" in only:
            rows.append(redundant_case(args.seconds))
        if "p" in only:
            rows.append(profile_case("p: DSL + LTE, 1 stream", ["dsl", "lte"], None, 1, 0.80, args.seconds))
        if "g" in only:
            rows.append(profile_case("g: fibre + GEO, 1 stream", ["fibre", "geo"], None, 1, 0.0, args.seconds, ping=True))
        if "q" in only:
            rows.append(profile_case("q: DSL + LTE, 8 streams, flow", ["dsl", "lte"], "flow", 8, 0.90, args.seconds))
        if "r" in only:
            rows.append(failover_case("earliest-arrival", args.seconds, ["dsl", "lte"]))
        if "v" in only:
            rows.append(voice_case(args.seconds))
    except KeyboardInterrupt:
        print("interrupted; removing the lab", file=sys.stderr)
    except Exception as e:  # report what was measured so far, then fail
        print(f"error: {e}", file=sys.stderr)
        rows.append({"case": "error", "result": str(e).splitlines()[0], "pass": False})
    finally:
        for p in STARTED:
            stop(p)
        sh(BRAID, "lab", "down", "--name", LAB, "--dir", WORK, check=False)
    print(f"\n{'case':34} {'target':52} verdict  result")
    for r in rows:
        verdict = "-" if r.get("pass") is None else ("PASS" if r["pass"] else "MISS")
        print(f"{r['case']:34} {r.get('target', ''):52} {verdict:8} {r.get('result', '')}")
    for r in rows:
        extra = {k: v for k, v in r.items() if k not in ("case", "target", "result", "pass")}
        if extra:
            print(f"  {r['case']}: {json.dumps(extra)}")
    if args.json:
        json.dump({"date": time.strftime("%Y-%m-%d"), "seconds": args.seconds, "rows": rows}, open(args.json, "w"), indent=2)
    sys.exit(0 if all(r.get("pass") is not False for r in rows) else 1)


if __name__ == "__main__":
    main()
