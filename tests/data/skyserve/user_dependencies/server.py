"""Answers "/" with the user dependency's GREETING, from the venv the setup made."""

import argparse
import http.server
import sys

import userdep  # installed by the service's setup, in its own virtual environment


class Handler(http.server.BaseHTTPRequestHandler):

    def do_GET(self):
        body = f'{userdep.GREETING} ({sys.prefix})'.encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == '__main__':
    parser = argparse.ArgumentParser()
    parser.add_argument('--port', type=int, default=8080)
    args = parser.parse_args()
    http.server.ThreadingHTTPServer(('127.0.0.1', args.port), Handler).serve_forever()
