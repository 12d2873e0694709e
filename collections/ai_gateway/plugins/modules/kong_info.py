#!/usr/bin/python
# ruff: noqa: E402 - Ansible modules import after their DOCUMENTATION strings
# -*- coding: utf-8 -*-
# Copyright: ai-gateway project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_info
short_description: Read Kong Gateway's version, mode, node status and entities
version_added: 1.0.0
description:
  - Returns Kong's version and edition, its database mode (V(postgres), or V(off) for DB-less),
    the node status (C(GET /status)) and, optionally, entities filtered by tags and the health
    of upstreams' targets as this node's balancer sees it.
  - Secrets in the returned entities (keys, certificates' private keys, passwords, tokens, secret
    header values; see O(secret_headers)) are masked.
  - A kind of entity whose endpoint Kong does not have (for example C(key-auths) when Kong does
    not load the key-auth plugin) fails with Kong's message rather than returning an empty list.
author:
  - ai-gateway project (@ai-gateway)
extends_documentation_fragment:
  - ai_gateway.kong.kong
attributes:
  check_mode:
    support: full
    description: The module only reads.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
  action_group:
    description: >-
      Use C(group/ai_gateway.kong.kong) in C(module_defaults) to set the connection options once.
    support: full
    membership:
      - ai_gateway.kong.kong
options:
  entities:
    description:
      - Kinds of entities to list. None lists none (only node information is returned).
      - V(targets) lists the targets of every upstream (Kong has no listing of all targets).
    type: list
    elements: str
    choices:
      - services
      - routes
      - consumers
      - plugins
      - key-auths
      - upstreams
      - targets
      - certificates
      - ca_certificates
    default: []
  tags:
    description:
      - List only entities that carry all these tags (at most 5, Kong's limit).
    type: list
    elements: str
    default: []
  upstream_health:
    description:
      - Upstreams (names or ids) whose targets to return with their health on this node
        (C(GET /upstreams/{upstream}/health)), for example to wait until a node's balancer has
        taken a target's new weight.
      - Health is state of each Kong node; ask every node to know what each one does.
    type: list
    elements: str
    default: []
    version_added: 2.1.0
"""

EXAMPLES = r"""
- name: Read Kong's version and mode
  ai_gateway.kong.kong_info:
    admin_url: http://127.0.0.1:8001
  register: kong

- name: Fail early on a DB-less node
  ansible.builtin.assert:
    that: kong.database != 'off'
    fail_msg: "Kong {{ kong.version }} runs DB-less: use ai_gateway.kong.kong_declarative"

- name: List what this project owns
  ai_gateway.kong.kong_info:
    admin_url: http://127.0.0.1:8001
    entities: [services, routes, plugins]
    tags: [ai-gateway]
  register: owned

- name: Read how this node sees the upstream's targets (weight and health of each)
  ai_gateway.kong.kong_info:
    admin_url: http://127.0.0.1:8001
    upstream_health: [llm-api.upstream]
  register: kong
"""

RETURN = r"""
version:
  description: Kong's version.
  returned: always
  type: str
  sample: 3.9.3
edition:
  description: Kong's edition (V(community) for OSS).
  returned: always
  type: str
  sample: community
database:
  description: Kong's C(database) setting; V(off) means DB-less.
  returned: always
  type: str
  sample: postgres
node:
  description: Kong's hostname, node id, the plugins it has and the plugins in use (from C(GET /)).
  returned: always
  type: dict
  sample:
    hostname: gw1
    node_id: 5b0d41a6-2e0b-4f84-9fb5-1f8ed3f5c0b0
    plugins_available: [key-auth, rate-limiting]
    plugins_in_use: [key-auth]
status:
  description: The node status as C(GET /status) returns it (C(configuration_hash) when DB-less).
  returned: always
  type: dict
  sample: {database: {reachable: true}, server: {connections_active: 2}}
entities:
  description: For each kind in O(entities), the entities as Kong stores them.
  returned: always
  type: dict
  sample: {services: [{name: llm-api, host: 127.0.0.1, port: 8080}]}
upstream_health:
  description:
    - For each upstream in O(upstream_health), its targets as Kong stores them with C(health)
      (V(HEALTHY), V(UNHEALTHY), V(HEALTHCHECKS_OFF), V(DNS_ERROR)) and C(data) (the addresses)
      as this node's balancer sees them.
    - V(null) for an upstream this node does not have.
  returned: always
  type: dict
  sample:
    llm-api.upstream:
      - {target: 10.0.0.12:8080, weight: 0, health: HEALTHCHECKS_OFF, data: {addresses: []}}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ai_gateway.kong.plugins.module_utils.kong import (
    KongClient,
    KongError,
    kong_argument_spec,
    segment,
)
from ansible_collections.ai_gateway.kong.plugins.module_utils.masking import Masker


def main():
    spec = kong_argument_spec()
    spec.update(
        entities=dict(
            type="list",
            elements="str",
            default=[],
            choices=[
                "services",
                "routes",
                "consumers",
                "plugins",
                "key-auths",
                "upstreams",
                "targets",
                "certificates",
                "ca_certificates",
            ],
        ),
        tags=dict(type="list", elements="str", default=[]),
        upstream_health=dict(type="list", elements="str", default=[]),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    masker = Masker.from_module(module)
    client = KongClient.from_module(module, masker)
    try:
        node = client.node()
        status = client.read("/status")
        entities = {}
        for kind in module.params["entities"]:
            if kind == "targets":
                # Kong has no /targets listing (endpoints.disable): per upstream.
                entities[kind] = [
                    target
                    for upstream in client.list("/upstreams")
                    for target in client.list("/upstreams/%s/targets" % upstream["id"])
                    if set(module.params["tags"]) <= set(target.get("tags") or [])
                ]
            else:
                entities[kind] = client.list("/%s" % kind, tags=module.params["tags"])
        health = {}
        for name in module.params["upstream_health"]:
            path = "/upstreams/%s" % segment(name)
            health[name] = client.list(path + "/health") if client.get(path) else None
    except KongError as e:
        masker.fail(e)
    plugins = node.get("plugins") or {}
    result = dict(
        version=node.get("version"),
        edition=node.get("edition"),
        database=client.database(),
        node=dict(
            hostname=node.get("hostname"),
            node_id=node.get("node_id"),
            plugins_available=sorted(plugins.get("available_on_server") or {}),
            plugins_in_use=plugins.get("enabled_in_cluster"),
        ),
        status=status,
        entities=entities,
        upstream_health=health,
    )
    module.exit_json(changed=False, **masker.returned(result))


if __name__ == "__main__":
    main()
