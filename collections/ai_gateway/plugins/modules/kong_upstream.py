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
version_added: 2.0.0
description:
  - Create, update and delete
    L(Kong upstreams,https://docs.konghq.com/gateway/latest/key-concepts/upstreams/), identified by
    O(name) and written with C(PUT /upstreams/{name}).
  - A service whose C(host) equals an upstream's name is balanced over the upstream's targets
    (see M(ai_gateway.kong.kong_target)).
  - Options that are not given take Kong's schema defaults, because Kong stores an upstream whole;
    O(healthchecks) is compared after filling in Kong's defaults of every field left out.
  - An O(name) that is an IP address or has a port fails before anything changes (Kong refuses
    both; a name is what a service's C(host) refers to).
author:
  - ai-gateway project (@ai-gateway)
extends_documentation_fragment:
  - ai_gateway.kong.kong
  - ai_gateway.kong.kong.entity
  - ai_gateway.kong.kong.attributes
options:
  name:
    description:
      - Name of the upstream, a hostname (Kong's endpoint key for upstreams). Services use it as
        their C(host).
    type: str
  algorithm:
    description:
      - Load-balancing algorithm. Kong's default is V(round-robin).
      - Kong derives it from O(hash_on) when it is not given - V(consistent-hashing) when
        O(hash_on) is not V(none). A contradicting pair fails before anything changes.
    type: str
    choices: [consistent-hashing, least-connections, round-robin, latency]
  hash_on:
    description:
      - What consistent hashing hashes. Kong's default is V(none).
    type: str
    choices: [none, consumer, ip, header, cookie, path, query_arg, uri_capture]
  hash_fallback:
    description:
      - What to hash when O(hash_on) gives nothing. Kong's default is V(none).
    type: str
    choices: [none, consumer, ip, header, cookie, path, query_arg, uri_capture]
  hash_on_header:
    description:
      - Header to hash with O(hash_on=header).
    type: str
  hash_fallback_header:
    description:
      - Header to hash with O(hash_fallback=header).
    type: str
  hash_on_cookie:
    description:
      - Cookie to hash with O(hash_on=cookie) or O(hash_fallback=cookie).
    type: str
  hash_on_cookie_path:
    description:
      - Path of the cookie Kong sets with O(hash_on=cookie). Kong's default is V(/).
    type: str
  hash_on_query_arg:
    description:
      - Query argument to hash with O(hash_on=query_arg).
    type: str
  hash_fallback_query_arg:
    description:
      - Query argument to hash with O(hash_fallback=query_arg).
    type: str
  hash_on_uri_capture:
    description:
      - Regex capture of the route path to hash with O(hash_on=uri_capture).
    type: str
  hash_fallback_uri_capture:
    description:
      - Regex capture to hash with O(hash_fallback=uri_capture).
    type: str
  slots:
    description:
      - Number of slots of the balancer wheel (10 to 65536). Kong's default is V(10000).
    type: int
  healthchecks:
    description:
      - Active and passive health checks, in Kong's shape
        (C(active.healthy.interval), C(active.unhealthy.tcp_failures),
        C(passive.unhealthy.http_failures), C(threshold), ...). Fields left out take Kong's
        defaults, which turn every check off.
      - Active checks probe C(active.http_path) every C(active.healthy.interval) seconds; passive
        checks count the failures of proxied requests. See Kong's documentation for every field.
      - Values of C(active.headers) whose names look like credentials are masked in the output.
    type: dict
  host_header:
    description:
      - Host header sent to the targets (and to active health checks) instead of the target's
        own host name or address.
    type: str
  client_certificate:
    description:
      - Id of the certificate Kong presents to the targets (mutual TLS).
    type: str
  use_srv_name:
    description:
      - Whether the SNI and Host header of a target found through a DNS SRV record are the SRV
        name. Kong's default is V(false).
    type: bool
  tags:
    description:
      - Tags of the upstream; O(select_tags) are added to them.
    type: list
    elements: str
  entities:
    description:
      - Bulk mode - many entities in one task, read from Kong once (a list of dicts with the
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
        choices: [none, consumer, ip, header, cookie, path, query_arg, uri_capture]
      hash_fallback:
        description:
          - Same as O(hash_fallback).
        type: str
        choices: [none, consumer, ip, header, cookie, path, query_arg, uri_capture]
      hash_on_header:
        description:
          - Same as O(hash_on_header).
        type: str
      hash_fallback_header:
        description:
          - Same as O(hash_fallback_header).
        type: str
      hash_on_cookie:
        description:
          - Same as O(hash_on_cookie).
        type: str
      hash_on_cookie_path:
        description:
          - Same as O(hash_on_cookie_path).
        type: str
      hash_on_query_arg:
        description:
          - Same as O(hash_on_query_arg).
        type: str
      hash_fallback_query_arg:
        description:
          - Same as O(hash_fallback_query_arg).
        type: str
      hash_on_uri_capture:
        description:
          - Same as O(hash_on_uri_capture).
        type: str
      hash_fallback_uri_capture:
        description:
          - Same as O(hash_fallback_uri_capture).
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
      client_certificate:
        description:
          - Same as O(client_certificate).
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
- name: A load balancer for llm_api with active and passive health checks
  ai_gateway.kong.kong_upstream:
    admin_url: http://127.0.0.1:8001
    name: llm-api.upstream
    healthchecks:
      active:
        http_path: /health/ready
        healthy: {interval: 5, successes: 2}
        unhealthy: {interval: 5, tcp_failures: 2, http_failures: 2, timeouts: 2}
      passive:
        unhealthy: {tcp_failures: 3, timeouts: 3}
    tags: [llm]

- name: Sticky sessions by consumer
  ai_gateway.kong.kong_upstream:
    admin_url: http://127.0.0.1:8001
    name: llm-api-sticky.upstream
    hash_on: consumer
    hash_fallback: ip

- name: Remove an upstream (Kong deletes its targets with it)
  ai_gateway.kong.kong_upstream:
    admin_url: http://127.0.0.1:8001
    name: llm-api-sticky.upstream
    state: absent
"""

RETURN = r"""
upstream:
  description: The upstream as Kong stores it (null after O(state=absent)).
  returned: when O(entities) is not used
  type: dict
  sample:
    id: 8a0f6c2e-5d1b-4b8e-9a63-3f0c2d1e4b5a
    name: llm-api.upstream
    algorithm: round-robin
    hash_on: none
    hash_fallback: none
    slots: 10000
    healthchecks:
      active: {http_path: /health/ready, healthy: {interval: 5, successes: 2}}
      threshold: 0
    tags: [llm]
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

from ansible_collections.ai_gateway.kong.plugins.module_utils.entity import (
    EntityKind,
    fk,
    merged,
    run_entity_module,
)
from ansible_collections.ai_gateway.kong.plugins.module_utils.targets import upstream_name_error

# kong/db/schema/entities/upstreams.lua at 3.9.3: healthchecks as GET returns it (threshold 0,
# https_sni and headers null are filled in on read).
HEALTHCHECKS = {
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
            "http_statuses": [200, 201, 202, 203, 204, 205, 206, 207, 208, 226, *range(300, 309)],
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
    "hash_fallback_header": None,
    "hash_on_cookie": None,
    "hash_on_cookie_path": "/",
    "hash_on_query_arg": None,
    "hash_fallback_query_arg": None,
    "hash_on_uri_capture": None,
    "hash_fallback_uri_capture": None,
    "slots": 10000,
    "healthchecks": HEALTHCHECKS,
    "tags": None,
    "host_header": None,
    "client_certificate": None,
    "use_srv_name": False,
}
HASH_CHOICES = ["none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture"]
# Algorithms that hash nothing: Kong's shorthands set hash_on to none for the last two, and
# round-robin is what hash_on=none makes of any algorithm (upstreams.lua shorthand_fields).
NON_HASHING = ("round-robin", "least-connections", "latency")


class Upstream(EntityKind):
    singular = "upstream"
    collection = "/upstreams"
    key = "name"
    fields = UPSTREAM_FIELDS

    @classmethod
    def option_spec(cls):
        return dict(
            name=dict(type="str"),
            algorithm=dict(type="str", choices=["consistent-hashing", *NON_HASHING]),
            hash_on=dict(type="str", choices=HASH_CHOICES),
            hash_fallback=dict(type="str", choices=HASH_CHOICES),
            hash_on_header=dict(type="str"),
            hash_fallback_header=dict(type="str"),
            hash_on_cookie=dict(type="str"),
            hash_on_cookie_path=dict(type="str"),
            hash_on_query_arg=dict(type="str"),
            hash_fallback_query_arg=dict(type="str"),
            hash_on_uri_capture=dict(type="str"),
            hash_fallback_uri_capture=dict(type="str"),
            slots=dict(type="int"),
            healthchecks=dict(type="dict"),
            host_header=dict(type="str"),
            client_certificate=dict(type="str"),
            use_srv_name=dict(type="bool"),
            tags=dict(type="list", elements="str"),
        )

    def check_item(self, item):
        error = super(Upstream, self).check_item(item)
        if error:
            return error
        error = upstream_name_error(item["name"])
        if error:
            return "name: %s" % error
        algorithm, hash_on = item.get("algorithm"), item.get("hash_on")
        if algorithm == "consistent-hashing" and hash_on in (None, "none"):
            return "upstream %r: algorithm consistent-hashing needs hash_on" % item["name"]
        if algorithm in NON_HASHING and hash_on not in (None, "none"):
            return "upstream %r: hash_on %s needs algorithm consistent-hashing (or none)" % (
                item["name"],
                hash_on,
            )
        return None

    def desired(self, item, current):
        out = super(Upstream, self).desired(item, current)
        if item.get("algorithm") is None and out["hash_on"] != "none":
            out["algorithm"] = "consistent-hashing"  # Kong's hash_on shorthand
        out["healthchecks"] = merged(HEALTHCHECKS, item.get("healthchecks"))
        out["client_certificate"] = fk(item.get("client_certificate"))
        return out


def main():
    run_entity_module(Upstream)


if __name__ == "__main__":
    main()
