"""SkyPilot tests/skyserve/streaming/server.py on the standard library (see
NOTICE): fastapi's StreamingResponse replaced by a chunked http.server response;
as the original, each word of example.txt is one chunk, 0.2 s apart; $PORT for
the fixed 8080."""

import http.server
import os
import time

with open('example.txt', 'r') as f:
    WORD_TO_STREAM = f.read()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header('Content-Type', 'text/plain')
        self.send_header('Transfer-Encoding', 'chunked')
        self.end_headers()
        for word in WORD_TO_STREAM.split():
            data = (word + '\n').encode()
            self.wfile.write(b'%x\r\n%s\r\n' % (len(data), data))
            self.wfile.flush()
            time.sleep(0.2)
        self.wfile.write(b'0\r\n\r\n')

    def log_message(self, *args: object) -> None:
        pass


http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), Handler).serve_forever()
