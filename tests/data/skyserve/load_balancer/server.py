"""SkyPilot tests/skyserve/load_balancer/server.py on the standard library (see
NOTICE): fastapi/uvicorn replaced by http.server, and ``/get_ip`` answers with the
replica's own address (host:port) instead of asking ifconfig.me, since every
local replica shares this machine's public IP."""

import argparse
import http.server
import json


class Handler(http.server.BaseHTTPRequestHandler):
    address = ''

    def do_GET(self) -> None:
        if self.path == '/get_ip':
            body = json.dumps({'ip': self.address}).encode()
        else:
            body = json.dumps({'status': 'ok'}).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description='SkyServe HTTP Test Server')
    parser.add_argument('--port', type=int, required=True)
    args = parser.parse_args()
    Handler.address = f'127.0.0.1:{args.port}'
    http.server.ThreadingHTTPServer(('127.0.0.1', args.port), Handler).serve_forever()
