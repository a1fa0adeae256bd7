"""SkyPilot tests/skyserve/readiness_timeout/server.py on the standard library
(see NOTICE): fastapi/uvicorn replaced by http.server; ``/health`` answers after
``--health-delay`` seconds (20 in the original)."""

import argparse
import http.server
import json
import time


class Handler(http.server.BaseHTTPRequestHandler):
    health_delay = 20.0

    def do_GET(self) -> None:
        if self.path == '/health':
            time.sleep(self.health_delay)
            body = json.dumps({'status': 'ok'}).encode()
        else:
            body = json.dumps('Hi, SkyPilot here!').encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == '__main__':
    parser = argparse.ArgumentParser(
        description='SkyServe Readiness Timeout Test Server')
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--health-delay', type=float, default=20.0)
    args = parser.parse_args()
    Handler.health_delay = args.health_delay
    http.server.ThreadingHTTPServer(('127.0.0.1', args.port), Handler).serve_forever()
