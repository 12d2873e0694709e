#!/usr/bin/env python3
"""Timestamp each line of a stream read on stdin (e.g. `curl -N ... | sse_timing.py`).

Prints one JSON array per input line, `[seconds since the first byte, "the line"]`, so that a
test can tell server-sent events that arrived as they were produced from a buffered answer.
"""

import json
import sys
import time


def main() -> None:
    start = None
    for raw in iter(sys.stdin.buffer.readline, b""):
        now = time.monotonic()
        if start is None:
            start = now
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        print(json.dumps([round(now - start, 4), line]), flush=True)


if __name__ == "__main__":
    main()
