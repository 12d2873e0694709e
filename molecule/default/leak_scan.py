#!/usr/bin/env python3
"""Leak scan of the converged `default` scenario (issue #11): no secret in any output.

Runs, against the scenario's inventory, the playbooks a user runs and the ways they fail:

- site.yml (on the converged scenario: the idempotence check, every host must report changed=0),
  site.yml --check --diff with a changed rate limit and route path, verify.yml;
- failing runs: Kong's Admin API unreachable, Kong rejecting a plugin's configuration, a wrong
  shared secret and a PostgreSQL password that Kong's configuration cannot carry (both refused by
  preflight), each at -v and -vvv (the passing runs at -vvv only: at -vvv Ansible prints
  everything it prints at -v, plus module arguments and connection details);

then counts every known secret (read from the JSON file given as argument: {name: value}) in
each run's output, in the values the playbooks registered (molecule/default/leak_dump.yml), and
in Kong's, PostgreSQL's and llm_api's logs in the containers (the whole journal, /var/log and
Kong's log directory). Prints one line per source with the counts; exits 1 when any count is not
zero, when the site.yml run changed anything, when the check-mode run does not show the changed
non-secret fields or reports any other change, when a run left no registered values of a host,
or when a failing run does not fail with its clear message.

    leak_scan.py SECRETS_JSON   # in Molecule's environment (MOLECULE_* variables), with
                                # LEAK_SCAN_HOSTS and LEAK_SCAN_GATEWAYS: the inventory's
                                # hosts and its gateways, as JSON lists
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "shared" / "files"))
from changed_tasks import changed_tasks  # noqa: E402 (test equipment beside this scenario)

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
INVENTORY = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
PLAYBOOKS = PROJECT / "playbooks"
CONTAINER_LOGS = (
    "journalctl --no-pager -o cat 2>/dev/null; "
    "find /var/log /usr/local/kong/logs -type f -size -20M 2>/dev/null | xargs -r cat 2>/dev/null"
)
# The check-mode run changes these non-secret fields: its diff must show them, and these tasks
# (on the gateways) are the only ones it may report as changed.
CHANGED_LIMIT = 59
CHANGED_PATH = "/llm-leak-scan/v1"
CHECK_CHANGES = {
    "kong_gateway : Declare the route",
    "kong_gateway : Declare the plugins (key-auth, request-transformer, rate limits)",
}


def run_playbook(name: str, playbook: Path, args: list[str], dump: Path | None) -> dict:
    """One ansible-playbook run: its rc and combined output (and registered values in dump)."""
    argv = ["ansible-playbook", "-i", str(INVENTORY)]
    if dump is not None:
        dump.mkdir()
        argv += [
            str(HERE / "leak_dump.yml"),
            "-e",
            json.dumps({"leak_playbook": str(playbook), "leak_dump_dir": str(dump)}),
        ]
    else:
        argv.append(str(playbook))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    start = time.monotonic()
    proc = subprocess.run(  # noqa: S603 (fixed argv)
        argv + args, env=env, capture_output=True, text=True, check=False
    )
    return {
        "name": name,
        "rc": proc.returncode,
        "output": proc.stdout + proc.stderr,
        "seconds": time.monotonic() - start,
    }


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of a run: {host: {"ok": n, "changed": n, ...}}."""
    found = re.findall(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", output, re.MULTILINE)
    return {host: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", rest)} for host, rest in found}


def container_logs(container: str) -> str:
    proc = subprocess.run(  # noqa: S603
        ["podman", "exec", container, "sh", "-c", CONTAINER_LOGS],  # noqa: S607
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    return proc.stdout


def counts(text: str, secrets: dict[str, str]) -> dict[str, int]:
    return {name: text.count(value) for name, value in secrets.items()}


def main() -> int:
    secrets = {k: str(v) for k, v in json.loads(Path(sys.argv[1]).read_text()).items()}
    if any(len(v) < 8 for v in secrets.values()):
        print("leak scan: every secret must have 8 characters or more", file=sys.stderr)
        return 1
    wrong_secret = "leak-scan-wrong-secret-$(kong.log.err())"  # noqa: S105 (test value)
    bad_pg_password = "leak-scan-pg#password"  # noqa: S105 (test value)
    secrets_all = dict(secrets, wrong_shared_secret=wrong_secret, bad_pg_password=bad_pg_password)
    site, verify = PLAYBOOKS / "site.yml", PLAYBOOKS / "verify.yml"
    gateway, kong = PLAYBOOKS / "gateway.yml", PLAYBOOKS / "kong.yml"
    check_vars = json.dumps(
        {
            "kong_gateway_default_rate_limit": {"minute": CHANGED_LIMIT},
            "kong_gateway_route_paths": ["/llm/v1", CHANGED_PATH],
        }
    )
    gateway_url = os.environ.get("LEAK_SCAN_GATEWAY_URL", "https://localhost:38443") + "/llm/v1"
    failing = [
        # (name, playbook, extra args, what the failure must say)
        (
            "admin-api-unreachable",
            gateway,
            ["-e", "kong_gateway_admin_url=http://127.0.0.1:9"],
            "127.0.0.1:9",
        ),
        (
            "plugin-rejected",
            gateway,
            ["-e", json.dumps({"kong_gateway_rate_limit_extra_config": {"policy": "leak-scan"}})],
            "policy",
        ),
        (
            "wrong-shared-secret",
            gateway,
            ["-e", json.dumps({"kong_gateway_llm_api_secret": wrong_secret})],
            "kong_gateway_llm_api_secret must be",
        ),
        (
            "pg-password-breaks-kong-conf",
            kong,
            ["-e", json.dumps({"kong_pg_password": bad_pg_password})],
            "KONG_PG_PASSWORD",
        ),
    ]
    problems: list[str] = []
    rows: list[tuple[str, dict[str, int]]] = []
    with tempfile.TemporaryDirectory(prefix="leak-scan-") as tmp:
        runs = [
            run_playbook("site.yml -vvv", site, ["-vvv"], Path(tmp, "site")),
            run_playbook(
                "site.yml --check --diff -vvv",
                site,
                ["--check", "--diff", "-vvv", "-e", check_vars],
                Path(tmp, "check"),
            ),
            run_playbook(
                "verify.yml -vvv",
                verify,
                ["-vvv", "-e", json.dumps({"verify_gateway_url": gateway_url})],
                Path(tmp, "verify"),
            ),
        ]
        for run in runs:
            if run["rc"] != 0:
                problems.append(f"{run['name']} failed (rc {run['rc']}): {run['output'][-1500:]}")
        # Idempotence: site.yml again on the converged scenario changes nothing, on any host.
        totals = recap(runs[0]["output"])
        changed = {h: t.get("changed") for h, t in totals.items() if t.get("changed") != 0}
        hosts = set(json.loads(os.environ["LEAK_SCAN_HOSTS"]))
        if not totals or changed or hosts - set(totals):
            problems.append(
                f"site.yml on the converged scenario is not idempotent: changed {changed}, "
                f"no recap for {sorted(hosts - set(totals))}"
            )
        for name in ("site", "check", "verify"):
            missing = sorted(hosts - {p.stem for p in Path(tmp, name).glob("*.json")})
            if missing:
                problems.append(f"the {name} run left no registered values of {missing}")
        check = runs[1]["output"]
        if f'"minute": {CHANGED_LIMIT}' not in check or CHANGED_PATH not in check:
            problems.append("the --check --diff diff misses the changed rate limit or route")
        # Check mode is accurate: it reports exactly the two changes it was given (so the scenario
        # needs no other --check run to prove that check mode reports no spurious change).
        would_change = changed_tasks(check.splitlines())
        gateways = set(json.loads(os.environ["LEAK_SCAN_GATEWAYS"]))
        if set(would_change) != CHECK_CHANGES or set().union(*would_change.values()) - gateways:
            problems.append(f"the --check --diff run reports other changes: {would_change}")
        for name, playbook, args, message in failing:
            for level in ("-v", "-vvv"):
                run = run_playbook(f"{name} {level}", playbook, [level, *args], None)
                runs.append(run)
                if run["rc"] == 0 or message not in run["output"]:
                    problems.append(
                        f"{run['name']}: expected a failure saying {message!r}, "
                        f"got rc {run['rc']}: {run['output'][-1500:]}"
                    )
        for run in runs:
            source = f"output of {run['name']} ({run['seconds']:.0f} s)"
            rows.append((source, counts(run["output"], secrets_all)))
        for dump in sorted(Path(tmp).glob("*/*.json")):
            source = f"registered values of {dump.parent.name} on {dump.stem}"
            rows.append((source, counts(dump.read_text(), secrets_all)))
    for container in ("e2e-gateway", "e2e-llm"):
        source = f"logs in {container} (journal, /var/log, Kong's logs)"
        rows.append((source, counts(container_logs(container), secrets_all)))

    total = 0
    for source, found in rows:
        total += sum(found.values())
        detail = ", ".join(f"{k}={v}" for k, v in found.items())
        print(f"leak scan: {sum(found.values())} in {source}: {detail}")
    print(f"leak scan: {total} occurrences of {len(secrets_all)} secrets in {len(rows)} sources")
    if total:
        problems.append(f"{total} occurrences of secrets (see the counts above)")
    for problem in problems:
        print(f"leak scan FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
