#!/usr/bin/python
# ruff: noqa: E402 - Ansible modules import after their DOCUMENTATION strings
# -*- coding: utf-8 -*-
# Copyright: ai-gateway project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_upstream
short_description: Manage Kong Gateway upstreams (load balancers with health checks)
version_added: 1.1.0
description:
  - Create, update and delete L(Kong upstreams,https://docs.konghq.com/gateway/latest/key-concepts/upstreams/)
    through the Admin API, identified by O(name) and written with C(PUT /upstreams/{name}).
  - A service whose host is the upstream's name is balanced over the upstream's targets
    (M(ai_gateway.kong.kong_target)).
  - O(healthchecks) is merged into Kong's default record, so only the values that differ need to
    be given; options that are not given take Kong's schema defaults.
  - Kong refuses a name that is an IP address or carries a port.
author:
  - ai-gateway project (@ai-gateway)
extends_documentation_fragment:
  - ai_gateway.kong.kong
  - ai_gateway.kong.kong.entity
  - ai_gateway.kong.kong.attributes
options:
  name:
    description:
      - Name of the upstream, a hostname (Kong's endpoint key for upstreams).
    type: str
  algorithm:
    description:
      - Balancing algorithm. Kong's default is V(round-robin).
    type: str
    choices: [consistent-hashing, least-connections, round-robin, latency]
  hash_on:
    description:
      - What C(consistent-hashing) hashes on. Kong's default is V(none).
    type: str
  hash_fallback:
    description:
      - What to hash on when O(hash_on) gives nothing. Kong's default is V(none).
    type: str
  hash_on_header:
    description:
      - Header name for O(hash_on=header).
    type: str
  slots:
    description:
      - Number of slots of the balancer wheel (10 to 65536). Kong's default is 10000.
    type: int
  healthchecks:
    description:
      - Active and passive health checks, and C(threshold), in Kong's record shape; merged into
        Kong's defaults (which turn every check off).
    type: dict
  host_header:
    description:
      - Host header sent to the targets instead of their own host name.
    type: str
  use_srv_name:
    description:
      - Use the SRV record's target name as the Host. Kong's default is V(false).
    type: bool
  tags:
    description:
      - Tags of the upstream; O(select_tags) are added to them.
    type: list
    elements: str
  entities:
    description:
      - Bulk mode - many upstreams in one task, read from Kong once (a list of dicts with the
        keys of the single-entity options, and O(entities[].state)).
      - Mutually exclusive with O(name).
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - Same as O(name).
        type: str
      algorithm:
        description:
          - Same as O(algorithm).
        type: str
        choices: [consistent-hashing, least-connections, round-robin, latency]
      hash_on:
        description:
          - Same as O(hash_on).
        type: str
      hash_fallback:
        description:
          - Same as O(hash_fallback).
        type: str
      hash_on_header:
        description:
          - Same as O(hash_on_header).
        type: str
      slots:
        description:
          - Same as O(slots).
        type: int
      healthchecks:
        description:
          - Same as O(healthchecks).
        type: dict
      host_header:
        description:
          - Same as O(host_header).
        type: str
      use_srv_name:
        description:
          - Same as O(use_srv_name).
        type: bool
      tags:
        description:
          - Same as O(tags).
        type: list
        elements: str
      state:
        description:
          - State of this entity; defaults to O(state).
        type: str
        choices: [present, absent]
"""

EXAMPLES = r"""
- name: Balance llm_api over its nodes, with active and passive health checks
  ai_gateway.kong.kong_upstream:
    admin_url: http://127.0.0.1:8001
    name: llm-api.upstream
    healthchecks:
      active:
        http_path: /health/ready
        healthy: {interval: 2, successes: 2}
        unhealthy: {interval: 2, tcp_failures: 1, http_failures: 2}
      passive:
        unhealthy: {tcp_failures: 2}
    tags: [ai-gateway]

- name: Remove an upstream (its targets go with it)
  ai_gateway.kong.kong_upstream:
    admin_url: http://127.0.0.1:8001
    name: old.upstream
    state: absent
"""

RETURN = r"""
upstream:
  description: The upstream as Kong stores it (null after O(state=absent)).
  returned: when O(entities) is not used
  type: dict
  sample:
    id: 6c8a3d2e-0bc4-4638-8e34-c84a417ba39b
    name: llm-api.upstream
    algorithm: round-robin
    slots: 10000
    tags: [ai-gateway]
entities:
  description: The declared upstreams as Kong stores them, in the order of O(entities).
  returned: when O(entities) is used
  type: list
  elements: dict
pruned:
  description: Entities deleted by O(prune).
  returned: always
  type: list
  elements: dict
"""

import copy

from ansible_collections.ai_gateway.kong.plugins.module_utils.entity import (
    EntityKind,
    run_entity_module,
)

# Kong 3.9 kong/db/schema/entities/upstreams.lua: the healthchecks record as GET returns it.
HEALTHCHECKS_DEFAULT = {
    "active": {
        "type": "http",
        "timeout": 1,
        "concurrency": 10,
        "http_path": "/",
        "https_sni": None,
        "https_verify_certificate": True,
        "headers": None,
        "healthy": {"interval": 0, "http_statuses": [200, 302], "successes": 0},
        "unhealthy": {
            "interval": 0,
            "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
            "tcp_failures": 0,
            "timeouts": 0,
            "http_failures": 0,
        },
    },
    "passive": {
        "type": "http",
        "healthy": {
            "http_statuses": [
                200,
                201,
                202,
                203,
                204,
                205,
                206,
                207,
                208,
                226,
                300,
                301,
                302,
                303,
                304,
                305,
                306,
                307,
                308,
            ],
            "successes": 0,
        },
        "unhealthy": {
            "http_statuses": [429, 500, 503],
            "tcp_failures": 0,
            "timeouts": 0,
            "http_failures": 0,
        },
    },
    "threshold": 0,
}

UPSTREAM_FIELDS = {
    "name": None,
    "algorithm": "round-robin",
    "hash_on": "none",
    "hash_fallback": "none",
    "hash_on_header": None,
    "slots": 10000,
    "healthchecks": HEALTHCHECKS_DEFAULT,
    "host_header": None,
    "use_srv_name": False,
    "tags": None,
}


def merged(default, given):
    """Kong's default record with the given values laid over it, key by key."""
    if not isinstance(default, dict) or not isinstance(given, dict):
        return copy.deepcopy(given)
    out = copy.deepcopy(default)
    for key, value in given.items():
        out[key] = merged(default.get(key), value) if key in default else value
    return out


def without_nulls(value):
    if isinstance(value, dict):
        return dict((k, without_nulls(v)) for k, v in value.items() if v is not None)
    return value


class Upstream(EntityKind):
    singular = "upstream"
    collection = "/upstreams"
    key = "name"
    fields = UPSTREAM_FIELDS

    @classmethod
    def option_spec(cls):
        return dict(
            name=dict(type="str"),
            algorithm=dict(
                type="str",
                choices=["consistent-hashing", "least-connections", "round-robin", "latency"],
            ),
            hash_on=dict(type="str"),
            hash_fallback=dict(type="str"),
            hash_on_header=dict(type="str"),
            slots=dict(type="int"),
            healthchecks=dict(type="dict"),
            host_header=dict(type="str"),
            use_srv_name=dict(type="bool"),
            tags=dict(type="list", elements="str"),
        )

    def desired(self, item, current):
        out = super(Upstream, self).desired(item, current)
        out["healthchecks"] = merged(HEALTHCHECKS_DEFAULT, item.get("healthchecks") or {})
        return out

    def payload(self, item, desired):
        return without_nulls(super(Upstream, self).payload(item, desired))


def main():
    run_entity_module(Upstream)


if __name__ == "__main__":
    main()
