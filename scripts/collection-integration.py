#!/usr/bin/env python3
"""Runs the collection's `ansible-test integration` targets against the Kong simulator.

    scripts/collection-integration.py COLLECTION_COPY [ansible-test options and targets]

COLLECTION_COPY is an ansible_collections/ai_gateway/kong/ copy of the collection (ansible-test
runs only from there; scripts/test-collection.sh makes it). This starts a PostgreSQL server, one
simulator node on it and one DB-less node, writes their Admin API URLs to the copy's
tests/integration/integration_config.yml (kong_postgres_admin_url, kong_dbless_admin_url: every
target's variables), runs ansible-test on this interpreter and stops everything.
"""

import subprocess
import sys
from pathlib import Path

import yaml
from kongsim.testing import KongNode, postgres_server


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    copy = Path(sys.argv[1])
    with (
        postgres_server() as pg,
        KongNode({"database": "postgres", **pg.kong_conf(pg.create_database())}) as kong_pg,
        KongNode({"database": "off"}) as kong_off,
    ):
        config = {
            "kong_postgres_admin_url": kong_pg.admin_url,
            "kong_dbless_admin_url": kong_off.admin_url,
        }
        (copy / "tests" / "integration" / "integration_config.yml").write_text(
            yaml.safe_dump(config)
        )
        argv = ["ansible-test", "integration", "--local", "--python", "3.11", "--color", "no"]
        return subprocess.call([*argv, *sys.argv[2:]], cwd=copy)  # noqa: S603


if __name__ == "__main__":
    sys.exit(main())
