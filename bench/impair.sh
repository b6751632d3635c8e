#!/usr/bin/env bash
# Throughput and delay of the lab's impairment forwarder (docs/lab.md, "Uplinks that behave
# like real ones"): for each RATE:DELAY given (default 100:10 300:5 500:5 1000:5), impair
# n1's wan1 with that rate (Mbit/s, both ways) and one-way delay (ms), then measure from n1
# over wan1 to n2: ping RTT (100 pings, 10 ms apart; set: 2 x DELAY), one UDP stream offered
# at 1.5 x RATE (1400-byte datagrams, 4 MiB socket buffers; the line carries
# RATE x 1400/1428 of payload), one
# TCP stream, and the forwarder's CPU time over the runs. Everything happens in the lab
# `imb` (namespaces brd-imb-*), removed at the end, also on failure or Ctrl-C.
#
# As root, from the repository: cargo build --release -p braid && bench/impair.sh [RATE:DELAY ...]
set -euo pipefail
B=${BRAID:-target/release/braid}
L=imb
trap '"$B" lab down --name $L >/dev/null 2>&1 || true' EXIT
"$B" lab down --name $L >/dev/null 2>&1 || true
"$B" lab up --bare --name $L --nodes 2 --wans 2,1 >/dev/null 2>&1
ip netns exec brd-$L-n1 ping -c 3 -i 0.2 -I wan1 198.18.0.2 >/dev/null || true
ip netns exec brd-$L-n2 iperf3 -s -p 47001 -D
sleep 0.3
mbit() { python3 -c "import json,sys; d=json.load(sys.stdin)['end']; print(round(d['sum_received']['bits_per_second']/1e6,1), d['sum_sent'].get('retransmits', '-'))"; }
for spec in "${@:-100:10 300:5 500:5 1000:5}"; do
  for one in $spec; do
    rate=${one%:*}; delay=${one#*:}
    "$B" lab wan --name $L --node 1 --wan 1 --rate "$rate" --delay "$delay" >/dev/null 2>&1
    pid=$(ip netns pids brd-$L-hub)
    cpu0=$(awk '{print $14+$15}' /proc/"$pid"/stat)
    start=$(date +%s.%N)
    rtt=$(ip netns exec brd-$L-n1 ping -q -c 100 -i 0.01 -I wan1 198.18.0.2 | awk -F/ '/rtt/{print $5}')
    read -r udp _ < <(ip netns exec brd-$L-n1 iperf3 -c 198.18.0.2 -p 47001 --bind-dev wan1 -t 5 -u -b $((rate * 3 / 2))M -l 1400 -w 4M -J | mbit)
    read -r tcp retr < <(ip netns exec brd-$L-n1 iperf3 -c 198.18.0.2 -p 47001 --bind-dev wan1 -t 5 -J | mbit)
    cpu1=$(awk '{print $14+$15}' /proc/"$pid"/stat)
    secs=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")
    echo "rate $rate Mbit/s, delay $delay ms: ping $rtt ms (set $((2 * delay))); UDP $udp Mbit/s (line: $(python3 -c "print(round($rate*1400/1428,1))")); TCP $tcp Mbit/s ($retr retransmits); forwarder CPU $(python3 -c "print(round(($cpu1-$cpu0)/100/$secs*100))") % of a core over $secs s"
  done
done
