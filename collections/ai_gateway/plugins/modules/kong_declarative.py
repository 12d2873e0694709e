#!/usr/bin/python
# ruff: noqa: E402 - Ansible modules import after their DOCUMENTATION strings
# -*- coding: utf-8 -*-
# Copyright: ai-gateway project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_declarative
short_description: Apply a whole declarative configuration to a DB-less Kong Gateway
version_added: 1.0.0
description:
  - Loads a declarative configuration (the C(kong.yml) format) into a DB-less Kong (C(database=off))
    with C(POST /config?check_hash=1), which replaces Kong's whole configuration.
  - Kong identifies a configuration by the MD5 of its text
    (C(configuration_hash) in C(GET /status)), so an unchanged configuration is reported
    unchanged, also in check mode, without reloading Kong.
  - The diff compares the entities of the new configuration with C(GET /config), entity by entity,
    leaving out ids, timestamps and the defaults Kong fills in; keys and passwords are masked.
  - decK cannot manage DB-less nodes (it needs entity writes); this module can.
  - C(upstreams) with their C(targets) are compared as Kong stores them (a target without a port
    compares as C(host:8000), Kong's default; IPv6 targets expanded). An upstream whose name is
    an IP address or has a port fails before anything is sent.
author:
  - ai-gateway project (@ai-gateway)
extends_documentation_fragment:
  - ai_gateway.kong.kong
  - ai_gateway.kong.kong.attributes
options:
  config:
    description:
      - The declarative configuration, as a dict or as YAML/JSON text.
      - A dict is sent as compact JSON with sorted keys, so that the same dict always has the
        same hash.
    type: raw
  src:
    description:
      - Path on the managed node of a YAML or JSON declarative configuration file.
    type: path
  state:
    description:
      - V(present) loads the configuration.
      - V(absent) loads an empty configuration (removes every entity).
    type: str
    choices: [present, absent]
    default: present
requirements:
  - PyYAML (for YAML text and for the diff)
"""

EXAMPLES = r"""
- name: Configure a DB-less Kong from a dict
  ai_gateway.kong.kong_declarative:
    admin_url: http://127.0.0.1:8001
    config:
      _format_version: "3.0"
      services:
        - name: llm-api
          url: http://127.0.0.1:8080/
          routes:
            - name: llm-api
              paths: [/llm]
          plugins:
            - name: key-auth
      consumers:
        - username: alice
          keyauth_credentials:
            - key: "{{ vault_alice_api_key }}"

- name: Configure a DB-less Kong from a file on the node
  ai_gateway.kong.kong_declarative:
    admin_url: http://127.0.0.1:8001
    src: /etc/kong/kong.yml
"""

RETURN = r"""
configuration_hash:
  description: Kong's hash of the loaded configuration (MD5 of its text).
  returned: always
  type: str
  sample: 5b2a4c1f0d7f3e6a9b8c7d6e5f4a3b2c
entities:
  description: Number of entities of each kind in the applied configuration.
  returned: always
  type: dict
  sample: {services: 1, routes: 1, plugins: 1, consumers: 1, keyauth_credentials: 1}
"""

import contextlib
import hashlib
import json
import os
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.module_utils.common.yaml import HAS_YAML
from ansible_collections.ai_gateway.kong.plugins.module_utils.kong import (
    KongClient,
    KongError,
    kong_argument_spec,
)
from ansible_collections.ai_gateway.kong.plugins.module_utils.masking import Masker
from ansible_collections.ai_gateway.kong.plugins.module_utils.targets import (
    KONG_DEFAULT_TARGET_PORT,
    normalize_target,
    upstream_name_error,
)

if HAS_YAML:
    import yaml

EMPTY_CONFIG = {"_format_version": "3.0"}
# Kong reports this hash for a configuration without entities, whatever its text
# (DECLARATIVE_EMPTY_CONFIG_HASH, kong/constants.lua; kong/db/declarative/import.lua).
EMPTY_CONFIG_HASH = "0" * 32

# Children that the declarative format nests inside a parent, and the field that names the parent
# (kong/db/schema/others/declarative_config.lua: nested entities get their foreign key injected).
PARENT_FIELD = {
    "services": "service",
    "routes": "route",
    "consumers": "consumer",
    "upstreams": "upstream",
    "certificates": "certificate",
}
VOLATILE = ("id", "created_at", "updated_at")


def identity(kind, entity, masker):
    """A readable identity for one entity of a flattened config (the diff's key); a key-auth
    credential is named by its consumer and the masker's fingerprint of its key."""
    for field in ("instance_name", "name", "username", "custom_id", "target"):
        if entity.get(field) and not (kind == "plugins" and field == "name"):
            owner = entity.get("upstream") if field == "target" else None
            return "%s@%s" % (entity[field], owner) if owner else to_text(entity[field])
    if kind == "plugins":
        scope = [
            "%s=%s" % (f, entity[f]) for f in ("service", "route", "consumer") if entity.get(f)
        ]
        return "%s(%s)" % (entity.get("name"), ",".join(scope) or "global")
    if entity.get("key"):
        return "%s/key:%s" % (entity.get("consumer"), masker.fingerprint(entity["key"]))
    return to_text(entity.get("id"))


def split_url(url):
    """Kong's `url` shorthand of a service as the fields Kong stores (services.lua)."""
    parts = urlsplit(url)
    protocol = parts.scheme or "http"
    return {
        "protocol": protocol,
        "host": parts.hostname,
        "port": parts.port or (443 if protocol == "https" else 80),
        "path": parts.path or None,
    }


def flatten(config):
    """{kind: [entity]} with nested children lifted to the top, each naming its parent."""
    out = {}

    def walk(kind, entity, parent):
        flat = {}
        children = []
        for field, value in entity.items():
            if (
                isinstance(value, list)
                and value
                and all(isinstance(v, dict) for v in value)
                and (
                    field in PARENT_FIELD or field in ("plugins", "keyauth_credentials", "targets")
                )
            ):
                children.append((field, value))
            else:
                flat[field] = value
        if parent:
            flat.setdefault(parent[0], parent[1])
        out.setdefault(kind, []).append(flat)
        for child_kind, rows in children:
            for row in rows:
                walk(child_kind, row, (PARENT_FIELD.get(kind, kind), flat.get("id") or flat))

    for kind, rows in (config or {}).items():
        if kind.startswith("_") or not isinstance(rows, list):
            continue
        for row in rows:
            if isinstance(row, dict):
                walk(kind, row, None)
    return out


def canonical(config, masker):
    """{kind: {identity: fields}}: references by name, no ids/timestamps/nulls, secrets masked
    for a diff (a changed secret shows as a changed fingerprint)."""
    flat = flatten(config)
    by_id = {}
    for rows in flat.values():
        for row in rows:
            if row.get("id"):
                by_id[row["id"]] = row

    def ref(value):
        if isinstance(value, dict):
            target = by_id.get(value.get("id")) if value.get("id") else value
            target = target or value
        else:
            target = by_id.get(value, value)
        if isinstance(target, dict):
            for field in ("name", "username", "custom_id", "target", "id"):
                if target.get(field):
                    return to_text(target[field])
        return to_text(target)

    out = {}
    for kind, rows in flat.items():
        entities = {}
        for row in rows:
            if kind == "services" and row.get("url"):
                row = dict(row, **split_url(row.pop("url")))
            if kind == "targets" and row.get("target"):
                # Compared as Kong stores it (kong/db/dao/targets.lua format_target); an
                # invalid one is left for Kong to refuse with its own message.
                with contextlib.suppress(ValueError):
                    row = dict(
                        row, target=normalize_target(row["target"], KONG_DEFAULT_TARGET_PORT)
                    )
            clean = {}
            for field, value in row.items():
                if field in VOLATILE or value in (None, [], {}):
                    continue
                if field in PARENT_FIELD.values():
                    value = ref(value)
                clean[field] = value
            entities[identity(kind, clean, masker)] = masker.diff(dict(sorted(clean.items())))
        out[kind] = entities
    return out


def shaped_like(old, new):
    """`old` cut down to the keys `new` has, in nested maps too (the rest are Kong's defaults)."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return old
    return dict((k, shaped_like(v, new[k])) for k, v in old.items() if k in new)


def diff_views(current, desired):
    """before/after for Ansible's diff: only what differs; fields Kong filled in are left out."""
    before, after = {}, {}
    for kind in sorted(set(current) | set(desired)):
        have, want = current.get(kind, {}), desired.get(kind, {})
        for name in sorted(set(have) | set(want)):
            old, new = have.get(name), want.get(name)
            if old is not None and new is not None:
                old = shaped_like(old, new)
            if old != new:
                before.setdefault(kind, {})[name] = old
                after.setdefault(kind, {})[name] = new
    return before, after


def check_upstreams(config):
    """An error message for an upstream name Kong would refuse (an IP address, a port), else
    None: the configuration is not sent at all then."""
    for index, upstream in enumerate((config or {}).get("upstreams") or []):
        error = upstream_name_error((upstream or {}).get("name") or "")
        if error:
            return "config upstreams[%d].name: %s" % (index, error)
    return None


def load_text(module):
    """The configuration text to send, and its parsed form."""
    params = module.params
    if params["state"] == "absent":
        config = EMPTY_CONFIG
    elif params["src"]:
        if not os.path.exists(params["src"]):
            module.fail_json(msg="src %s does not exist" % params["src"])
        with open(params["src"], "rb") as f:
            text = to_text(f.read())
        return text, yaml.safe_load(text)
    else:
        config = params["config"]
    if isinstance(config, dict):
        return json.dumps(config, sort_keys=True, separators=(",", ":")), config
    text = to_text(config)
    return text, yaml.safe_load(text)


def main():
    spec = kong_argument_spec()
    spec.update(
        config=dict(type="raw"),
        src=dict(type="path"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )
    module = AnsibleModule(
        argument_spec=spec,
        supports_check_mode=True,
        mutually_exclusive=[["config", "src"]],
        required_if=[["state", "present", ["config", "src"], True]],
    )
    if not HAS_YAML:
        module.fail_json(msg=missing_required_lib("PyYAML"))
    masker = Masker.from_module(module)
    client = KongClient.from_module(module, masker)
    try:
        text, desired = load_text(module)
    except yaml.YAMLError as e:
        # PyYAML's message quotes the offending line, which may hold a key: position only.
        mark = getattr(e, "problem_mark", None)
        where = " (line %d, column %d)" % (mark.line + 1, mark.column + 1) if mark else ""
        module.fail_json(msg="the declarative configuration is not valid YAML/JSON%s" % where)
    if not isinstance(desired, dict):
        module.fail_json(msg="the declarative configuration must be a mapping")
    # Its secrets (keys, passwords, secret headers) stay out of the printed invocation.
    masker.protect(desired)
    error = check_upstreams(desired)
    if error:
        module.fail_json(msg=error)
    # Kong's own identity of a configuration (kong/db/declarative/parse.lua), not a security use.
    new_hash = hashlib.md5(to_bytes(text)).hexdigest()  # noqa: S324
    if not any(flatten(desired).values()):
        new_hash = EMPTY_CONFIG_HASH

    try:
        client.node()
        if client.database() != "off":
            module.fail_json(
                msg="Kong at %s uses database=%s: kong_declarative is for DB-less Kong; "
                "use the entity modules (kong_service, kong_route, ...)"
                % (client.admin_url, client.database())
            )
        old_hash = (client.read("/status") or {}).get("configuration_hash")
        exported = client.read("/config") or {}
        current = yaml.safe_load(exported.get("config") or "") or {}
        before, after = diff_views(canonical(current, masker), canonical(desired, masker))
        changed = old_hash != new_hash
        if changed and not module.check_mode:
            # check_hash makes Kong answer 304 when the text is the one it runs already.
            status, _body = client._request(
                "POST", "/config", body={"config": text}, query={"check_hash": 1}, expect=(304,)
            )
            changed = status != 304
    except KongError as e:
        masker.fail(e)

    counts = dict((kind, len(rows)) for kind, rows in flatten(desired).items())
    module.exit_json(
        changed=changed,
        configuration_hash=new_hash,
        entities=counts,
        diff={"before": before, "after": after},
    )


if __name__ == "__main__":
    main()
