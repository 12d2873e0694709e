"""Runs on a gateway: speaks to Redis at --host:--port once in plain text and once over TLS,
verifying its certificate with --ca for the name --host, and prints one JSON line:
{"plain": <what a plain PING got>, "tls": <replies to AUTH and PING>}. The password comes from
REDIS_PASSWORD and is never printed."""

import argparse
import json
import os
import socket
import ssl


def exchange(sock: socket.socket, payload: bytes, replies: int) -> str:
    sock.sendall(payload)
    data = b""
    while data.count(b"\r\n") < replies:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


p = argparse.ArgumentParser()
p.add_argument("--host", required=True)
p.add_argument("--port", type=int, required=True)
p.add_argument("--ca", required=True)
args = p.parse_args()
password = os.environ["REDIS_PASSWORD"].encode()
out = {}
try:
    with socket.create_connection((args.host, args.port), timeout=5) as plain:
        out["plain"] = exchange(plain, b"PING\r\n", 1) or "connection closed"
except OSError as exc:
    out["plain"] = f"refused: {exc.__class__.__name__}"
context = ssl.create_default_context(cafile=args.ca)
try:
    with (
        socket.create_connection((args.host, args.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=args.host) as tls,
    ):
        auth = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(password), password)
        out["tls"] = exchange(tls, auth + b"PING\r\n", 2)
        out["tls_version"] = tls.version()
except (OSError, ssl.SSLError) as exc:
    out["tls"] = f"failed: {exc}"
print(json.dumps(out))
