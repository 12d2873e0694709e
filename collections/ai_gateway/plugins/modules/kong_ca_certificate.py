#!/usr/bin/python
# ruff: noqa: E402 - Ansible modules import after their DOCUMENTATION strings
# -*- coding: utf-8 -*-
# Copyright: ai-gateway project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_ca_certificate
short_description: Manage Kong Gateway CA certificates (trust for upstream TLS verification)
version_added: 2.0.0
description:
  - Create, update and delete the CA certificates a service trusts when it verifies its upstream
    (C(tls_verify) and C(ca_certificates) of M(ai_gateway.kong.kong_service)).
  - A CA certificate is identified by its content, as Kong does (C(cert_digest), the SHA-256 of
    its DER), so PEM formatting never makes a change; only O(tags) can be updated in place.
  - Text that is not one PEM certificate fails before any request. Kong itself refuses an expired
    certificate and one without the CA basic constraint.
author:
  - ai-gateway project (@ai-gateway)
extends_documentation_fragment:
  - ai_gateway.kong.kong
  - ai_gateway.kong.kong.entity
  - ai_gateway.kong.kong.attributes
options:
  cert:
    description:
      - The CA certificate, PEM, one certificate.
    type: str
  tags:
    description:
      - Tags of the CA certificate; O(select_tags) are added to them.
    type: list
    elements: str
  entities:
    description:
      - Bulk mode - many entities in one task, read from Kong once (a list of dicts with the
        keys of the single-entity options, and O(entities[].state)).
      - Mutually exclusive with O(cert).
    type: list
    elements: dict
    suboptions:
      cert:
        description:
          - Same as O(cert).
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
- name: Trust the internal CA that signed llm_api's certificate
  ai_gateway.kong.kong_ca_certificate:
    admin_url: http://127.0.0.1:8001
    cert: "{{ lookup('ansible.builtin.file', 'files/internal-ca.pem') }}"
    tags: [tls]
  register: internal_ca

- name: Verify llm_api's certificate with it
  ai_gateway.kong.kong_service:
    admin_url: http://127.0.0.1:8001
    name: llm-api
    url: https://llm-api.internal:8443/
    tls_verify: true
    ca_certificates: ["{{ internal_ca.ca_certificate.id }}"]
"""

RETURN = r"""
ca_certificate:
  description: The CA certificate as Kong stores it (null after O(state=absent)).
  returned: when O(entities) is not used
  type: dict
  sample:
    id: 0f4e2d1c-9b8a-4765-8432-1a0b9c8d7e6f
    cert: "-----BEGIN CERTIFICATE-----\n..."
    cert_digest: 5b3c4d2e1f0a9b8c7d6e5f4a3b2c1d0e5b3c4d2e1f0a9b8c7d6e5f4a3b2c1d0e
    tags: [tls]
entities:
  description: The declared CA certificates as Kong stores them, in the order of O(entities).
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
from ansible_collections.ai_gateway.kong.plugins.module_utils.pem import (
    PemError,
    certificate_digest,
)

# kong/db/schema/entities/ca_certificates.lua at 3.9.3; cert_digest is set by Kong on write.
CA_CERTIFICATE_FIELDS = {"cert": None, "tags": None}


class CaCertificate(EntityKind):
    singular = "ca_certificate"
    collection = "/ca_certificates"
    key = "cert"
    fields = CA_CERTIFICATE_FIELDS

    @classmethod
    def option_spec(cls):
        return dict(cert=dict(type="str"), tags=dict(type="list", elements="str"))

    def check_item(self, item):
        if not item.get("cert"):
            return "cert is required for every CA certificate"
        try:
            certificate_digest(item["cert"])
        except PemError as e:
            return "CA certificate: %s" % e
        return None

    def identity(self, item):
        return "sha256:%s" % certificate_digest(item["cert"])

    def stored_identity(self, entity):
        return "sha256:%s" % (entity.get("cert_digest") or certificate_digest(entity["cert"]))

    def prefetch(self):
        rows = self.client.list(self.collection)
        self.index = dict((self.stored_identity(row), row) for row in rows)

    def find(self, item):
        if self.index is None:
            self.prefetch()
        return self.index.get(self.identity(item))

    def project(self, entity):
        out = super(CaCertificate, self).project(entity)
        out["cert"] = self.stored_identity(entity)
        return out

    def compare_view(self, desired):
        out = super(CaCertificate, self).compare_view(desired)
        out["cert"] = "sha256:%s" % certificate_digest(desired["cert"])
        return out

    def write(self, item, current, payload):
        if current is not None:
            # Same content (that is the identity): only the tags can differ.
            return self.client.patch(
                "/ca_certificates/%s" % current["id"], {"tags": payload.get("tags") or []}
            )
        return self.client.post("/ca_certificates", payload)


def main():
    run_entity_module(CaCertificate)


if __name__ == "__main__":
    main()
