#!/usr/bin/env python3
"""Run a command (e.g. `curl -N ...`) and timestamp each line of its output as it arrives.

    sse_timing.py curl -sSN ... URL

Prints one JSON array per output line, `[seconds since the first line, "the line"]`, so that a
test can tell server-sent events that arrived as they were produced from a buffered answer. The
command runs as a child so that its output is read from the start (Python starting up after the
stream began would see the first events all at once). Exits with the command's exit status.
"""

import json
import subprocess
import sys
import time


def main() -> int:
    # The command is the caller's own (the test's curl command line), not untrusted input.
    with subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE) as child:  # noqa: S603
        assert child.stdout is not None
        start = None
        for raw in iter(child.stdout.readline, b""):
            now = time.monotonic()
            if start is None:
                start = now
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            print(json.dumps([round(now - start, 4), line]), flush=True)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
