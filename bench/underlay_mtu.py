#!/usr/bin/env python3
"""One braid link over a narrow underlay: one TCP stream with the veth pair at MTU 1300
against the same link at MTU 1500, in one run (issue 15, defect 3).

The link MTU stays 1420, so at 1300 every full-size encrypted datagram (1452 bytes + 28 of
UDP/IPv4) is fragmented by the sending kernel and reassembled by the receiving one; at 1500
nothing is. A third case shows what avoiding fragmentation would give: the 1300 underlay with
the stream's TCP MSS clamped (nftables in both namespaces) to 1180, so that every segment's
datagram fits (1180 + 60 of IPv6/TCP + 32 of WireGuard + 28 of UDP/IPv4 = 1300); a lower link
MTU cannot do that here, as a link carrying IPv6 needs at least 1280.

Each round measures 1500, 1300, then 1300 clamped; after the MTU goes back up the script waits
11 s, braid's RETRY_GSO_AFTER (10 s), so that the link batches with GSO again.

Run as root from the repository:  python3 bench/underlay_mtu.py [--seconds 10] [--rounds 2]
Needs: iproute2, iperf3, a release build of braid (`cargo build --release`).
Everything happens in the namespaces brd-umtu-n1 and brd-umtu-n2, removed at the end.
"""

import argparse, json, os, subprocess, sys, tempfile, time

LAB = "umtu"
NS = [f"brd-{LAB}-n1", f"brd-{LAB}-n2"]
# Each node's veth toward the other (the lab names them u<peer>).
VETH = ["u2", "u1"]


def sh(*args, check=True, **kw):
    r = subprocess.run(args, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{r.stderr}")
    return r


def netns(i, *args, **kw):
    return sh("ip", "netns", "exec", NS[i], *args, **kw)


def set_underlay_mtu(mtu):
    for i in (0, 1):
        sh("ip", "-n", NS[i], "link", "set", VETH[i], "mtu", str(mtu))


def clamp_mss(on):
    """nftables in both namespaces: the MSS of SYNs leaving the node set to 1180 (or not)."""
    for ns in NS:
        if on:
            script = "table inet brd_umtu_clamp {\n chain out {\n  type filter hook output priority 0;\n  tcp flags syn tcp option maxseg size set 1180\n }\n}\n"
            sh("ip", "netns", "exec", ns, "nft", "-f", "-", input=script)
        else:
            sh("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "brd_umtu_clamp", check=False)


def ipv4_link():
    """The lab's link from n1 to n2 over the IPv4 underlay (brd4x<port>)."""
    out = sh("ip", "-n", NS[0], "-o", "link", "show").stdout
    names = [line.split(": ")[1].split("@")[0] for line in out.splitlines()]
    links = [n for n in names if n.startswith("brd4x")]
    if not links:
        sys.exit(f"no brd4x link in {NS[0]}: {names}")
    return links[0]


def iperf(target, seconds):
    """One TCP stream n1 -> n2 for `seconds`: (Gbit/s received, retransmits)."""
    server = subprocess.Popen(["ip", "netns", "exec", NS[1], "iperf3", "-s"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            r = netns(0, "timeout", str(seconds + 20), "iperf3", "-c", target, "-t", str(seconds), "-J", check=False)
            report = json.loads(r.stdout or "{}")
            if "unable to connect" in report.get("error", ""):
                time.sleep(0.2)
                continue
            if "end" not in report:
                return 0.0, None
            end = report["end"]
            return end["sum_received"]["bits_per_second"] / 1e9, end["sum_sent"].get("retransmits")
        sys.exit("iperf3 server never listened")
    finally:
        server.terminate()
        server.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--braid", default="target/release/braid")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (namespaces)")
    braid = os.path.abspath(args.braid)
    work = tempfile.mkdtemp(prefix="braid-umtu-")
    rows = []
    try:
        sh(braid, "lab", "up", "--links-only", "--nodes", "2", "--name", LAB, "--dir", work, "--seconds", "0")
        link = ipv4_link()
        target = f"fe80::2%{link}"
        cases = [("1500", 1500, False), ("1300", 1300, False), ("1300 MSS 1180", 1300, True)]
        for _ in range(args.rounds):
            for label, mtu, clamped in cases:
                set_underlay_mtu(mtu)
                clamp_mss(clamped)
                time.sleep(11 if mtu == 1500 else 1)
                gbps, retransmits = iperf(target, args.seconds)
                clamp_mss(False)
                rows.append((label, gbps))
                print(f"underlay MTU {label}: {gbps:.2f} Gbit/s, {retransmits} retransmits", flush=True)
    finally:
        clamp_mss(False)
        sh(braid, "lab", "down", "--name", LAB, "--dir", work, check=False)
    by_case = {label: [g for l, g in rows if l == label] for label, _, _ in cases}
    for label, figures in by_case.items():
        print(f"{label:>14}: {' '.join(f'{g:.2f}' for g in figures)} Gbit/s")
    for label in ("1300", "1300 MSS 1180"):
        ratios = [n / w for w, n in zip(by_case["1500"], by_case[label]) if w > 0]
        print(f"{label} / 1500 per round: {' '.join(f'{r:.2f}' for r in ratios)} (target >= 0.50)")


if __name__ == "__main__":
    main()
