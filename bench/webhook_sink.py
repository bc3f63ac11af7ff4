#!/usr/bin/env python3
"""Webhook receiver for the relay benchmark: accepts Standard Webhooks POSTs (single events
or {"events": [...]} batches), counts events, answers 204. GET /count returns the count.
usage: webhook_sink.py PORT
"""
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
count = 0


class H(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *a):
        pass

    def do_POST(self):
        global count
        body = self.rfile.read(int(self.headers.get('content-length', 0)))
        v = json.loads(body)
        n = len(v['events']) if isinstance(v, dict) and 'events' in v else 1
        with lock:
            count += n
        self.send_response(204); self.send_header('content-length', '0'); self.end_headers()

    def do_GET(self):
        with lock:
            b = str(count).encode()
        self.send_response(200); self.send_header('content-length', str(len(b))); self.end_headers()
        self.wfile.write(b)


ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
