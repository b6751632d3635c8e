#!/usr/bin/env python3
"""A small HTTPS server for braid's registry fetch tests (crates/braid/tests/registry_fetch.rs).

Serves files of ROOT under /reg/ with ETag and Last-Modified (answering 304 to
If-None-Match), and misbehaves on purpose under other prefixes:
  /hang/...       accepts the request and never answers (60 s)
  /loop/...       redirects to itself, forever
  /big/...        5 MB of body, with Content-Length
  /bigstream/...  5 MB of body, without Content-Length (close-delimited)
  /plain/...      redirects to http:// (a downgrade)
Every request is logged to LOG as "<status> <path>".

usage: server.py ADDRESS PORT CERT KEY ROOT LOG
"""
import hashlib
import http.server
import os
import ssl
import sys
import time
from email.utils import formatdate

address, port, cert, key, root, log = sys.argv[1:7]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def note(self, status):
        with open(log, "a") as f:
            f.write(f"{status} {self.path}\n")

    def do_GET(self):
        path = self.path
        if path.startswith("/hang/"):
            self.note("hang")
            time.sleep(60)
            return
        if path.startswith("/loop/"):
            self.note(302)
            self.send_response(302)
            self.send_header("Location", path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path.startswith("/plain/"):
            self.note(302)
            self.send_response(302)
            self.send_header("Location", "http://" + address + path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path.startswith("/big/") or path.startswith("/bigstream/"):
            self.note(200)
            body = b"[" + b" " * (5 * 1000 * 1000) + b"]"
            self.send_response(200)
            if path.startswith("/big/"):
                self.send_header("Content-Length", str(len(body)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:
                pass
            return
        if not path.startswith("/reg/"):
            self.note(404)
            self.send_error(404)
            return
        name = os.path.join(root, os.path.basename(path))
        try:
            with open(name, "rb") as f:
                body = f.read()
            mtime = os.path.getmtime(name)
        except OSError:
            self.note(404)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if self.headers.get("If-None-Match") == etag:
            self.note(304)
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.note(200)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", formatdate(mtime, usegmt=True))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def get_request(self):
        sock, addr = super().get_request()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


httpd = Server((address, int(port)), Handler)
httpd.serve_forever()
