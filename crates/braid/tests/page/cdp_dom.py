#!/usr/bin/env python3
"""Prints the DOM of the page open in a headless chromium, read over the DevTools protocol
(a websocket, RFC 6455), without reloading it: the status page test uses it to see the same
page change after a cut. Python's standard library only.

usage: cdp_dom.py PORT
"""
import base64, json, os, socket, struct, sys, time, urllib.request

port = int(sys.argv[1])
targets = None
for _ in range(200):
    try:
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2))
        if any(t.get("type") == "page" for t in targets):
            break
    except OSError:
        pass
    time.sleep(0.1)
if not targets:
    sys.exit(f"no DevTools endpoint on port {port}")
page = next(t for t in targets if t.get("type") == "page")
path = page["webSocketDebuggerUrl"].split(f":{port}", 1)[1]

sock = socket.create_connection(("127.0.0.1", port), timeout=10)
key = base64.b64encode(os.urandom(16)).decode()
sock.sendall(
    (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    chunk = sock.recv(4096)
    if not chunk:
        sys.exit("DevTools closed the connection during the handshake")
    buf += chunk
head, rest = buf.split(b"\r\n\r\n", 1)
if b" 101 " not in head.split(b"\r\n", 1)[0]:
    sys.exit(f"DevTools refused the websocket: {head.decode(errors='replace')}")

request = json.dumps({"id": 1, "method": "Runtime.evaluate",
                      "params": {"expression": "document.documentElement.outerHTML",
                                 "returnByValue": True}}).encode()
mask = os.urandom(4)
n = len(request)
header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(request)))


def read(k):
    global rest
    while len(rest) < k:
        chunk = sock.recv(65536)
        if not chunk:
            sys.exit("DevTools closed the connection")
        rest += chunk
    out, rest = rest[:k], rest[k:]
    return out


while True:
    payload = b""
    while True:
        b0, b1 = read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", read(8))[0]
        payload += read(n)
        if b0 & 0x80:
            break
    message = json.loads(payload)
    if message.get("id") == 1:
        # Empty while the page is still loading (no document yet, or the evaluation raced a
        # navigation): the caller asks again.
        print(message.get("result", {}).get("result", {}).get("value", ""))
        break
