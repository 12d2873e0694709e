"""The load scripts' one way to reach the gateway (test equipment): HTTPS only, the chain and the
host name verified against the CA the scenario created.

rolling_load.py, token_quota.py, shared_limit.py and rotation_load.py import it from their own
directory (Python puts a script's directory first on sys.path).
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse

ROUTE = "/llm/v1/chat/completions"


def tls_context(cacert: str) -> ssl.SSLContext:
    """A client context that trusts only `cacert` and checks the host name (TLS 1.2 at least)."""
    context = ssl.create_default_context(cafile=cacert)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def connection(url: str, context: ssl.SSLContext, timeout: float) -> http.client.HTTPSConnection:
    """An unopened connection to the host and port of `url`, which must be https://."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"not an https:// URL: {url}")
    return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=context)


def send_chat(
    conn: http.client.HTTPSConnection,
    key: str,
    model: str,
    *,
    stream: bool = False,
    max_tokens: int | None = None,
) -> http.client.HTTPResponse:
    """POST one chat completion ("Hello") with the key in `apikey`; returns the response unread."""
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": "Hello"}]}
    if stream:
        body["stream"] = True
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    conn.request(
        "POST",
        ROUTE,
        body=json.dumps(body),
        headers={"apikey": key, "Content-Type": "application/json"},
    )
    return conn.getresponse()


def outcome(resp: http.client.HTTPResponse, stream: bool) -> str:
    """Reads the answer: 'ok' (200 and a completion with content, or a stream that ends with
    `data: [DONE]`), 'truncated' (a 200 stream without its end) or a failure description."""
    if resp.status != 200:
        return f"HTTP {resp.status}: {resp.read(200)!r}"
    if not stream:
        answer = json.loads(resp.read())
        return "ok" if answer["choices"][0]["message"]["content"] else "empty completion"
    done = any(raw.strip() == b"data: [DONE]" for raw in resp)
    return "ok" if done else "truncated"


# What a request can raise on the way: the connection, TLS (ssl.SSLError is an OSError), HTTP,
# or an answer that is not the JSON expected.
ERRORS = (OSError, ValueError, KeyError, IndexError, http.client.HTTPException)
