"""Integration fixtures: the Kong simulator as real processes, and real ansible-playbook runs.

Each playbook runs as a subprocess on localhost (connection local) with the collection resolved
from the repository (ansible.cfg: collections_path = ./collections), and its results are read
from Ansible's json stdout callback.
"""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kongsim.testing import KongNode, http, postgres_server

REPO = Path(__file__).resolve().parents[4]
# `collections/` holds ansible_collections/ai_gateway/kong -> ../../ai_gateway.
COLLECTIONS = Path(__file__).resolve().parents[3]
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))


@pytest.fixture(scope="session")
def kong_postgres():
    """One simulator node on its own PostgreSQL database (tests use distinct names and tags)."""
    with postgres_server() as pg:
        dbname = pg.create_database()
        with KongNode({"database": "postgres", **pg.kong_conf(dbname)}) as node:
            yield node


@pytest.fixture(scope="session")
def kong_dbless():
    with KongNode({"database": "off"}) as node:
        yield node


class Admin:
    """Direct Admin API reads, to check what a playbook did to Kong."""

    def __init__(self, url):
        self.url = url

    def get(self, path):
        response = http("GET", self.url + path)
        if response.status == 404:
            return None
        assert response.status == 200, response.text
        return response.json()

    def send(self, method, path, body=None):
        response = http(method, self.url + path, json=body)
        assert response.status < 300, response.text
        return response.json() if response.body else None


def run_playbook(
    tmp_path, name, admin_url, tasks, check=False, json_output=True, args=(), defaults=None
):
    """One ansible-playbook run of `tasks` on localhost: the CompletedProcess (text output).

    `json_output` selects Ansible's json stdout callback (the results of every task on stdout),
    else the default callback, whose text is what a user reads (with `args` such as -vvv).
    `defaults` are more module_defaults of the collection's modules (admin_headers, ...).
    """
    defaults = dict(defaults or {}, admin_url=admin_url)
    play = [
        {
            "name": "Integration",
            "hosts": "localhost",
            "gather_facts": False,
            "module_defaults": {"group/ai_gateway.kong.kong": defaults},
            "tasks": tasks,
        }
    ]
    path = tmp_path / ("%s.yml" % name)
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        # No module file copied to a temp dir per task: the module goes over stdin.
        ANSIBLE_PIPELINING="true",
    )
    if json_output:
        env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.json"
    cmd = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        "ansible_python_interpreter=%s" % sys.executable,
        "--diff",
        *args,
        str(path),
    ]
    if check:
        cmd.append("--check")
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)


@pytest.fixture
def playbook(tmp_path):
    """run(admin_url, tasks, check=False) -> the result of each task, in order."""
    counter = iter(range(1000))

    def run(admin_url, tasks, check=False):
        proc = run_playbook(tmp_path, "play%d" % next(counter), admin_url, tasks, check)
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError("ansible-playbook: %s\n%s" % (proc.stdout, proc.stderr)) from None
        results = [task["hosts"]["localhost"] for task in report["plays"][0]["tasks"]]
        # Tasks that are meant to fail say so with ignore_errors, which keeps the exit code 0.
        assert proc.returncode == 0, json.dumps(results, indent=2) + proc.stderr
        return results

    return run


@pytest.fixture
def playbook_run(tmp_path):
    """run(name, admin_url, tasks, **options) -> the CompletedProcess of run_playbook()."""
    return functools.partial(run_playbook, tmp_path)


@pytest.fixture(scope="session")
def admin_postgres(kong_postgres):
    return Admin(kong_postgres.admin_url)


@pytest.fixture(scope="session")
def admin_dbless(kong_dbless):
    return Admin(kong_dbless.admin_url)
