#!/usr/bin/env python3
"""braid with a registry of N nodes (default 1000) where only this node exists: N-1 links are
created and stay idle. Measures the time to steady state (every link up and the control socket
answering), RSS, idle CPU over 30 s, and the time of a reload with no change.

Run as root from the repository:  python3 bench/scale.py [--nodes 1000] [--idle 30] [--braid PATH]
Everything happens in the namespace brd-scal-n1 (with a lab of one node), removed at the end.
"""

import argparse, base64, json, os, subprocess, sys, tempfile, time

LAB = "scal"
NS = f"brd-{LAB}-n1"


def sh(*args, check=True, **kw):
    r = subprocess.run(args, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{r.stderr}")
    return r


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--idle", type=int, default=30)
    ap.add_argument("--braid", default="target/release/braid")
    ap.add_argument("--routing", default=None, help="the config's routing mode (e.g. static: braid's link liveness on with its defaults); default: the lab's (none)")
    ap.add_argument("--smaps", action="store_true", help="print where the RSS is")
    ap.add_argument("--perf", help="record a 5 s perf profile of the idle daemon into this file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (namespaces)")
    braid = os.path.abspath(args.braid)
    work = tempfile.mkdtemp(prefix="braid-scale-")
    proc = None
    try:
        sh(braid, "lab", "up", "--plan-only", "--links-only", "--nodes", "1", "--name", LAB, "--dir", work)
        config_path = f"{work}/n1/config.json"
        config = json.load(open(config_path))
        config["transport"] = [t for t in config["transport"] if t["address_family"] == "ip4"]
        if args.routing:
            config["routing"] = {"mode": args.routing}
        json.dump(config, open(config_path, "w"), indent=1)
        own = json.load(open(f"{work}/registry.json"))[0]
        own["endpoints"] = [e for e in own["endpoints"] if e["address_family"] == "ip4"]
        registry = [own]
        for i in range(2, args.nodes + 1):
            # Peers that do not exist: random public keys, addresses in 198.18.0.0/15 that
            # nothing answers (the lab node has no route there, so sends fail at once).
            key = base64.b64encode(os.urandom(32)).decode()
            registry.append({"public_key": key, "name": f"n{i}", "index": i,
                             "endpoints": [{"send_port": 40000 + 2 * i, "address_family": "ip4",
                                            "address": f"198.19.{i // 256}.{i % 256}"}]})
        json.dump(registry, open(f"{work}/registry.json", "w"))
        sh(braid, "check", "-c", config_path)
        links = args.nodes - 1
        log = open(f"{work}/n1/braid.log", "w")
        start = time.monotonic()
        proc = subprocess.Popen(["ip", "netns", "exec", NS, "sh", "-c",
                                 "mkdir -p /run/wireguard && mount -t tmpfs -o mode=0755 brd-uapi /run/wireguard && exec \"$@\"",
                                 "sh", braid, "run", "-c", config_path], stdout=log, stderr=log)
        while True:
            r = sh(braid, "status", "--json", "-c", config_path, check=False)
            if r.returncode == 0:
                doc = json.loads(r.stdout)
                if len(doc["links"]) == links and all(l["state"] != "failed" for l in doc["links"]):
                    break
            if proc.poll() is not None or time.monotonic() - start > 120:
                sys.exit(f"braid did not reach steady state; see {work}/n1/braid.log")
            time.sleep(0.1)
        steady = time.monotonic() - start
        made = len([l for l in sh("ip", "-n", NS, "-o", "link", "show", "group", "2").stdout.splitlines() if ": brd" in l])
        time.sleep(2)
        if args.perf:
            sh("perf", "record", "-g", "-o", args.perf, "-p", str(proc.pid), "--", "sleep", "5")
        cpu0 = cpu_seconds(proc.pid)
        time.sleep(args.idle)
        idle_cpu = (cpu_seconds(proc.pid) - cpu0) / args.idle * 100
        rss = rss_mib(proc.pid)
        t = time.monotonic()
        r = sh(braid, "reload", "-c", config_path)
        reload_ms = (time.monotonic() - t) * 1000
        print(f"nodes {args.nodes}: {made} links made")
        if args.smaps:
            rows = {}
            name = ""
            for line in open(f"/proc/{proc.pid}/smaps"):
                parts = line.split()
                if "-" in parts[0] and len(parts) >= 5:
                    name = parts[5] if len(parts) > 5 else "[anon]"
                elif parts[0] == "Rss:":
                    rows[name] = rows.get(name, 0) + int(parts[1])
            for k, v in sorted(rows.items(), key=lambda kv: -kv[1])[:6]:
                print(f"  rss {v / 1024:8.1f} MiB  {k}")
        print(f"steady state      {steady:6.2f} s     (target <= 5 s)")
        print(f"RSS               {rss:6.1f} MiB   (target <= 100 MiB)")
        print(f"idle CPU ({args.idle} s)   {idle_cpu:6.2f} %     (target <= 2 % of one core)")
        print(f"reload, no change {reload_ms:6.0f} ms    (target <= 200 ms; includes the `braid reload` process) -> {r.stdout.strip()}")
        t = time.monotonic()
        proc.terminate()
        proc.wait(timeout=120)
        print(f"stop (SIGTERM)    {time.monotonic() - t:6.2f} s")
    finally:
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                print("braid took over 60 s to stop; killing it", file=sys.stderr)
                proc.kill()
                proc.wait()
        sh(braid, "lab", "down", "--name", LAB, "--dir", work, check=False)


if __name__ == "__main__":
    main()
