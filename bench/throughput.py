#!/usr/bin/env python3
"""braid vs wireguard-go on one veth pair between two namespaces, in one run.

For each implementation: iperf3 with one TCP stream and with four (SECONDS each), ping RTT
(average and p99 of 500 pings at 5 ms), and the CPU seconds its two tunnel processes used
during the iperf3 runs. Prints a table and the braid/wireguard-go ratios.

Run as root from the repository:  python3 bench/throughput.py [--seconds 10] [--braid PATH]
Needs: iproute2, iperf3, ping, wireguard-go, wireguard-tools (wg), a release build of braid.
Everything happens in the namespaces brd-bnch-n1 and brd-bnch-n2, removed at the end.
"""

import argparse, json, os, re, subprocess, sys, tempfile, time

LAB = "bnch"
NS = [f"brd-{LAB}-n1", f"brd-{LAB}-n2"]


def sh(*args, check=True, capture=True, **kw):
    r = subprocess.run(args, capture_output=capture, text=True, **kw)
    if check and r.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{r.stderr}")
    return r


def netns(i, *args, **kw):
    return sh("ip", "netns", "exec", NS[i], *args, **kw)


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


def tunnel_pids(name):
    pids = []
    for ns in NS:
        out = sh("ip", "netns", "pids", ns).stdout.split()
        for pid in out:
            try:
                if open(f"/proc/{pid}/comm").read().strip() == name:
                    pids.append(int(pid))
            except OSError:
                pass
    return pids


def iperf(target, streams, seconds, pids):
    server = subprocess.Popen(["ip", "netns", "exec", NS[1], "iperf3", "-s"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            before = cpu_seconds(pids)
            r = netns(0, "iperf3", "-c", target, "-t", str(seconds), "-P", str(streams), "-J", check=False)
            report = json.loads(r.stdout or "{}")
            if "unable to connect" in report.get("error", ""):
                time.sleep(0.2)
                continue
            used = cpu_seconds(pids) - before
            if "error" in report:
                sys.exit(f"iperf3: {report['error']}")
            return report["end"]["sum_received"]["bits_per_second"] / 1e9, used
        sys.exit("iperf3 server never listened")
    finally:
        server.terminate()
        server.wait()


def ping(target):
    r = netns(0, "ping", "-i", "0.005", "-c", "500", "-q" if False else "-n", target)
    times = sorted(float(t) for t in re.findall(r"time=([0-9.]+)", r.stdout))
    if not times:
        sys.exit(f"ping {target}: no replies")
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return sum(times) / len(times), p99, 500 - len(times)


def measure(label, target, comm, seconds):
    pids = tunnel_pids(comm)
    one, cpu1 = iperf(target, 1, seconds, pids)
    four, cpu4 = iperf(target, 4, seconds, pids)
    avg, p99, lost = ping(target)
    return {"impl": label, "one_stream_gbps": one, "four_streams_gbps": four, "cpu_s_one": cpu1, "cpu_s_four": cpu4, "rtt_avg_ms": avg, "rtt_p99_ms": p99, "ping_lost": lost}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--braid", default="target/release/braid")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (namespaces)")
    braid = os.path.abspath(args.braid)
    work = tempfile.mkdtemp(prefix="braid-bench-")
    results = []
    try:
        # braid <-> braid: the lab with two nodes (one veth pair), one `braid run` each.
        sh(braid, "lab", "up", "--nodes", "2", "--name", LAB, "--dir", work, "--seconds", "0")
        results.append(measure("braid", "fe80::2%brd4x40004", "braid", args.seconds))
        for i in (1, 2):
            sh(braid, "down", "-c", f"{work}/n{i}/config.json")
        # wireguard-go <-> wireguard-go on the same veth pair.
        keys = [sh("wg", "genkey").stdout.strip() for _ in NS]
        pubs = [sh("wg", "pubkey", input=k).stdout.strip() for k in keys]
        procs = []
        for i in (0, 1):
            ifname = f"brdbg{os.getpid() % 10000}{i}"
            env = dict(os.environ, LOG_LEVEL="error", WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD="1")
            procs.append(subprocess.Popen(["ip", "netns", "exec", NS[i], "wireguard-go", "-f", ifname], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            for _ in range(100):
                if os.path.exists(f"/var/run/wireguard/{ifname}.sock"):
                    break
                time.sleep(0.05)
            keyfile = f"{work}/wg{i}.key"
            open(keyfile, "w").write(keys[i])
            peer = 1 - i
            netns(i, "wg", "set", ifname, "private-key", keyfile, "listen-port", str(51820 + i), "peer", pubs[peer], "endpoint", f"198.18.0.{peer + 1}:{51820 + peer}", "allowed-ips", "0.0.0.0/0,::/0")
            netns(i, "ip", "addr", "add", f"fe80::{i + 1}/64", "dev", ifname)
            netns(i, "ip", "link", "set", ifname, "mtu", "1420", "up")
        results.append(measure("wireguard-go", f"fe80::2%brdbg{os.getpid() % 10000}0", "wireguard-go", args.seconds))
        for p in procs:
            p.terminate()
            p.wait()
    finally:
        sh(braid, "lab", "down", "--name", LAB, "--dir", work, check=False)
    b, w = results
    print(f"{'':14} {'1 stream':>10} {'4 streams':>10} {'CPU s (1)':>10} {'CPU s (4)':>10} {'RTT avg':>9} {'RTT p99':>9}")
    for r in results:
        print(f"{r['impl']:14} {r['one_stream_gbps']:>8.2f}Gb {r['four_streams_gbps']:>8.2f}Gb {r['cpu_s_one']:>10.1f} {r['cpu_s_four']:>10.1f} {r['rtt_avg_ms']:>7.3f}ms {r['rtt_p99_ms']:>7.3f}ms")
    print(f"{'braid/wg-go':14} {b['one_stream_gbps'] / w['one_stream_gbps']:>9.2f}x {b['four_streams_gbps'] / w['four_streams_gbps']:>9.2f}x"
          f" {'':>10} {'':>10} {b['rtt_avg_ms'] / w['rtt_avg_ms']:>8.2f}x {b['rtt_p99_ms'] / w['rtt_p99_ms']:>8.2f}x")
    if args.json:
        json.dump(results, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    main()
