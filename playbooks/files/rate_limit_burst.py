#!/usr/bin/env python3
"""Send requests with one API key until Kong answers 429 (or a maximum is reached).

Used by playbooks/verify.yml, for its single request with the key (MAX 1) and for the burst: one
process sends the whole burst, so the requests fall within one rate-limit window however slow
Ansible is on the host. Standard library only, so that it runs on any host with Python 3.

Usage: rate_limit_burst.py URL MAX KEY_FILE [JSON_BODY]
AI_GATEWAY_CA_FILE, when set, is the CA file the gateway's certificate is verified against.
The key is read from KEY_FILE (or AI_GATEWAY_KEY in the environment), so that it never appears
in a command line, an environment Ansible prints at high verbosity, or a module's arguments that
a playbook registers. With JSON_BODY the requests are POSTs of that body.
Prints one JSON object: {"sent": N, "status": S, "headers": {...}, "body": "..."} for the last
response (status -1 and "error" when the gateway could not be reached).
"""

import json
import os
import ssl
import sys
import urllib.error
import urllib.request

HEADER = "apikey"
MAX_BODY = 4000


def send(
    url: str, key: str, body: bytes | None, context: ssl.SSLContext | None
) -> tuple[int, dict[str, str], str]:
    headers = {HEADER: key}
    if body is not None:
        headers["Content-Type"] = "application/json"
    # main() accepts only http(s) URLs, hence the S310 exemptions.
    request = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=120, context=context) as response:  # noqa: S310
            text = response.read().decode("utf-8", "replace")
            return response.status, dict(response.headers), text[:MAX_BODY]
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace")
        return exc.code, dict(exc.headers), text[:MAX_BODY]


def main() -> int:
    url, maximum, key_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    body = sys.argv[4].encode() if len(sys.argv) > 4 else None
    key = os.environ.get("AI_GATEWAY_KEY")
    if not key:
        with open(key_file, encoding="utf-8") as handle:
            key = handle.read().strip()
    if not url.startswith(("http://", "https://")):
        print(json.dumps({"sent": 0, "status": -1, "headers": {}, "error": "not an http(s) URL"}))
        return 0
    ca_file = os.environ.get("AI_GATEWAY_CA_FILE")
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    status, headers, text, sent = 0, {}, "", 0
    try:
        while sent < maximum and status != 429:
            status, headers, text = send(url, key, body, context)
            sent += 1
    except (urllib.error.URLError, OSError) as exc:
        print(json.dumps({"sent": sent, "status": -1, "headers": {}, "error": str(exc)}))
        return 0
    print(json.dumps({"sent": sent, "status": status, "headers": headers, "body": text}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
