#!/usr/bin/python
# ruff: noqa: E402 - Ansible modules import after their DOCUMENTATION strings
# -*- coding: utf-8 -*-
# Copyright: ai-gateway project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_route
short_description: Manage Kong Gateway routes
version_added: 1.0.0
description:
  - Create, update and delete L(Kong routes,https://docs.konghq.com/gateway/latest/key-concepts/routes/)
    through the Admin API, identified by O(name) and written with C(PUT /routes/{name}).
  - Every route needs a name, so that a second run finds it again instead of adding a duplicate.
  - Options that are not given take Kong's schema defaults, because Kong stores a route whole.
  - Since Kong 3.0, regex paths start with C(~) (for example C(~/v[0-9]+/chat$));
    other paths are prefixes.
author:
  - ai-gateway project (@ai-gateway)
extends_documentation_fragment:
  - ai_gateway.kong.kong
  - ai_gateway.kong.kong.entity
  - ai_gateway.kong.kong.attributes
options:
  name:
    description:
      - Name of the route (Kong's endpoint key for routes).
    type: str
  service:
    description:
      - Name or id of the service the route proxies to. None leaves the route without a service.
    type: str
  protocols:
    description:
      - Protocols the route accepts. Kong's default is V([http, https]).
    type: list
    elements: str
  methods:
    description:
      - HTTP methods that match (upper case).
    type: list
    elements: str
  hosts:
    description:
      - Host names that match; one leading or trailing C(*) wildcard is allowed.
    type: list
    elements: str
  paths:
    description:
      - Paths that match; prefixes, or regexes starting with C(~).
    type: list
    elements: str
  headers:
    description:
      - Headers that match, as a map of header name to a list of values.
    type: dict
  snis:
    description:
      - Server names that match (TLS routes).
    type: list
    elements: str
  sources:
    description:
      - Sources that match (stream routes), as a list of C({ip, port}) maps.
    type: list
    elements: dict
  destinations:
    description:
      - Destinations that match (stream routes), as a list of C({ip, port}) maps.
    type: list
    elements: dict
  strip_path:
    description:
      - Whether to strip the matched path prefix from the upstream request.
        Kong's default is V(true).
    type: bool
  preserve_host:
    description:
      - Whether to send the client's C(Host) header upstream. Kong's default is V(false).
    type: bool
  regex_priority:
    description:
      - Priority among regex routes. Kong's default is V(0).
    type: int
  path_handling:
    description:
      - How the service path and the request path are joined. Kong's default is V(v0).
    type: str
    choices: [v0, v1]
  https_redirect_status_code:
    description:
      - Status returned when an https-only route is called over http. Kong's default is V(426).
    type: int
    choices: [426, 301, 302, 307, 308]
  request_buffering:
    description:
      - Whether Kong buffers the request body. Kong's default is V(true).
    type: bool
  response_buffering:
    description:
      - Whether Kong buffers the response body (disable it for streamed LLM responses).
        Kong's default is V(true).
    type: bool
  tags:
    description:
      - Tags of the route; O(select_tags) are added to them.
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
      service:
        description:
          - Same as O(service).
        type: str
      protocols:
        description:
          - Same as O(protocols).
        type: list
        elements: str
      methods:
        description:
          - Same as O(methods).
        type: list
        elements: str
      hosts:
        description:
          - Same as O(hosts).
        type: list
        elements: str
      paths:
        description:
          - Same as O(paths).
        type: list
        elements: str
      headers:
        description:
          - Same as O(headers).
        type: dict
      snis:
        description:
          - Same as O(snis).
        type: list
        elements: str
      sources:
        description:
          - Same as O(sources).
        type: list
        elements: dict
      destinations:
        description:
          - Same as O(destinations).
        type: list
        elements: dict
      strip_path:
        description:
          - Same as O(strip_path).
        type: bool
      preserve_host:
        description:
          - Same as O(preserve_host).
        type: bool
      regex_priority:
        description:
          - Same as O(regex_priority).
        type: int
      path_handling:
        description:
          - Same as O(path_handling).
        type: str
        choices: [v0, v1]
      https_redirect_status_code:
        description:
          - Same as O(https_redirect_status_code).
        type: int
        choices: [426, 301, 302, 307, 308]
      request_buffering:
        description:
          - Same as O(request_buffering).
        type: bool
      response_buffering:
        description:
          - Same as O(response_buffering).
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
- name: Route /llm to the llm-api service, streaming responses unbuffered
  ai_gateway.kong.kong_route:
    admin_url: http://127.0.0.1:8001
    name: llm-api
    service: llm-api
    paths: [/llm]
    methods: [GET, POST]
    response_buffering: false
    tags: [llm]

- name: A regex route (Kong 3 syntax)
  ai_gateway.kong.kong_route:
    admin_url: http://127.0.0.1:8001
    name: llm-api-versioned
    service: llm-api
    paths: ["~/llm/v[0-9]+/chat$"]
    regex_priority: 10

- name: Remove a route
  ai_gateway.kong.kong_route:
    admin_url: http://127.0.0.1:8001
    name: llm-api-versioned
    state: absent
"""

RETURN = r"""
route:
  description: The route as Kong stores it (null after O(state=absent)).
  returned: when O(entities) is not used
  type: dict
  sample:
    id: 0d0e8e3f-2b8a-4a3c-9d55-0b2a0b6a1c11
    name: llm-api
    service: {id: 4e3ad2e4-0bc4-4638-8e34-c84a417ba39b}
    protocols: [http, https]
    paths: [/llm]
    methods: [GET, POST]
    strip_path: true
    preserve_host: false
    response_buffering: false
entities:
  description: The declared routes as Kong stores them, in the order of O(entities).
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

# Kong 3.9 kong/db/schema/entities/routes.lua defaults.
ROUTE_FIELDS = {
    "name": None,
    "service": None,
    "protocols": ["http", "https"],
    "methods": None,
    "hosts": None,
    "paths": None,
    "headers": None,
    "snis": None,
    "sources": None,
    "destinations": None,
    "strip_path": True,
    "preserve_host": False,
    "regex_priority": 0,
    "path_handling": "v0",
    "https_redirect_status_code": 426,
    "request_buffering": True,
    "response_buffering": True,
    "tags": None,
}


class Route(EntityKind):
    singular = "route"
    collection = "/routes"
    key = "name"
    fields = ROUTE_FIELDS
    # Kong declares these as sets.
    unordered = ("tags", "protocols", "methods", "snis")

    @classmethod
    def option_spec(cls):
        return dict(
            name=dict(type="str"),
            service=dict(type="str"),
            protocols=dict(type="list", elements="str"),
            methods=dict(type="list", elements="str"),
            hosts=dict(type="list", elements="str"),
            paths=dict(type="list", elements="str"),
            headers=dict(type="dict"),
            snis=dict(type="list", elements="str"),
            sources=dict(type="list", elements="dict"),
            destinations=dict(type="list", elements="dict"),
            strip_path=dict(type="bool"),
            preserve_host=dict(type="bool"),
            regex_priority=dict(type="int"),
            path_handling=dict(type="str", choices=["v0", "v1"]),
            https_redirect_status_code=dict(type="int", choices=[426, 301, 302, 307, 308]),
            request_buffering=dict(type="bool"),
            response_buffering=dict(type="bool"),
            tags=dict(type="list", elements="str"),
        )

    def desired(self, item, current):
        out = super(Route, self).desired(item, current)
        out["service"] = self.reference("/services", item.get("service"), "service")
        if item.get("headers"):
            # Kong stores every header matcher as a list of values.
            out["headers"] = dict(
                (k, v if isinstance(v, list) else [v]) for k, v in item["headers"].items()
            )
        return out


def main():
    run_entity_module(Route)


if __name__ == "__main__":
    main()
