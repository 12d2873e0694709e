#!/usr/bin/env python3
"""Steady load through several Kong gateways while a rolling update runs (test equipment).

Plays the load balancer in front of the gateways: every 0.2 s it asks each gateway's
/status/ready and sends new requests only to the gateways in rotation. A gateway leaves it as
soon as it answers anything but 200 (a drained gateway answers 503), or after FALL probes in a
row that got no answer (a load balancer's unhealthy threshold: one slow probe on a loaded host
is not a dead gateway); it comes back with a 200. Requests go out at a fixed rate, round-robin
over the gateways in rotation, each on a new HTTPS connection that verifies the chain against
--cacert and the host name of its URL (gateway_client.py); every third one is a stream. A
request succeeds when it gets 200 and a complete answer: a chat completion with content, or a
stream that ends with `data: [DONE]`. Anything else is a failure, a 200 stream without its end
is counted as truncated.

    rolling_load.py --proxy https://URL,https://URL --cacert ca.crt --status URL,URL \
        --model M --rate 25 --stop-file PATH --max-seconds 600 [--stream-every 3]

The key comes from the environment (AI_GATEWAY_KEY). Stops when the stop file appears or after
--max-seconds, waits for the requests in flight, and prints one JSON object: sent, succeeded,
failed, truncated, streams, seconds, rate, stopped_by ("stop-file" or "max-seconds"), the
probes that got no answer, and the first errors.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import http.client
import json
import os
import ssl
import threading
import time
import urllib.parse

import gateway_client


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--proxy", required=True, help="comma-separated proxy base URLs (https://)")
    p.add_argument("--cacert", required=True, help="the CA that issued the proxies' certificates")
    p.add_argument("--status", required=True, help="comma-separated status URLs, same order")
    p.add_argument("--model", required=True)
    p.add_argument("--rate", type=float, default=25.0, help="requests per second")
    p.add_argument("--stream-every", type=int, default=3)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--max-seconds", type=float, default=600.0)
    p.add_argument("--timeout", type=float, default=60.0)
    return p.parse_args()


FALL = 3  # probes in a row without an answer that take a gateway out of rotation


def probe(url: str) -> bool | None:
    """Whether the status listener (plain HTTP, what the load balancer probes) answers 200;
    None when it does not answer within 2 s."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
    try:
        conn.request("GET", "/status/ready")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def one_request(
    base: str, context: ssl.SSLContext, key: str, model: str, stream: bool, timeout: float
) -> str:
    """'ok', 'truncated' or a failure description."""
    conn = gateway_client.connection(base, context, timeout)
    try:
        resp = gateway_client.send_chat(conn, key, model, stream=stream)
        return gateway_client.outcome(resp, stream)
    except gateway_client.ERRORS as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def main() -> None:
    args = parse_args()
    key = os.environ["AI_GATEWAY_KEY"]
    proxies = args.proxy.split(",")
    context = gateway_client.tls_context(args.cacert)
    statuses = args.status.split(",")
    in_rotation = list(range(len(proxies)))
    lock = threading.Lock()
    stop = threading.Event()

    silent = [0] * len(statuses)
    unanswered = [0]

    def balancer() -> None:
        nonlocal in_rotation
        while not stop.is_set():
            now = []
            for i, url in enumerate(statuses):
                answer = probe(url)
                silent[i] = silent[i] + 1 if answer is None else 0
                unanswered[0] += answer is None
                with lock:
                    was_in = i in in_rotation
                if answer or (answer is None and was_in and silent[i] < FALL):
                    now.append(i)
            with lock:
                in_rotation = now
            stop.wait(0.2)

    threading.Thread(target=balancer, daemon=True).start()
    counts: collections.Counter[str] = collections.Counter()
    errors: list[str] = []
    per_gateway: collections.Counter[str] = collections.Counter()

    def record(kind: str, stream: bool, gateway: str, outcome: str) -> None:
        with lock:
            counts["streams" if stream else "completions"] += 1
            if outcome == "ok":
                counts["succeeded"] += 1
            elif outcome == "truncated":
                counts["truncated"] += 1
                errors.append(f"{gateway} stream truncated")
            else:
                counts["failed"] += 1
                errors.append(f"{gateway} {kind}: {outcome}")

    start = time.monotonic()
    sent = 0
    stopped_by = "max-seconds"
    with concurrent.futures.ThreadPoolExecutor(max_workers=96) as pool:
        futures = []
        while time.monotonic() - start < args.max_seconds:
            if os.path.exists(args.stop_file):
                stopped_by = "stop-file"
                break
            due = start + sent / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with lock:
                rotation = list(in_rotation)
            stream = sent % args.stream_every == 0
            sent += 1
            if not rotation:
                record("request", stream, "-", "no gateway in rotation")
                continue
            g = rotation[sent % len(rotation)]
            per_gateway[proxies[g]] += 1

            def run(g: int = g, stream: bool = stream) -> None:
                outcome = one_request(proxies[g], context, key, args.model, stream, args.timeout)
                record("stream" if stream else "completion", stream, proxies[g], outcome)

            futures.append(pool.submit(run))
        elapsed = time.monotonic() - start
        concurrent.futures.wait(futures)
    stop.set()
    print(
        json.dumps(
            {
                "sent": sent,
                "succeeded": counts["succeeded"],
                "failed": counts["failed"],
                "truncated": counts["truncated"],
                "streams": counts["streams"],
                "seconds": round(elapsed, 1),
                "rate": round(sent / elapsed, 1) if elapsed else 0.0,
                "stopped_by": stopped_by,
                "probes_unanswered": unanswered[0],
                "by_gateway": dict(per_gateway),
                "errors": errors[:10],
            }
        )
    )


if __name__ == "__main__":
    main()
