#!/usr/bin/python
# ruff: noqa: E402 - Ansible modules import after their DOCUMENTATION strings
# -*- coding: utf-8 -*-
# Copyright: ai-gateway project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_service
short_description: Manage Kong Gateway services
version_added: 1.0.0
description:
  - Create, update and delete L(Kong services,https://docs.konghq.com/gateway/latest/key-concepts/services/)
    through the Admin API, identified by O(name) and written with C(PUT /services/{name}).
  - Options that are not given take Kong's schema defaults, because Kong stores a service whole.
  - Many services can be declared in one task with O(entities).
author:
  - ai-gateway project (@ai-gateway)
extends_documentation_fragment:
  - ai_gateway.kong.kong
  - ai_gateway.kong.kong.entity
  - ai_gateway.kong.kong.attributes
options:
  name:
    description:
      - Name of the service (Kong's endpoint key for services).
    type: str
  url:
    description:
      - Shorthand for O(protocol), O(host), O(port) and O(path), as Kong's C(url) field
        (the port defaults to 443 for https, 80 otherwise).
    type: str
  protocol:
    description:
      - Protocol used to talk to the upstream. Kong's default is V(http).
    type: str
    choices: [grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp]
  host:
    description:
      - Host of the upstream server. Required with O(state=present) unless O(url) is given.
    type: str
  port:
    description:
      - Upstream port. Kong's default is V(80).
    type: int
  path:
    description:
      - Path prepended to upstream requests. Kong's default is none.
    type: str
  retries:
    description:
      - Number of retries when proxying fails. Kong's default is V(5).
    type: int
  connect_timeout:
    description:
      - Connection timeout to the upstream, in milliseconds. Kong's default is V(60000).
    type: int
  write_timeout:
    description:
      - Timeout between two write operations to the upstream, in milliseconds.
        Kong's default is V(60000).
    type: int
  read_timeout:
    description:
      - Timeout between two read operations from the upstream, in milliseconds.
        Kong's default is V(60000).
    type: int
  tags:
    description:
      - Tags of the service; O(select_tags) are added to them.
    type: list
    elements: str
  enabled:
    description:
      - Whether the service is enabled. Kong's default is V(true).
    type: bool
  tls_verify:
    description:
      - Whether to verify the upstream's TLS certificate (https and tls only). Kong's default is
        unset (the global C(proxy_ssl_verify)).
    type: bool
  tls_verify_depth:
    description:
      - Maximum depth of the upstream certificate chain (0 to 64).
    type: int
  ca_certificates:
    description:
      - IDs of CA certificates that verify the upstream's certificate.
    type: list
    elements: str
  client_certificate:
    description:
      - ID of the certificate Kong presents to the upstream for mutual TLS.
    type: str
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
      url:
        description:
          - Same as O(url).
        type: str
      protocol:
        description:
          - Same as O(protocol).
        type: str
        choices: [grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp]
      host:
        description:
          - Same as O(host).
        type: str
      port:
        description:
          - Same as O(port).
        type: int
      path:
        description:
          - Same as O(path).
        type: str
      retries:
        description:
          - Same as O(retries).
        type: int
      connect_timeout:
        description:
          - Same as O(connect_timeout).
        type: int
      write_timeout:
        description:
          - Same as O(write_timeout).
        type: int
      read_timeout:
        description:
          - Same as O(read_timeout).
        type: int
      tags:
        description:
          - Same as O(tags).
        type: list
        elements: str
      enabled:
        description:
          - Same as O(enabled).
        type: bool
      tls_verify:
        description:
          - Same as O(tls_verify).
        type: bool
      tls_verify_depth:
        description:
          - Same as O(tls_verify_depth).
        type: int
      ca_certificates:
        description:
          - Same as O(ca_certificates).
        type: list
        elements: str
      client_certificate:
        description:
          - Same as O(client_certificate).
        type: str
      state:
        description:
          - State of this entity; defaults to O(state).
        type: str
        choices: [present, absent]
"""

EXAMPLES = r"""
- name: Proxy to llm_api
  ai_gateway.kong.kong_service:
    admin_url: http://127.0.0.1:8001
    name: llm-api
    url: http://127.0.0.1:8080/
    read_timeout: 120000
    tags: [llm]

- name: Declare services in one task, owned by the tag ai-gateway, and prune the rest
  ai_gateway.kong.kong_service:
    admin_url: http://127.0.0.1:8001
    select_tags: [ai-gateway]
    prune: true
    entities:
      - name: llm-api
        url: http://127.0.0.1:8080/
      - name: docs
        host: docs.internal
        port: 8081

- name: Remove a service
  ai_gateway.kong.kong_service:
    admin_url: http://127.0.0.1:8001
    name: docs
    state: absent
"""

RETURN = r"""
service:
  description: The service as Kong stores it (null after O(state=absent)).
  returned: when O(entities) is not used
  type: dict
  sample:
    id: 4e3ad2e4-0bc4-4638-8e34-c84a417ba39b
    name: llm-api
    protocol: http
    host: 127.0.0.1
    port: 8080
    path: /
    retries: 5
    connect_timeout: 60000
    write_timeout: 60000
    read_timeout: 120000
    enabled: true
    tags: [llm]
entities:
  description: The declared services as Kong stores them, in the order of O(entities).
  returned: when O(entities) is used
  type: list
  elements: dict
pruned:
  description: Entities deleted by O(prune).
  returned: always
  type: list
  elements: dict
"""

from urllib.parse import urlsplit

from ansible_collections.ai_gateway.kong.plugins.module_utils.entity import (
    EntityKind,
    fk,
    run_entity_module,
)

# Kong 3.9 kong/db/schema/entities/services.lua defaults.
SERVICE_FIELDS = {
    "name": None,
    "protocol": "http",
    "host": None,
    "port": 80,
    "path": None,
    "retries": 5,
    "connect_timeout": 60000,
    "write_timeout": 60000,
    "read_timeout": 60000,
    "tags": None,
    "enabled": True,
    "tls_verify": None,
    "tls_verify_depth": None,
    "ca_certificates": None,
    "client_certificate": None,
}


class Service(EntityKind):
    singular = "service"
    collection = "/services"
    key = "name"
    fields = SERVICE_FIELDS
    unordered = ("tags",)

    @classmethod
    def option_spec(cls):
        return dict(
            name=dict(type="str"),
            url=dict(type="str"),
            protocol=dict(
                type="str",
                choices=["grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp"],
            ),
            host=dict(type="str"),
            port=dict(type="int"),
            path=dict(type="str"),
            retries=dict(type="int"),
            connect_timeout=dict(type="int"),
            write_timeout=dict(type="int"),
            read_timeout=dict(type="int"),
            tags=dict(type="list", elements="str"),
            enabled=dict(type="bool"),
            tls_verify=dict(type="bool"),
            tls_verify_depth=dict(type="int"),
            ca_certificates=dict(type="list", elements="str"),
            client_certificate=dict(type="str"),
        )

    def check_item(self, item):
        state = item.get("state") or self.module.params["state"]
        if item.get("url") and any(
            item.get(k) is not None for k in ("protocol", "host", "port", "path")
        ):
            return "url is a shorthand for protocol, host, port and path: give one or the other"
        if state == "present" and not item.get("url") and not item.get("host"):
            return "service %r needs host or url" % item.get("name")
        return super(Service, self).check_item(item)

    def desired(self, item, current):
        item = dict(item)
        if item.get("url"):
            # The same split as Kong's url shorthand (services.lua): the port follows the scheme.
            parts = urlsplit(item["url"])
            item["protocol"] = parts.scheme or "http"
            item["host"] = parts.hostname
            item["port"] = parts.port or (443 if item["protocol"] == "https" else 80)
            item["path"] = parts.path or None
        out = super(Service, self).desired(item, current)
        out["client_certificate"] = fk(item.get("client_certificate"))
        return out


def main():
    run_entity_module(Service)


if __name__ == "__main__":
    main()
