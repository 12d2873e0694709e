"""Every module's EXAMPLES, run as they are written (admin_url pointed at the simulator)."""

import yaml
from ansible_collections.ai_gateway.kong.plugins.modules import (
    kong_consumer,
    kong_declarative,
    kong_info,
    kong_key_auth,
    kong_plugin,
    kong_route,
    kong_service,
    kong_target,
    kong_target_health,
    kong_upstream,
)

DOC_URL = "http://127.0.0.1:8001"
VARS = {"vault_alice_api_key": "alice-example-key-0123456789"}


def examples(module, admin_url):
    return yaml.safe_load(module.EXAMPLES.replace(DOC_URL, admin_url))


def play_vars(tasks):
    return [{"name": "Example variables", "ansible.builtin.set_fact": VARS}, *tasks]


def test_entity_module_examples_run_in_order(kong_postgres, playbook):
    url = kong_postgres.admin_url
    # The order a playbook would use: what a later example refers to exists by then.
    modules = (
        kong_service,
        kong_route,
        kong_consumer,
        kong_key_auth,
        kong_plugin,
        kong_upstream,
        kong_target,
        kong_target_health,
        kong_info,
    )
    tasks = [task for module in modules for task in examples(module, url)]
    results = playbook(url, play_vars(tasks))
    assert len(results) == len(tasks) + 1
    assert not [r for r in results if r.get("failed")]


def test_declarative_examples_run(kong_dbless, playbook):
    # The `src` example reads a file on the node (/etc/kong/kong.yml), which a test does not own.
    tasks = [
        t
        for t in examples(kong_declarative, kong_dbless.admin_url)
        if "src" not in t["ai_gateway.kong.kong_declarative"]
    ]
    results = playbook(kong_dbless.admin_url, play_vars(tasks))
    assert results[1]["changed"] is True
