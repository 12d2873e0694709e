#!/usr/bin/env python3
"""One consumer's requests spread over several gateways (test equipment): prints the statuses.

    shared_limit.py LIMIT URL [URL...]     # key in AI_GATEWAY_KEY

Sends LIMIT + 2 * len(URLs) requests (GET <url>/llm/v1/models), round-robin over the gateways,
all inside one minute window: if fewer than 20 s are left in the current minute it first waits
for the next one (Kong's counters are per calendar minute). Prints
{"statuses": [[url, status], ...]}.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request


def main() -> None:
    limit = int(sys.argv[1])
    urls = sys.argv[2:]
    if time.time() % 60 > 40:
        time.sleep(61 - time.time() % 60)
    statuses = []
    for i in range(limit + 2 * len(urls)):
        url = urls[i % len(urls)]
        req = urllib.request.Request(
            url + "/llm/v1/models", headers={"apikey": os.environ["AI_GATEWAY_KEY"]}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                statuses.append([url, resp.status])
        except urllib.error.HTTPError as exc:
            statuses.append([url, exc.code])
    print(json.dumps({"statuses": statuses}))


if __name__ == "__main__":
    main()
