#!/usr/bin/python
# ruff: noqa: E402 - Ansible modules import after their DOCUMENTATION strings
# -*- coding: utf-8 -*-
# Copyright: ai-gateway project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_target_health
short_description: Mark a target of a Kong upstream healthy or unhealthy by hand
version_added: 2.0.0
description:
  - Sets the health of a target on the Kong node at O(admin_url) with Kong's manual health
    endpoints (C(PUT /upstreams/{upstream}/targets/{target}/healthy|unhealthy)), for example to
    take an llm_api node out of the balancer before restarting it, then to put it back.
  - Reads C(GET /upstreams/{upstream}/health) first, so a target that already has the health
    asked for is reported unchanged and nothing is sent.
  - Health is state of each Kong node, not configuration. With a database, Kong passes the change
    on to the other nodes of the cluster at their next poll (C(db_update_frequency), 5 s by
    default); in DB-less mode it stays on the node. Run the task against every gateway (for
    example with C(delegate_to) or a loop over their Admin URLs) to act on all at once.
  - Kong accepts manual health only for an upstream whose health checks are on (active, or
    passive with a failure threshold); otherwise the module fails with Kong's message. Active
    checks may later override a manual state.
  - Works in DB-less mode too.
author:
  - ai-gateway project (@ai-gateway)
extends_documentation_fragment:
  - ai_gateway.kong.kong
attributes:
  check_mode:
    support: full
    description: Reads the health and reports whether it would change, without writing.
  diff_mode:
    support: full
    description: Shows the target's health before and after.
  action_group:
    description: >-
      Use C(group/ai_gateway.kong.kong) in C(module_defaults) to set the connection options once.
    support: full
    membership:
      - ai_gateway.kong.kong
options:
  upstream:
    description:
      - Name or id of the upstream.
    type: str
    required: true
  target:
    description:
      - The target, C(host:port) as declared (any spelling of the same address), or its id.
    type: str
    required: true
  address:
    description:
      - One address (C(ip:port)) of a target whose host name resolves to several, to mark only
        that one. By default every address of the target is marked.
    type: str
  health:
    description:
      - The health to set.
    type: str
    choices: [healthy, unhealthy]
    required: true
"""

EXAMPLES = r"""
- name: Take an llm_api node out of the balancer before restarting it
  ai_gateway.kong.kong_target_health:
    admin_url: http://127.0.0.1:8001
    upstream: llm-api.upstream
    target: 10.0.0.11:8080
    health: unhealthy

- name: Put it back
  ai_gateway.kong.kong_target_health:
    admin_url: http://127.0.0.1:8001
    upstream: llm-api.upstream
    target: 10.0.0.11:8080
    health: healthy
"""

RETURN = r"""
target:
  description: The target as Kong stores it.
  returned: success
  type: dict
  sample: {id: 6b7a1c2d-3e4f-4a5b-8c9d-0e1f2a3b4c5d, target: 10.0.0.12:8080, weight: 100}
health_before:
  description: >-
    The health Kong reported before the change - V(HEALTHY), V(UNHEALTHY), V(HEALTHCHECKS_OFF),
    V(DNS_ERROR), or null when the node has no balancer for the upstream yet.
  returned: success
  type: str
  sample: HEALTHY
health:
  description: The health of the target after the task (V(HEALTHY) or V(UNHEALTHY)).
  returned: success
  type: str
  sample: UNHEALTHY
node_id:
  description: Id of the Kong node that answered.
  returned: success
  type: str
  sample: 5b0d41a6-2e0b-4f84-9fb5-1f8ed3f5c0b0
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ai_gateway.kong.plugins.module_utils.kong import (
    KongClient,
    KongError,
    kong_argument_spec,
    segment,
)
from ansible_collections.ai_gateway.kong.plugins.module_utils.masking import Masker
from ansible_collections.ai_gateway.kong.plugins.module_utils.targets import normalize_target


def find_target(rows, wanted):
    """The /health row of a target given by id or by address (any spelling)."""
    try:
        address = normalize_target(wanted, default_port=None)
    except ValueError:
        address = None
    for row in rows:
        if row.get("id") == wanted or (address and row.get("target") == address):
            return row
    return None


def address_health(row, address):
    """The health of one address of a /health row (None when Kong does not list it)."""
    wanted = normalize_target(address)
    for entry in (row.get("data") or {}).get("addresses") or []:
        if normalize_target("%s:%s" % (entry.get("ip"), entry.get("port"))) == wanted:
            return entry.get("health")
    return None


def main():
    spec = kong_argument_spec()
    spec.update(
        upstream=dict(type="str", required=True),
        target=dict(type="str", required=True),
        address=dict(type="str"),
        health=dict(type="str", choices=["healthy", "unhealthy"], required=True),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    params = module.params
    masker = Masker.from_module(module)
    client = KongClient.from_module(module, masker)
    if params["address"]:
        try:
            normalize_target(params["address"])
        except ValueError as e:
            module.fail_json(msg="address %r: %s; give it as ip:port" % (params["address"], e))
    want = params["health"].upper()
    upstream = segment(params["upstream"])
    try:
        node = client.node()
        if client.get("/upstreams/%s" % upstream) is None:
            module.fail_json(msg="upstream %r not found in Kong" % params["upstream"])
        rows = client.list("/upstreams/%s/health" % upstream)
        row = find_target(rows, params["target"])
        if row is None:
            module.fail_json(
                msg="target %r not found in upstream %r (declare it with kong_target first)"
                % (params["target"], params["upstream"])
            )
        before = address_health(row, params["address"]) if params["address"] else row.get("health")
        if before == "HEALTHCHECKS_OFF":
            module.fail_json(
                msg="health checks are off for target %r of upstream %r (Kong reports "
                "HEALTHCHECKS_OFF: the upstream has no active checks nor passive failure "
                "thresholds, or the target's weight is 0); Kong accepts no manual health then"
                % (params["target"], params["upstream"])
            )
        changed = before != want
        if changed and not module.check_mode:
            path = "/upstreams/%s/targets/%s" % (upstream, row["id"])
            if params["address"]:
                path += "/%s" % segment(params["address"])
            client.put("%s/%s" % (path, params["health"]), None)
    except KongError as e:
        masker.fail(e)
    target = dict((k, v) for k, v in row.items() if k not in ("health", "data"))
    module.exit_json(
        changed=changed,
        target=masker.returned(target),
        health_before=before,
        health=want,
        node_id=node.get("node_id"),
        diff={"before": {"health": before}, "after": {"health": want}},
    )


if __name__ == "__main__":
    main()
