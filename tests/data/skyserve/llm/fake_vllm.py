"""A stand-in for ``vllm serve MODEL --api-key KEY`` (no GPU, no model download).

The routes SkyServe's LLM smoke test uses, as vLLM's OpenAI-compatible server
answers them: ``GET /health`` (open), ``GET /v1/models`` and ``POST
/v1/chat/completions`` (both need ``Authorization: Bearer KEY``; else 401 with
vLLM's ``{"error": "Unauthorized"}``; an unknown ``model`` is a 404). The model
is a table: at temperature 0 a model answers the same prompt the same way, and
these are the answers SkyServe's prompt_output.json expects from Qwen3-0.6B; any
other prompt gets a fixed sentence. Standard library only (skyctl's CI installs
nothing at run time).
"""

import argparse
import json
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWERS = {
    'Introduce yourself!':
        "Hello! I'm Qwen, a large language model developed by Alibaba Cloud. "
        'How can I assist you today?',
    'What is Deep Learning? Explain in less than 30 words.':
        'Deep learning is a subset of machine learning where neural networks '
        'learn patterns from data, enabling complex tasks like image '
        'recognition and speech processing.',
}
OTHERWISE = 'I am a stand-in for a language model.'


def handler(model: str, api_key: str):

    class Handler(BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'

        def _send(self, code, payload):
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorized(self):
            if self.headers.get('Authorization') == f'Bearer {api_key}':
                return True
            self._send(401, {'error': 'Unauthorized'})
            return False

        def do_GET(self):
            if self.path == '/health':
                self._send(200, {})
            elif self.path == '/v1/models':
                if self._authorized():
                    self._send(200, {
                        'object': 'list',
                        'data': [{
                            'id': model,
                            'object': 'model',
                            'owned_by': 'vllm',
                            'root': model,
                        }],
                    })
            else:
                self._send(404, {'detail': 'Not Found'})

        def do_POST(self):
            length = int(self.headers.get('Content-Length') or 0)
            raw = self.rfile.read(length)
            if self.path != '/v1/chat/completions':
                self._send(404, {'detail': 'Not Found'})
                return
            if not self._authorized():
                return
            request = json.loads(raw or b'{}')
            if request.get('model') != model:
                self._send(404, {
                    'object': 'error',
                    'message': f"The model `{request.get('model')}` does not exist.",
                    'type': 'NotFoundError',
                    'code': 404,
                })
                return
            user = [m['content'] for m in request.get('messages', [])
                    if m.get('role') == 'user']
            content = ANSWERS.get(user[-1] if user else '', OTHERWISE)
            prompt_tokens = sum(
                len(str(m.get('content', '')).split())
                for m in request.get('messages', []))
            self._send(200, {
                'id': f'chatcmpl-{uuid.uuid4().hex}',
                'object': 'chat.completion',
                'created': int(time.time()),
                'model': model,
                'choices': [{
                    'index': 0,
                    'message': {'role': 'assistant', 'content': content},
                    'finish_reason': 'stop',
                }],
                'usage': {
                    'prompt_tokens': prompt_tokens,
                    'completion_tokens': len(content.split()),
                    'total_tokens': prompt_tokens + len(content.split()),
                },
            })

    return Handler


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description='vllm serve, faked')
    parser.add_argument('command', choices=['serve'])
    parser.add_argument('model')
    parser.add_argument('--trust-remote-code', action='store_true')
    parser.add_argument('--host', default='0.0.0.0')
    parser.add_argument('--port', type=int, default=8000)
    parser.add_argument('--api-key', required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port),
                                 handler(args.model, args.api_key))
    print(f'INFO: fake vLLM serving {args.model} on {args.host}:{args.port}',
          flush=True)
    server.serve_forever()
