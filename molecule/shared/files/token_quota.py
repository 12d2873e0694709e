#!/usr/bin/env python3
"""Two consumers' token quotas through several gateways (test equipment): prints what came back.

    token_quota.py --proxy https://URL,https://URL --cacert ca.crt --model M --max-tokens N \
        --max-requests K

The keys come from the environment: AI_GATEWAY_KEY_LIMITED (a consumer with a small token limit)
and AI_GATEWAY_KEY_OTHER (a consumer with a large one). The limited consumer sends chat
completions (max_tokens N) round-robin over the gateways until the first answer that is not 200,
at most K of them; then the other consumer sends one through each gateway. Prints one JSON
object: {"limited": [answer, ...], "other": [answer, ...]}, each answer {"gateway", "status",
"headers" (the x-ratelimit-*-tokens and Retry-After ones), "usage" (of a 200), "error" (of an
error)}. Every request goes over HTTPS, verified against --cacert (gateway_client.py).
"""

from __future__ import annotations

import argparse
import json
import os
import ssl

import gateway_client

HEADERS = (
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "retry-after",
)


def ask(base: str, context: ssl.SSLContext, key: str, model: str, max_tokens: int) -> dict:
    conn = gateway_client.connection(base, context, 30)
    try:
        resp = gateway_client.send_chat(conn, key, model, max_tokens=max_tokens)
        raw = resp.read()
        answer = {
            "gateway": base,
            "status": resp.status,
            "headers": {h: resp.getheader(h) for h in HEADERS if resp.getheader(h) is not None},
        }
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = {}
        if resp.status == 200:
            answer["usage"] = doc.get("usage")
        else:
            answer["error"] = doc.get("error", raw[:300].decode(errors="replace"))
        return answer
    finally:
        conn.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--proxy", required=True, help="comma-separated proxy base URLs (https://)")
    p.add_argument("--cacert", required=True, help="the CA that issued the proxies' certificates")
    p.add_argument("--model", required=True)
    p.add_argument("--max-tokens", type=int, required=True)
    p.add_argument("--max-requests", type=int, required=True)
    args = p.parse_args()
    proxies = args.proxy.split(",")
    context = gateway_client.tls_context(args.cacert)
    limited = []
    for i in range(args.max_requests):
        answer = ask(
            proxies[i % len(proxies)],
            context,
            os.environ["AI_GATEWAY_KEY_LIMITED"],
            args.model,
            args.max_tokens,
        )
        limited.append(answer)
        if answer["status"] != 200:
            break
    other_key = os.environ["AI_GATEWAY_KEY_OTHER"]
    other = [ask(url, context, other_key, args.model, args.max_tokens) for url in proxies]
    print(json.dumps({"limited": limited, "other": other}))


if __name__ == "__main__":
    main()
