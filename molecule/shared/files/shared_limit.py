#!/usr/bin/env python3
"""One consumer's requests spread over several gateways (test equipment): prints the statuses.

    shared_limit.py CACERT LIMIT URL [URL...]     # https:// URLs; key in AI_GATEWAY_KEY

Sends LIMIT + 2 * len(URLs) requests (GET <url>/llm/v1/models), round-robin over the gateways,
all inside one minute window: if fewer than 20 s are left in the current minute it first waits
for the next one (Kong's counters are per calendar minute). Prints
{"statuses": [[url, status], ...]}. Every request goes over HTTPS, verified against CACERT
(gateway_client.py).
"""

from __future__ import annotations

import json
import os
import sys
import time

import gateway_client


def main() -> None:
    context = gateway_client.tls_context(sys.argv[1])
    limit = int(sys.argv[2])
    urls = sys.argv[3:]
    if time.time() % 60 > 40:
        time.sleep(61 - time.time() % 60)
    statuses = []
    for i in range(limit + 2 * len(urls)):
        url = urls[i % len(urls)]
        conn = gateway_client.connection(url, context, 30)
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
