"""playbooks/site.yml refuses bad inventories before anything changes, naming the variable.

Each case writes a small inventory of local hosts and runs the real site.yml in check mode: the
first play ("Check the inventory before anything changes") must fail with a message naming the
variable to fix, and no task may have run in a later play.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIRST_PLAY = "Check the inventory before anything changes"

GOOD_LLM = {"llm1": {"llm_api_listen_host": "10.0.2.21", "llm_api_listen_port": 8080}}


def inventory(llm_hosts: dict, gateway_vars: dict | None = None) -> dict:
    return {
        "all": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
            "children": {
                "gateways": {"hosts": {"gw1": gateway_vars or {}}},
                "llm_api": {"hosts": llm_hosts},
            },
        }
    }


CASES = {
    "llm_api group without hosts": (
        inventory({}),
        ["kong_gateway_upstream_targets is empty", "'llm_api'"],
    ),
    "a redis policy without a Redis host": (
        inventory(GOOD_LLM, {"kong_gateway_rate_limit_policy": "redis"}),
        ["kong_gateway_redis_host is empty"],
    ),
    "an upstream name that is an IP address": (
        inventory(GOOD_LLM, {"kong_gateway_upstream_name": "10.1.2.3"}),
        ["kong_gateway_upstream_name '10.1.2.3' is not valid"],
    ),
    "a target without a port (inventory)": (
        inventory({"llm1": {"llm_api_listen_host": "10.0.2.21", "llm_api_listen_port": ""}}),
        ["kong_gateway_upstream_targets", "not 10.0.2.21:"],
    ),
    "a target without a port (explicit)": (
        inventory(GOOD_LLM, {"kong_gateway_upstream_targets": [{"target": "llm.example"}]}),
        ["kong_gateway_upstream_targets", "not llm.example "],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_first(case: str, tmp_path: pathlib.Path) -> None:
    inv, expected = CASES[case]
    (tmp_path / "hosts.json").write_text(json.dumps(inv))
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="default",
        ANSIBLE_NOCOLOR="true",
    )
    run = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
            "-i",
            str(tmp_path / "hosts.json"),
            str(ROOT / "playbooks" / "site.yml"),
            "--check",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = run.stdout
    assert run.returncode != 0, out
    plays = [line for line in out.splitlines() if line.startswith("PLAY [")]
    assert len(plays) == 1, plays
    assert FIRST_PLAY in plays[0], plays
    assert "changed:" not in out
    failure = next(line for line in out.splitlines() if "FAILED!" in line)
    for text in expected:
        assert text in failure, failure
