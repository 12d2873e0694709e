#!/usr/bin/env python3
"""Send requests with one API key until Kong answers 429 (or a maximum is reached).

Used by playbooks/verify.yml: one process sends the whole burst, so the requests fall within
one rate-limit window however slow Ansible is on the host. Standard library only, so that it
runs on any host with Python 3.

Usage: rate_limit_burst.py URL MAX [HEADER] <<<"$KEY"   (or AI_GATEWAY_KEY=... in the environment)
The key is read from standard input so that it never appears in a command line or an
environment that Ansible prints at high verbosity.
Prints one JSON object: {"sent": N, "status": S, "headers": {...}} for the last response
(status -1 and "error" when the gateway could not be reached).
"""

import json
import os
import sys
import urllib.error
import urllib.request


def send(url: str, header: str, key: str) -> tuple[int, dict[str, str]]:
    # main() accepts only http(s) URLs, hence the S310 exemptions.
    request = urllib.request.Request(url, headers={header: key})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            response.read()
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code, dict(exc.headers)


def main() -> int:
    url, maximum = sys.argv[1], int(sys.argv[2])
    header = sys.argv[3] if len(sys.argv) > 3 else "apikey"
    key = os.environ.get("AI_GATEWAY_KEY") or sys.stdin.readline().strip()
    if not url.startswith(("http://", "https://")):
        print(json.dumps({"sent": 0, "status": -1, "headers": {}, "error": "not an http(s) URL"}))
        return 0
    status, headers, sent = 0, {}, 0
    try:
        while sent < maximum and status != 429:
            status, headers = send(url, header, key)
            sent += 1
    except (urllib.error.URLError, OSError) as exc:
        print(json.dumps({"sent": sent, "status": -1, "headers": {}, "error": str(exc)}))
        return 0
    print(json.dumps({"sent": sent, "status": status, "headers": headers}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
