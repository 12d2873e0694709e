"""Benchmark: converge N consumers, each with one key-auth credential, as a playbook would.

Starts a simulator node in postgres mode (kongsim.testing), then runs real ansible-playbook
processes against it:
  bulk: one kong_consumer task and one kong_key_auth task with `entities` (N entries each);
  loop: the same with one module run per item (`loop:` over N items), on fresh names.
Each is run twice: the first run creates everything, the second must change nothing.
Prints wall times; the target is a no-change run of at most 20 s.

    python collections/ai_gateway/tests/perf/converge_200.py [--count 200] [--loop-count 200]

A benchmark, not a test: it prints figures and only fails if a second run reports changes.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from kongsim.testing import KongNode, postgres_server

REPO = Path(__file__).resolve().parents[4]


def plays(admin_url, prefix, count, bulk):
    users = ["%s-%03d" % (prefix, i) for i in range(count)]
    keys = [{"consumer": u, "key": "%s-key-0123456789abcdef" % u} for u in users]
    if bulk:
        tasks = [
            {
                "name": "Consumers",
                "ai_gateway.kong.kong_consumer": {
                    "select_tags": ["perf"],
                    "entities": [{"username": u} for u in users],
                },
            },
            {
                "name": "Their keys",
                "ai_gateway.kong.kong_key_auth": {"select_tags": ["perf"], "entities": keys},
            },
        ]
    else:
        tasks = [
            {
                "name": "Consumer",
                "ai_gateway.kong.kong_consumer": {
                    "username": "{{ item }}",
                    "select_tags": ["perf"],
                },
                "loop": users,
            },
            {
                "name": "Its key",
                "ai_gateway.kong.kong_key_auth": {
                    "consumer": "{{ item.consumer }}",
                    "key": "{{ item.key }}",
                    "select_tags": ["perf"],
                },
                "loop": keys,
                "loop_control": {"label": "{{ item.consumer }}"},
            },
        ]
    return [
        {
            "name": "Converge consumers",
            "hosts": "localhost",
            "gather_facts": False,
            "module_defaults": {"group/ai_gateway.kong.kong": {"admin_url": admin_url}},
            "tasks": tasks,
        }
    ]


def run(path, workdir):
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_LOCAL_TEMP=str(Path(workdir) / "ansible-tmp"),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_PIPELINING="true",
    )
    cmd = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        "ansible_python_interpreter=%s" % sys.executable,
        str(path),
    ]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit("ansible-playbook failed:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr))
    stats = json.loads(proc.stdout)["stats"]["localhost"]
    return elapsed, stats["changed"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="consumers in bulk mode")
    parser.add_argument(
        "--loop-count", type=int, default=200, help="consumers in loop mode (0 skips it)"
    )
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as workdir, postgres_server() as pg:
        dbname = pg.create_database()
        with KongNode({"database": "postgres", **pg.kong_conf(dbname)}) as node:
            modes = [("bulk (entities, 2 tasks)", "bulk", args.count, True)]
            if args.loop_count:
                modes.append(("loop (1 module run per item)", "loop", args.loop_count, False))
            for label, prefix, count, bulk in modes:
                path = Path(workdir) / ("%s.yml" % prefix)
                path.write_text(yaml.safe_dump(plays(node.admin_url, prefix, count, bulk)))
                first, changed_first = run(path, workdir)
                second, changed_second = run(path, workdir)
                rows.append((label, count, first, second, changed_first, changed_second))
    print("%-30s %6s %12s %14s" % ("mode", "items", "first run", "no-change run"))
    for label, count, first, second, _c1, _c2 in rows:
        print("%-30s %6d %11.1fs %13.1fs" % (label, count, first, second))
    if len(rows) == 2:
        print("loop/bulk no-change ratio: %.1fx" % (rows[1][3] / rows[0][3]))
    if any(c2 for *_rest, c2 in rows):
        raise SystemExit("a second run reported changes: the modules are not idempotent")


if __name__ == "__main__":
    main()
