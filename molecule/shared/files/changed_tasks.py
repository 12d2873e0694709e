#!/usr/bin/env python3
"""Which tasks an ansible-playbook run changed, and on which hosts, read from its plain output.

Reads the output of the default stdout callback on stdin (coloured or not) and prints one JSON
object, task name -> hosts it changed (a delegated task counts for the host it ran for, as in
the play recap):

    {"llm_api : Render the environment file with the service's settings": ["cluster-llm1"], ...}

Handlers are listed by their name like tasks. The cluster scenario uses it to prove that a
rollout changed only what restarts llm_api, i.e. that the rest of site.yml is idempotent; the
default scenario's leak scan, that its --check --diff run would change only what it was given.

With --ran, the hosts each task ran on (ok or changed; not skipped), in the same form.
"""

from __future__ import annotations

import json
import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colours, when the caller's environment forces them
HEADER = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(?P<name>.+)\] \**$")
CHANGED = re.compile(r"^changed: \[(?P<host>[^\]\s]+)")
RAN = re.compile(r"^(?:ok|changed): \[(?P<host>[^\]\s]+)")


def changed_tasks(lines: list[str], result: re.Pattern[str] = CHANGED) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    task = None
    for line in (ANSI.sub("", raw) for raw in lines):
        header = HEADER.match(line)
        if header:
            task = header.group("name")
            continue
        changed = result.match(line)
        if changed and task is not None:
            hosts = found.setdefault(task, [])
            if changed.group("host") not in hosts:
                hosts.append(changed.group("host"))
    return found


if __name__ == "__main__":
    if sys.argv[1:] not in ([], ["--ran"]):
        sys.exit("usage: changed_tasks.py [--ran] < ansible-playbook-output")
    result = RAN if sys.argv[1:] == ["--ran"] else CHANGED
    found = changed_tasks(sys.stdin.read().splitlines(), result)
    print(json.dumps(found, indent=2, sort_keys=True))
