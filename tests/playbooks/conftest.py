"""Shared by the playbook tests: run a real playbook against an inventory of local hosts."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

RunPlaybook = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def ansible_playbook(tmp_path: pathlib.Path) -> RunPlaybook:
    """`ansible_playbook(inventory, playbook, *options)`: writes the inventory (a dict) to
    hosts.json in the test's tmp_path and runs this virtualenv's ansible-playbook with the
    project's ansible.cfg and the default callback, uncoloured; the completed process (text)."""

    def run(inventory: dict[str, Any], playbook: pathlib.Path, *options: str) -> Any:
        hosts = tmp_path / "hosts.json"
        hosts.write_text(json.dumps(inventory))
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
            ANSIBLE_STDOUT_CALLBACK="default",
            ANSIBLE_NOCOLOR="true",
        )
        command = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
        return subprocess.run(
            [command, "-i", str(hosts), str(playbook), *options],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    return run
