#!/usr/bin/env python3
"""Steady HTTPS load through Kong's proxy while its certificate is replaced (test equipment).

Every request opens a new TLS connection that verifies the chain against --cacert and the host
name (gateway_client.py), and notes the serial number of the certificate it was served; every
third one is a stream. A request succeeds when it gets 200 and a complete answer (a chat
completion with content, or a stream that ends with `data: [DONE]`). Bounded: stops when the
stop file appears or after --max-seconds (and never sends more than --max-requests), waits for
the requests in flight, and prints one JSON object: sent, succeeded, failed, the serials in the
order first seen, the serial of the last handshake, and the first errors.

    rotation_load.py --url https://localhost:38001 --cacert ca.crt --model M --rate 5 \
        --stop-file PATH --max-seconds 300 --max-requests 3000

The key comes from the environment (AI_GATEWAY_KEY).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import ssl
import threading
import time

import gateway_client


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--cacert", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--rate", type=float, default=5.0, help="requests per second")
    p.add_argument("--stream-every", type=int, default=3)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--max-seconds", type=float, default=300.0)
    p.add_argument("--max-requests", type=int, default=3000)
    p.add_argument("--timeout", type=float, default=60.0)
    return p.parse_args()


def serial_of(conn: http.client.HTTPSConnection) -> str:
    sock = conn.sock
    cert = sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
    return str((cert or {}).get("serialNumber", "?")).upper()


def one_request(
    url: str, context: ssl.SSLContext, key: str, model: str, stream: bool, timeout: float
) -> tuple[str, str]:
    """('ok' | 'truncated' | a failure description, the served certificate's serial)."""
    conn = gateway_client.connection(url, context, timeout)
    serial = "-"
    try:
        conn.connect()
        serial = serial_of(conn)
        resp = gateway_client.send_chat(conn, key, model, stream=stream)
        return gateway_client.outcome(resp, stream), serial
    except gateway_client.ERRORS as exc:
        return f"{type(exc).__name__}: {exc}", serial
    finally:
        conn.close()


def main() -> None:
    args = parse_args()
    key = os.environ["AI_GATEWAY_KEY"]
    context = gateway_client.tls_context(args.cacert)
    lock = threading.Lock()
    counts = {"succeeded": 0, "failed": 0}
    errors: list[str] = []
    serials: list[str] = []
    last = {"serial": "", "at": 0.0}

    def run(stream: bool, sent_at: float) -> None:
        outcome, serial = one_request(args.url, context, key, args.model, stream, args.timeout)
        with lock:
            if serial not in serials and serial != "-":
                serials.append(serial)
            if sent_at >= last["at"] and serial != "-":
                last.update(serial=serial, at=sent_at)
            if outcome == "ok":
                counts["succeeded"] += 1
            else:
                counts["failed"] += 1
                errors.append(outcome)

    start = time.monotonic()
    sent = 0
    stopped_by = "max-seconds"
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        futures = []
        while time.monotonic() - start < args.max_seconds and sent < args.max_requests:
            if os.path.exists(args.stop_file):
                stopped_by = "stop-file"
                break
            delay = start + sent / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            stream = sent % args.stream_every == 0
            sent += 1
            futures.append(pool.submit(run, stream, time.monotonic()))
        elapsed = time.monotonic() - start
        concurrent.futures.wait(futures)
    print(
        json.dumps(
            {
                "sent": sent,
                "succeeded": counts["succeeded"],
                "failed": counts["failed"],
                "serials": serials,
                "last_serial": last["serial"],
                "seconds": round(elapsed, 1),
                "stopped_by": stopped_by,
                "errors": errors[:10],
            }
        )
    )


if __name__ == "__main__":
    main()
