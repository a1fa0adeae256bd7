# SkyPilot tests/skyserve/llm/get_response.py, adapted (see NOTICE): the standard
# library's urllib instead of requests; the same request, headers and output.
import argparse
import json
import urllib.error
import urllib.request

if __name__ == '__main__':
    parser = argparse.ArgumentParser(description='SkyServe Smoke Test Client')
    parser.add_argument('--endpoint', type=str, required=True)
    parser.add_argument('--prompt', type=str, required=True)
    parser.add_argument('--auth_token', type=str, required=True)
    args = parser.parse_args()

    messages = [
        {
            'role': 'system',
            'content': 'You are a helpful assistant.'
        },
        {
            'role': 'user',
            'content': args.prompt
        },
    ]

    url = f'{args.endpoint}/v1/chat/completions'
    body = json.dumps({
        'model': 'Qwen/Qwen3-0.6B',
        'messages': messages,
        'temperature': 0,
    }).encode()
    headers = {
        'Authorization': f'Bearer {args.auth_token}',
        'Content-Type': 'application/json',
    }
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        error_msg = (f'Failed to get response: {e.read().decode("utf-8")}\n'
                     f'Status code: {e.code}\n'
                     f'Request URL: {url}\n'
                     f'Request headers: {headers}\n')
        raise RuntimeError(error_msg) from e
    print(answer['choices'][0]['message']['content'])
