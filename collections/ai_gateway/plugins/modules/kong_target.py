#!/usr/bin/python
# ruff: noqa: E402 - Ansible modules import after their DOCUMENTATION strings
# -*- coding: utf-8 -*-
# Copyright: ai-gateway project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_target
short_description: Manage the targets of Kong Gateway upstreams
version_added: 2.0.0
description:
  - Create, update and delete the targets (C(host:port) addresses with a weight) of a
    L(Kong upstream,https://docs.konghq.com/gateway/latest/key-concepts/upstreams/), through
    C(/upstreams/{upstream}/targets).
  - A target is identified by its upstream and its address in the form Kong stores it (IPv4
    without leading zeros, IPv6 expanded and bracketed), so any spelling of the same address is
    found again.
  - O(target) must carry its port; a target without one fails before anything changes (Kong
    would silently use port 8000).
  - O(weight=0) keeps the target but sends it no traffic (Kong's way to take a node out of the
    balancer); see M(ai_gateway.kong.kong_target_health) to mark it unhealthy instead.
author:
  - ai-gateway project (@ai-gateway)
extends_documentation_fragment:
  - ai_gateway.kong.kong
  - ai_gateway.kong.kong.entity
  - ai_gateway.kong.kong.attributes
options:
  upstream:
    description:
      - Name or id of the upstream the target belongs to.
    type: str
  target:
    description:
      - Address of the target, C(host:port), C(ipv4:port) or C([ipv6]:port).
    type: str
  weight:
    description:
      - Share of the traffic (0 to 65535); V(0) sends none. Kong's default is V(100).
    type: int
  tags:
    description:
      - Tags of the target; O(select_tags) are added to them.
    type: list
    elements: str
  entities:
    description:
      - Bulk mode - many entities in one task, read from Kong once (a list of dicts with the
        keys of the single-entity options, and O(entities[].state)).
      - Mutually exclusive with O(target).
      - With O(prune), the targets of every upstream that carry all O(select_tags) and are not
        declared are deleted.
    type: list
    elements: dict
    suboptions:
      upstream:
        description:
          - Same as O(upstream).
        type: str
      target:
        description:
          - Same as O(target).
        type: str
      weight:
        description:
          - Same as O(weight).
        type: int
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
- name: Two llm_api nodes behind the upstream
  ai_gateway.kong.kong_target:
    admin_url: http://127.0.0.1:8001
    select_tags: [llm]
    prune: true
    entities:
      - upstream: llm-api.upstream
        target: 10.0.0.11:8080
      - upstream: llm-api.upstream
        target: 10.0.0.12:8080

- name: Take one node out of the balancer (it stays declared)
  ai_gateway.kong.kong_target:
    admin_url: http://127.0.0.1:8001
    upstream: llm-api.upstream
    target: 10.0.0.12:8080
    weight: 0
    tags: [llm]

- name: Remove a node
  ai_gateway.kong.kong_target:
    admin_url: http://127.0.0.1:8001
    upstream: llm-api.upstream
    target: 10.0.0.12:8080
    state: absent
"""

RETURN = r"""
target:
  description: The target as Kong stores it (null after O(state=absent)).
  returned: when O(entities) is not used
  type: dict
  sample:
    id: 6b7a1c2d-3e4f-4a5b-8c9d-0e1f2a3b4c5d
    upstream: {id: 8a0f6c2e-5d1b-4b8e-9a63-3f0c2d1e4b5a}
    target: 10.0.0.12:8080
    weight: 0
    tags: [llm]
    created_at: 1764226000.123
entities:
  description: The declared targets as Kong stores them, in the order of O(entities).
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
    MissingReference,
    fk_id,
    run_entity_module,
)
from ansible_collections.ai_gateway.kong.plugins.module_utils.targets import normalize_target

# kong/db/schema/entities/targets.lua at 3.9.3.
TARGET_FIELDS = {"upstream": None, "target": None, "weight": 100, "tags": None}


class Target(EntityKind):
    singular = "target"
    collection = "/upstreams"
    key = "target"
    fields = TARGET_FIELDS

    @classmethod
    def option_spec(cls):
        return dict(
            upstream=dict(type="str"),
            target=dict(type="str"),
            weight=dict(type="int"),
            tags=dict(type="list", elements="str"),
        )

    def __init__(self, module, client, masker=None):
        super(Target, self).__init__(module, client, masker)
        self.upstreams = None  # bulk mode: name and id -> upstream
        self.targets = {}  # upstream id -> its targets

    def check_item(self, item):
        for option in ("upstream", "target"):
            if item.get(option) in (None, ""):
                return "%s is required for every target" % option
        try:
            normalize_target(item["target"])
        except ValueError as e:
            return "target %r of upstream %r: %s; give it as host:port" % (
                item["target"],
                item["upstream"],
                e,
            )
        if item.get("weight") is not None and not 0 <= item["weight"] <= 65535:
            return "target %r: weight must be between 0 and 65535" % item["target"]
        return None

    def identity(self, item):
        return "%s/%s" % (item["upstream"], normalize_target(item["target"]))

    def stored_identity(self, entity):
        upstream_id = fk_id(entity.get("upstream"))
        upstream = (self.upstreams or {}).get(upstream_id) or {}
        return "%s/%s" % (upstream.get("name") or upstream_id, entity["target"])

    # ----- reads ---------------------------------------------------------------------------
    def prefetch(self):
        self.upstreams = {}
        for upstream in self.client.list("/upstreams"):
            self.upstreams[upstream["id"]] = upstream
            self.upstreams[upstream["name"]] = upstream

    def upstream_id(self, item):
        """The upstream's id, or None when it does not exist (yet, in check mode)."""
        if self.upstreams is not None:
            found = self.upstreams.get(item["upstream"])
            if found is None:
                if self.state == "absent":
                    raise MissingReference("upstream", item["upstream"])
                return fk_id(self.reference("/upstreams", item["upstream"], "upstream"))
            return found["id"]
        return fk_id(self.reference("/upstreams", item["upstream"], "upstream"))

    def upstream_targets(self, upstream_id):
        if upstream_id not in self.targets:
            self.targets[upstream_id] = self.client.list("/upstreams/%s/targets" % upstream_id)
        return self.targets[upstream_id]

    def find(self, item):
        upstream_id = self.upstream_id(item)
        if upstream_id is None:
            return None  # check mode, an upstream an earlier task creates
        wanted = normalize_target(item["target"])
        return next((t for t in self.upstream_targets(upstream_id) if t["target"] == wanted), None)

    def prune_candidates(self, select_tags):
        if self.upstreams is None:
            self.prefetch()
        wanted = set(select_tags)
        out = []
        for upstream_id in sorted(set(u["id"] for u in self.upstreams.values())):
            out.extend(
                t for t in self.upstream_targets(upstream_id) if wanted <= set(t.get("tags") or [])
            )
        return out

    # ----- writes --------------------------------------------------------------------------
    def desired(self, item, current):
        upstream_id = self.upstream_id(item)
        return {
            "upstream": {"id": upstream_id} if upstream_id else {"name": item["upstream"]},
            "target": normalize_target(item["target"]),
            "weight": 100 if item.get("weight") is None else item["weight"],
            "tags": self.tags(item) or None,
        }

    def payload(self, item, desired):
        return dict((k, desired[k]) for k in ("target", "weight", "tags") if desired[k] is not None)

    def write(self, item, current, payload):
        upstream_id = fk_id(self.desired(item, current)["upstream"])
        if current is None:
            # POST only creates (Kong 3.0 and later); PUT/PATCH on a target only update.
            return self.client.post("/upstreams/%s/targets" % upstream_id, payload)
        return self.client.patch("/upstreams/%s/targets/%s" % (upstream_id, current["id"]), payload)

    def remove(self, entity):
        self.client.delete("/upstreams/%s/targets/%s" % (fk_id(entity["upstream"]), entity["id"]))


def main():
    run_entity_module(Target)


if __name__ == "__main__":
    main()
