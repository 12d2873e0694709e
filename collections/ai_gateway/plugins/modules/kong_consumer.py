#!/usr/bin/python
# ruff: noqa: E402 - Ansible modules import after their DOCUMENTATION strings
# -*- coding: utf-8 -*-
# Copyright: ai-gateway project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_consumer
short_description: Manage Kong Gateway consumers
version_added: 1.0.0
description:
  - Create, update and delete L(Kong consumers,https://docs.konghq.com/gateway/latest/key-concepts/consumers/)
    through the Admin API, identified by O(username) (written with C(PUT /consumers/{username}))
    or, when there is no username, by O(custom_id).
  - Declare hundreds of consumers in one task with O(entities); the task then reads Kong once.
author:
  - ai-gateway project (@ai-gateway)
extends_documentation_fragment:
  - ai_gateway.kong.kong
  - ai_gateway.kong.kong.entity
  - ai_gateway.kong.kong.attributes
options:
  username:
    description:
      - Unique user name of the consumer (Kong's endpoint key for consumers).
    type: str
  custom_id:
    description:
      - Unique id of the consumer in another system.
        Identifies the consumer when O(username) is not given.
    type: str
  tags:
    description:
      - Tags of the consumer; O(select_tags) are added to them.
    type: list
    elements: str
  entities:
    description:
      - Bulk mode - many entities in one task, read from Kong once (a list of dicts with the
        keys of the single-entity options, and O(entities[].state)).
      - Mutually exclusive with O(username).
    type: list
    elements: dict
    suboptions:
      username:
        description:
          - Same as O(username).
        type: str
      custom_id:
        description:
          - Same as O(custom_id).
        type: str
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
- name: One consumer
  ai_gateway.kong.kong_consumer:
    admin_url: http://127.0.0.1:8001
    username: alice
    custom_id: employee-0042
    tags: [team-a]

- name: All consumers of the inventory in one task; consumers removed from the list are deleted
  ai_gateway.kong.kong_consumer:
    admin_url: http://127.0.0.1:8001
    select_tags: [ai-gateway]
    prune: true
    entities:
      - username: alice
      - username: bob
        tags: [team-b]

- name: Remove a consumer (its credentials and plugins go with it)
  ai_gateway.kong.kong_consumer:
    admin_url: http://127.0.0.1:8001
    username: carol
    state: absent
"""

RETURN = r"""
consumer:
  description: The consumer as Kong stores it (null after O(state=absent)).
  returned: when O(entities) is not used
  type: dict
  sample:
    id: 7b1c0a52-5b8f-4f3e-9a0e-2f4e8c8d9a10
    username: alice
    custom_id: employee-0042
    tags: [team-a]
    created_at: 1764226000
entities:
  description: The declared consumers as Kong stores them, in the order of O(entities).
  returned: when O(entities) is used
  type: list
  elements: dict
pruned:
  description: Entities deleted by O(prune).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.common.text.converters import to_text
from ansible_collections.ai_gateway.kong.plugins.module_utils.entity import (
    EntityKind,
    run_entity_module,
)
from ansible_collections.ai_gateway.kong.plugins.module_utils.kong import segment

# kong/db/schema/entities/consumers.lua: no defaults besides null.
CONSUMER_FIELDS = {"username": None, "custom_id": None, "tags": None}


class Consumer(EntityKind):
    singular = "consumer"
    collection = "/consumers"
    key = "username"
    fields = CONSUMER_FIELDS

    @classmethod
    def option_spec(cls):
        return dict(
            username=dict(type="str"),
            custom_id=dict(type="str"),
            tags=dict(type="list", elements="str"),
        )

    def check_item(self, item):
        if not item.get("username") and not item.get("custom_id"):
            return "a consumer needs username or custom_id"
        return None

    def identity(self, item):
        if item.get("username"):
            return to_text(item["username"])
        return "custom_id:%s" % item["custom_id"]

    def stored_identity(self, entity):
        if entity.get("username"):
            return to_text(entity["username"])
        if entity.get("custom_id"):
            return "custom_id:%s" % entity["custom_id"]
        return to_text(entity["id"])

    def find(self, item):
        if self.index is not None:
            return self.index.get(self.identity(item))
        if item.get("username"):
            return self.client.get("/consumers/%s" % segment(item["username"]))
        # Kong's special filter for custom_id (kong/api/routes/consumers.lua).
        page = self.client.read("/consumers", {"custom_id": item["custom_id"]})
        rows = (page or {}).get("data") or []
        return rows[0] if rows else None

    def write(self, item, current, payload):
        if item.get("username"):
            return self.client.put("/consumers/%s" % segment(item["username"]), payload)
        if current is not None:
            return self.client.put("/consumers/%s" % current["id"], payload)
        return self.client.post("/consumers", payload)


def main():
    run_entity_module(
        Consumer,
        mutually_exclusive=[["custom_id", "entities"]],
        required_one_of=[["username", "custom_id", "entities"]],
    )


if __name__ == "__main__":
    main()
