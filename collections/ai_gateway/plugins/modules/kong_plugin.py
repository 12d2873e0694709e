#!/usr/bin/python
# ruff: noqa: E402 - Ansible modules import after their DOCUMENTATION strings
# -*- coding: utf-8 -*-
# Copyright: ai-gateway project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_plugin
short_description: Manage Kong Gateway plugins (global or scoped to a service, route or consumer)
version_added: 1.0.0
description:
  - Configure any L(Kong plugin,https://docs.konghq.com/hub/) by O(name), globally or scoped to
    a O(service), O(route) and/or O(consumer).
  - A plugin is identified the way Kong makes it unique, by its name and scope (or by
    O(instance_name) when it exists), and written with C(PUT /plugins/{id}).
  - O(config) is compared after filling in the plugin's defaults from Kong
    (C(GET /schemas/plugins/{name})), so leaving an option out means "Kong's default".
author:
  - ai-gateway project (@ai-gateway)
extends_documentation_fragment:
  - ai_gateway.kong.kong
  - ai_gateway.kong.kong.entity
  - ai_gateway.kong.kong.attributes
options:
  name:
    description:
      - Name of the plugin, for example V(key-auth) or V(rate-limiting).
    type: str
  instance_name:
    description:
      - Unique name of this plugin instance (Kong 3.2 and later).
    type: str
  service:
    description:
      - Name or id of the service the plugin applies to.
    type: str
  route:
    description:
      - Name or id of the route the plugin applies to.
    type: str
  consumer:
    description:
      - Username or id of the consumer the plugin applies to.
    type: str
  config:
    description:
      - The plugin's configuration. Options that are not given take the plugin's defaults.
      - Secrets are masked in the diff and in the returned plugin - Kong's secret fields such as
        C(config.redis.password), C(redis_password), C(secret) or C(token) at any depth, and the
        values of secret headers in the C(name:value) lists of the request- and
        response-transformer (see O(secret_headers)).
      - A plugin that Kong does not load fails with Kong's message before anything changes.
    type: dict
  enabled:
    description:
      - Whether the plugin runs. Kong's default is V(true).
    type: bool
  protocols:
    description:
      - Protocols the plugin runs on. Kong's default depends on the plugin (usually
        V([grpc, grpcs, http, https])).
    type: list
    elements: str
  tags:
    description:
      - Tags of the plugin; O(select_tags) are added to them.
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
      instance_name:
        description:
          - Same as O(instance_name).
        type: str
      service:
        description:
          - Same as O(service).
        type: str
      route:
        description:
          - Same as O(route).
        type: str
      consumer:
        description:
          - Same as O(consumer).
        type: str
      config:
        description:
          - Same as O(config).
        type: dict
      enabled:
        description:
          - Same as O(enabled).
        type: bool
      protocols:
        description:
          - Same as O(protocols).
        type: list
        elements: str
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
- name: Require an API key on the llm-api service
  ai_gateway.kong.kong_plugin:
    admin_url: http://127.0.0.1:8001
    name: key-auth
    service: llm-api
    config:
      key_names: [apikey]
      hide_credentials: true

- name: Rate-limit every consumer to 60 requests a minute
  ai_gateway.kong.kong_plugin:
    admin_url: http://127.0.0.1:8001
    name: rate-limiting
    instance_name: llm-api-rate-limit
    service: llm-api
    config:
      minute: 60
      policy: local

- name: A tighter limit for one consumer
  ai_gateway.kong.kong_plugin:
    admin_url: http://127.0.0.1:8001
    name: rate-limiting
    service: llm-api
    consumer: alice
    config:
      minute: 10

- name: Remove the global correlation-id plugin
  ai_gateway.kong.kong_plugin:
    admin_url: http://127.0.0.1:8001
    name: correlation-id
    state: absent
"""

RETURN = r"""
plugin:
  description: The plugin as Kong stores it, with its full config (null after O(state=absent)).
  returned: when O(entities) is not used
  type: dict
  sample:
    id: 9a1b7f0e-1c7e-4b8e-b1c6-2d0f1f0f5e21
    name: rate-limiting
    instance_name: llm-api-rate-limit
    service: {id: 4e3ad2e4-0bc4-4638-8e34-c84a417ba39b}
    route: null
    consumer: null
    enabled: true
    protocols: [grpc, grpcs, http, https]
    config: {minute: 60, policy: local, limit_by: consumer, fault_tolerant: true}
entities:
  description: The declared plugins as Kong stores them, in the order of O(entities).
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

from ansible.module_utils.common.text.converters import to_text
from ansible_collections.ai_gateway.kong.plugins.module_utils.entity import (
    EntityKind,
    fk_id,
    merged,
    run_entity_module,
)
from ansible_collections.ai_gateway.kong.plugins.module_utils.kong import KongError, segment

# typedefs.protocols_http in kong/db/schema/typedefs.lua: the default of most plugins.
DEFAULT_PROTOCOLS = ["grpc", "grpcs", "http", "https"]
SCOPES = (("service", "/services"), ("route", "/routes"), ("consumer", "/consumers"))


def schema_fields(fields):
    """Kong renders a schema's fields as a list of one-key maps: [{name: definition}, ...]."""
    for entry in fields or []:
        for name, definition in entry.items():
            yield name, definition


def with_defaults(fields, given, stored):
    """The config Kong stores for `given`: every field of the schema, given or defaulted.

    A nested record that the user leaves out is compared as Kong stored it when Kong stored
    null (optional records), else filled with its own defaults.
    """
    given = given or {}
    stored = stored if isinstance(stored, dict) else {}
    out = {}
    for name, definition in schema_fields(fields):
        value = given.get(name)
        if definition.get("type") == "record" and definition.get("fields"):
            if value is None and stored.get(name) is None and name in stored:
                out[name] = None
            else:
                base = value if value is not None else definition.get("default")
                out[name] = with_defaults(definition["fields"], base, stored.get(name))
        elif value is not None:
            out[name] = value
        else:
            out[name] = copy.deepcopy(definition.get("default"))
    for name, value in given.items():
        out.setdefault(name, value)  # keys unknown to the schema: Kong will judge them
    for name, value in stored.items():
        # Fields Kong stores beside the schema's: the deprecated shorthands it echoes on every
        # read (rate-limiting's redis_host ... mirror config.redis; kong/db/schema/init.lua
        # process_auto_fields at 3.9.3). They follow the real fields, so they never differ.
        out.setdefault(name, value)
    return out


PLUGIN_FIELDS = {
    "name": None,
    "instance_name": None,
    "service": None,
    "route": None,
    "consumer": None,
    "config": None,
    "enabled": True,
    "protocols": DEFAULT_PROTOCOLS,
    "tags": None,
}


class Plugin(EntityKind):
    singular = "plugin"
    collection = "/plugins"
    key = "name"
    fields = PLUGIN_FIELDS
    unordered = ("tags", "protocols")

    @classmethod
    def option_spec(cls):
        return dict(
            name=dict(type="str"),
            instance_name=dict(type="str"),
            service=dict(type="str"),
            route=dict(type="str"),
            consumer=dict(type="str"),
            config=dict(type="dict"),
            enabled=dict(type="bool"),
            protocols=dict(type="list", elements="str"),
            tags=dict(type="list", elements="str"),
        )

    def __init__(self, module, client, masker=None):
        super(Plugin, self).__init__(module, client, masker)
        self.schemas = {}
        self.rows = None

    def schema(self, name):
        if name not in self.schemas:
            # A 404 ("No plugin named ...") means Kong does not load the plugin: the write would
            # be refused too, so fail here with Kong's message, before anything changes.
            try:
                self.schemas[name] = self.client.read("/schemas/plugins/%s" % segment(name))
            except KongError as e:
                if e.status != 404:
                    raise
                raise KongError(
                    "Kong does not load the plugin %r (add it to the `plugins` setting of "
                    "kong.conf); %s" % (name, e),
                    status=e.status,
                    body=e.body,
                ) from None
        return self.schemas[name]

    def scope(self, item):
        return dict((field, self.reference(path, item.get(field), field)) for field, path in SCOPES)

    def identity(self, item):
        if item.get("instance_name"):
            return to_text(item["instance_name"])
        scoped = ["%s=%s" % (f, item[f]) for f, _path in SCOPES if item.get(f)]
        return "%s(%s)" % (item["name"], ",".join(scoped) or "global")

    def stored_identity(self, entity):
        return to_text(entity.get("instance_name") or "%s:%s" % (entity["name"], entity["id"]))

    def prefetch(self):
        self.rows = self.client.list("/plugins") or []

    def find(self, item):
        if item.get("instance_name") and self.rows is None:
            found = self.client.get("/plugins/%s" % segment(item["instance_name"]))
            if found is not None:
                return found
        scope = self.scope(item)
        ids = dict((f, fk_id(v)) for f, v in scope.items())
        if self.rows is not None:
            rows = self.rows
        else:
            # The narrowest collection that holds the plugin (kong/api/endpoints.lua nested routes).
            rows = None
            for field, path in SCOPES:
                if ids[field]:
                    rows = self.client.list("%s/%s/plugins" % (path, ids[field]))
                    break
            if rows is None:
                rows = self.client.list("/plugins")
        for row in rows or []:
            if item.get("instance_name") and row.get("instance_name") == item["instance_name"]:
                return row
            same_scope = all(fk_id(row.get(f)) == ids[f] for f, _path in SCOPES)
            if row["name"] == item["name"] and same_scope:
                return row
        return None

    def desired(self, item, current):
        out = super(Plugin, self).desired(item, current)
        out.update(self.scope(item))
        schema = self.schema(item["name"])
        stored_config = (current or {}).get("config")
        if schema:
            definitions = dict(schema_fields(schema.get("fields")))
            config = definitions.get("config") or {}
            out["config"] = with_defaults(config.get("fields"), item.get("config"), stored_config)
            if item.get("protocols") is None and (definitions.get("protocols") or {}).get(
                "default"
            ):
                out["protocols"] = definitions["protocols"]["default"]
        else:
            # Kong answered the schema read without a body: keep what it stores, change the rest.
            out["config"] = merged(stored_config, item.get("config"))
        return out

    def payload(self, item, desired):
        body = super(Plugin, self).payload(item, desired)
        if self.schema(item["name"]):
            # Kong fills in the defaults itself; sending only what was given keeps shorthand
            # and deprecated fields out of the request.
            body["config"] = item.get("config") or {}
        return body

    def write(self, item, current, payload):
        if current is not None:
            return self.client.put("/plugins/%s" % current["id"], payload)
        return self.client.post("/plugins", payload)


def main():
    run_entity_module(Plugin)


if __name__ == "__main__":
    main()
