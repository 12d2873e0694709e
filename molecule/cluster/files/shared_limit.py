#!/usr/bin/env python3
"""One consumer's requests spread over several gateways (test equipment): prints the statuses.

    shared_limit.py LIMIT URL [URL...]     # key in AI_GATEWAY_KEY

Sends LIMIT + 2 * len(URLs) requests (GET <url>/llm/v1/models), round-robin over the gateways,
all inside one minute window: if fewer than 20 s are left in the current minute it first waits
for the next one (Kong's counters are per calendar minute). Prints
{"statuses": [[url, status], ...]}.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
import urllib.parse


def main() -> None:
    limit = int(sys.argv[1])
    urls = sys.argv[2:]
    if time.time() % 60 > 40:
        time.sleep(61 - time.time() % 60)
    statuses = []
    for i in range(limit + 2 * len(urls)):
        url = urls[i % len(urls)]
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            conn.request("GET", "/llm/v1/models", headers={"apikey": os.environ["AI_GATEWAY_KEY"]})
            resp = conn.getresponse()
            resp.read()
            statuses.append([url, resp.status])
        finally:
            conn.close()
    print(json.dumps({"statuses": statuses}))


if __name__ == "__main__":
    main()
