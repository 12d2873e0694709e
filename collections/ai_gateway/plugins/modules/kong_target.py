#!/usr/bin/python
# ruff: noqa: E402 - Ansible modules import after their DOCUMENTATION strings
# -*- coding: utf-8 -*-
# Copyright: ai-gateway project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_target
short_description: Manage the targets of a Kong Gateway upstream
version_added: 1.1.0
description:
  - Create, update and delete the targets (C(host:port) and weight) of an upstream
    (M(ai_gateway.kong.kong_upstream)) through C(/upstreams/{upstream}/targets).
  - A target is identified by its upstream and its C(host:port), written as Kong normalises it
    (Kong adds port 8000 to a target without one; give the port).
  - A new target is created with C(POST); a changed weight or tags with C(PATCH) (since Kong 3.0
    a POST never updates a target).
  - Weight 0 keeps the target but Kong sends it no traffic, which takes a node out of service.
author:
  - ai-gateway project (@ai-gateway)
extends_documentation_fragment:
  - ai_gateway.kong.kong
  - ai_gateway.kong.kong.entity
  - ai_gateway.kong.kong.attributes
options:
  upstream:
    description:
      - Name or id of the upstream the targets belong to. Required.
    type: str
  target:
    description:
      - The target, C(host:port) (C([IPv6]:port)).
    type: str
  weight:
    description:
      - Share of the traffic (0 to 65535; 0 sends none). Kong's default is 100.
    type: int
  tags:
    description:
      - Tags of the target; O(select_tags) are added to them.
    type: list
    elements: str
  entities:
    description:
      - Bulk mode - many targets of O(upstream) in one task, read from Kong once.
      - Mutually exclusive with O(target). With O(prune), the upstream's targets carrying
        O(select_tags) that are not declared are deleted.
    type: list
    elements: dict
    suboptions:
      upstream:
        description:
          - Same as O(upstream); may be left out. Every entity of one task belongs to O(upstream).
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
- name: One target per llm_api node, and no others
  ai_gateway.kong.kong_target:
    admin_url: http://127.0.0.1:8001
    upstream: llm-api.upstream
    select_tags: [ai-gateway]
    prune: true
    entities:
      - target: 10.0.2.21:8080
      - target: 10.0.2.22:8080

- name: Take a node out of service (Kong keeps the target but sends it nothing)
  ai_gateway.kong.kong_target:
    admin_url: http://127.0.0.1:8001
    upstream: llm-api.upstream
    target: 10.0.2.22:8080
    weight: 0
"""

RETURN = r"""
target:
  description: The target as Kong stores it (null after O(state=absent)).
  returned: when O(entities) is not used
  type: dict
  sample:
    id: 9b1e7aa0-0bc4-4638-8e34-c84a417ba39b
    upstream: {id: 6c8a3d2e-0bc4-4638-8e34-c84a417ba39b}
    target: 10.0.2.21:8080
    weight: 100
    tags: [ai-gateway]
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
    run_entity_module,
)
from ansible_collections.ai_gateway.kong.plugins.module_utils.kong import segment

# Kong 3.9 kong/db/schema/entities/targets.lua defaults.
TARGET_FIELDS = {"target": None, "weight": 100, "tags": None}


class Target(EntityKind):
    singular = "target"
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

    @property
    def collection(self):
        return "/upstreams/%s/targets" % segment(self.module.params["upstream"])

    def check_item(self, item):
        upstream = self.module.params["upstream"]
        if not upstream:
            return "upstream is required"
        if item.get("upstream") not in (None, upstream):
            return "every target of one task belongs to upstream %r, not %r" % (
                upstream,
                item["upstream"],
            )
        return super(Target, self).check_item(item)

    def payload(self, item, desired):
        body = super(Target, self).payload(item, desired)
        body.pop("upstream", None)
        return body

    def prefetch(self):
        rows = self.client.list(self.collection) or []
        self.index = dict((row["target"], row) for row in rows)

    def find(self, item):
        if self.index is not None:
            return self.index.get(item["target"])
        return self.client.get("%s/%s" % (self.collection, segment(item["target"])))

    def write(self, item, current, payload):
        if current is None:
            return self.client.post(self.collection, payload)
        payload.pop("target", None)
        return self.client.patch("%s/%s" % (self.collection, current["id"]), payload)

    def remove(self, entity):
        self.client.delete("%s/%s" % (self.collection, entity["id"]))

    def prune_candidates(self, select_tags):
        rows = self.client.list(self.collection) or []
        return [r for r in rows if set(select_tags) <= set(r.get("tags") or [])]


def main():
    run_entity_module(Target)


if __name__ == "__main__":
    main()
