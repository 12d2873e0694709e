"""The rolling update's Kong tasks keep the Admin API token out of the output at -vvv.

playbooks/tasks/kong_target_out.yml and kong_target_in.yml run for real, on local hosts, against
simulator nodes: two gateways on one database, or one DB-less gateway whose declarative file holds
a consumer's key. The Admin API token (kong_gateway_admin_headers) and the key must appear
nowhere in the -vvv --diff output, and the node must have been taken out (weight 0 seen by every
gateway) and put back at its weight with its tags.
"""

from __future__ import annotations

import contextlib
import pathlib
import sys
from collections.abc import Iterator

import yaml
from conftest import ROOT, RunPlaybook
from kongsim.testing import http, kong_node, postgres_server

TOKEN = "roll-admin-token-s3cret"
KEY = "roll-consumer-key-s3cret"
UPSTREAM = "llm-api.upstream"

# The tasks file's last task stops llm_api with systemd, which local hosts do not have: it may
# fail, nothing after it in the file talks to Kong.
PLAY = """
- name: Take the node out and put it back
  hosts: llm1
  gather_facts: false
  vars:
    _llm_api_gateways: "{{ groups['gateways'] }}"
  tasks:
    - name: Take it out
      ansible.builtin.include_tasks:
        file: tasks/kong_target_out.yml
        apply:
          ignore_errors: true
    - name: Put it back
      ansible.builtin.include_tasks: tasks/kong_target_in.yml
"""


def upstream(weight: int) -> dict:
    return {
        "name": UPSTREAM,
        "tags": ["ai-gateway"],
        "healthchecks": {"passive": {"unhealthy": {"tcp_failures": 3}}},
        "targets": [
            {"target": f"127.0.0.1:{port}", "weight": weight, "tags": ["ai-gateway"]}
            for port in (18080, 18081)
        ],
    }


def gateway(node, database: str, **more) -> dict:
    return {
        "kong_gateway_admin_url": node.admin_url,
        "kong_gateway_database": database,
        "kong_gateway_admin_headers": {"X-Admin-Token": TOKEN},
        **more,
    }


def run(tmp_path: pathlib.Path, ansible_playbook: RunPlaybook, gateways: dict) -> str:
    # The tasks find their templates next to the playbook and the roles beside it.
    play_dir = tmp_path / "playbooks"
    play_dir.mkdir()
    (play_dir / "templates").symlink_to(ROOT / "playbooks" / "templates")
    (play_dir / "tasks").symlink_to(ROOT / "playbooks" / "tasks")
    (tmp_path / "roles").symlink_to(ROOT / "roles")
    (play_dir / "roll.yml").write_text(PLAY)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {
        "all": {
            "vars": local,
            "children": {
                "gateways": {"hosts": gateways},
                "llm_api": {
                    "hosts": {
                        "llm1": {"llm_api_listen_port": 18080, "kong_gateway_target_weight": 70},
                        "llm2": {"llm_api_listen_port": 18081, "kong_gateway_target_weight": 70},
                    }
                },
            },
        }
    }
    done = ansible_playbook(inventory, play_dir / "roll.yml", "-vvv", "--diff")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    return out


def took_out_on(out: str) -> list[str]:
    """The gateways the wait-until-out task passed on."""
    section = out.split("TASK [Wait until every gateway has stopped sending the node traffic]")[1]
    section = section.split("TASK [")[0]
    return sorted(
        line.split("(item=")[1].split(")")[0]
        for line in section.splitlines()
        if line.startswith("ok: ")
    )


def targets(admin_url: str) -> list[tuple]:
    body = http("GET", admin_url + f"/upstreams/{UPSTREAM}/targets").json()
    return sorted((t["target"], t["weight"], t.get("tags")) for t in body["data"])


@contextlib.contextmanager
def database_gateways() -> Iterator[list]:
    with postgres_server() as pg:
        conf = {**pg.kong_conf(pg.create_database()), "db_update_frequency": 0.5}
        with kong_node(conf) as gw1, kong_node(conf, bootstrap=False) as gw2:
            body = upstream(70)
            targets_ = body.pop("targets")
            http("POST", gw1.admin_url + "/upstreams", json=body)
            for target in targets_:
                http("POST", gw1.admin_url + f"/upstreams/{UPSTREAM}/targets", json=target)
            yield [gw1, gw2]


def test_database_gateways_take_the_node_out_and_back_without_the_token(
    tmp_path: pathlib.Path, ansible_playbook: RunPlaybook
) -> None:
    with database_gateways() as (gw1, gw2):
        out = run(
            tmp_path,
            ansible_playbook,
            {"gw1": gateway(gw1, "postgres"), "gw2": gateway(gw2, "postgres")},
        )
        assert TOKEN not in out
        assert took_out_on(out) == ["gw1", "gw2"]
        assert '"weight": 0' in out  # the diff of the write
        for node in (gw1, gw2):
            assert targets(node.admin_url) == [
                ("127.0.0.1:18080", 70, ["ai-gateway"]),
                ("127.0.0.1:18081", 70, ["ai-gateway"]),
            ]


def test_a_dbless_gateway_takes_the_node_out_and_back_without_secrets(
    tmp_path: pathlib.Path, ansible_playbook: RunPlaybook
) -> None:
    config = {
        "_format_version": "3.0",
        "upstreams": [upstream(70)],
        "consumers": [{"username": "alice", "keyauth_credentials": [{"key": KEY}]}],
    }
    path = tmp_path / "kong.yml"
    path.write_text(yaml.safe_dump(config))
    with kong_node({"database": "off", "declarative_config": str(path)}) as gw1:
        out = run(
            tmp_path,
            ansible_playbook,
            {"gw1": gateway(gw1, "off", kong_gateway_declarative_config_path=str(path))},
        )
        assert TOKEN not in out
        assert KEY not in out
        assert took_out_on(out) == ["gw1"]
        assert targets(gw1.admin_url) == [
            ("127.0.0.1:18080", 70, ["ai-gateway"]),
            ("127.0.0.1:18081", 70, ["ai-gateway"]),
        ]
