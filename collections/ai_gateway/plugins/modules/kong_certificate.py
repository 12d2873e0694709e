#!/usr/bin/python
# ruff: noqa: E402 - Ansible modules import after their DOCUMENTATION strings
# -*- coding: utf-8 -*-
# Copyright: ai-gateway project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_certificate
short_description: Manage Kong Gateway certificates and their SNIs
version_added: 2.0.0
description:
  - Create, update and delete the certificates (with their private keys) that Kong's proxy
    presents for the host names in O(snis), or that services present to upstreams
    (C(client_certificate)).
  - A certificate with O(snis) is identified by its first SNI (Kong's C(/certificates/{sni})), so
    a renewed certificate for the same host names replaces the old one in place. A certificate
    without SNIs is identified by its content.
  - Certificates and keys are compared by content, not formatting (line length, line endings,
    blank lines); O(snis) compare without order.
  - Private keys are secrets - C(no_log), and masked in the diff (with a fingerprint that changes
    when the key changes) and in the returned certificate. The diff shows a certificate by the
    SHA-256 of its DER.
  - Text that is not PEM fails before any request; Kong itself refuses a key that does not match
    its certificate, with nothing written.
author:
  - ai-gateway project (@ai-gateway)
extends_documentation_fragment:
  - ai_gateway.kong.kong
  - ai_gateway.kong.kong.entity
  - ai_gateway.kong.kong.attributes
options:
  cert:
    description:
      - The certificate, PEM (it may be followed by its intermediate certificates).
      - Required with O(state=present); with O(state=absent) it identifies a certificate without
        O(snis).
    type: str
  key:
    description:
      - The private key of O(cert), PEM. Required with O(state=present).
    type: str
  cert_alt:
    description:
      - An alternate certificate of the other key type (ECDSA beside RSA), PEM.
    type: str
  key_alt:
    description:
      - The private key of O(cert_alt), PEM.
    type: str
  snis:
    description:
      - Host names (wildcards such as C(*.example.com) allowed) the proxy serves this certificate
        for. The first one identifies the certificate.
    type: list
    elements: str
  tags:
    description:
      - Tags of the certificate; O(select_tags) are added to them.
    type: list
    elements: str
  entities:
    description:
      - Bulk mode - many entities in one task, read from Kong once (a list of dicts with the
        keys of the single-entity options, and O(entities[].state)).
      - Mutually exclusive with O(cert) and O(snis).
    type: list
    elements: dict
    suboptions:
      cert:
        description:
          - Same as O(cert).
        type: str
      key:
        description:
          - Same as O(key).
        type: str
      cert_alt:
        description:
          - Same as O(cert_alt).
        type: str
      key_alt:
        description:
          - Same as O(key_alt).
        type: str
      snis:
        description:
          - Same as O(snis).
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
- name: The proxy's certificate for the API's host name, from the vault
  ai_gateway.kong.kong_certificate:
    admin_url: http://127.0.0.1:8001
    cert: "{{ vault_api_cert }}"
    key: "{{ vault_api_key }}"
    snis: [api.example.com, "*.api.example.com"]
    tags: [tls]

- name: Remove it
  ai_gateway.kong.kong_certificate:
    admin_url: http://127.0.0.1:8001
    snis: [api.example.com]
    state: absent
"""

RETURN = r"""
certificate:
  description:
    - The certificate as Kong stores it, its private keys masked (null after O(state=absent)).
  returned: when O(entities) is not used
  type: dict
  sample:
    id: 3c1f0b7e-2a4d-4e59-9b8a-6d5c4b3a2f10
    cert: "-----BEGIN CERTIFICATE-----\n..."
    key: "********"
    cert_alt: null
    key_alt: null
    snis: ["*.api.example.com", api.example.com]
    tags: [tls]
entities:
  description:
    - The declared certificates as Kong stores them (keys masked), in the order of O(entities).
  returned: when O(entities) is used
  type: list
  elements: dict
pruned:
  description: Entities deleted by O(prune) (keys masked).
  returned: always
  type: list
  elements: dict
"""

from ansible_collections.ai_gateway.kong.plugins.module_utils.entity import (
    EntityKind,
    run_entity_module,
)
from ansible_collections.ai_gateway.kong.plugins.module_utils.kong import segment
from ansible_collections.ai_gateway.kong.plugins.module_utils.pem import (
    PemError,
    canonical,
    chain_digest,
    check_private_key,
)

# kong/db/schema/entities/certificates.lua at 3.9.3 (`snis` is a transient field).
CERTIFICATE_FIELDS = {
    "cert": None,
    "key": None,
    "cert_alt": None,
    "key_alt": None,
    "snis": None,
    "tags": None,
}


def digest_view(text):
    """A certificate (and its chain) in a comparison and a diff, by the SHA-256 of each DER."""
    return chain_digest(text) if text else None


class Certificate(EntityKind):
    singular = "certificate"
    collection = "/certificates"
    key = "cert"
    fields = CERTIFICATE_FIELDS
    unordered = ("tags", "snis")

    @classmethod
    def option_spec(cls):
        return dict(
            cert=dict(type="str"),
            key=dict(type="str", no_log=True),
            cert_alt=dict(type="str"),
            key_alt=dict(type="str", no_log=True),
            snis=dict(type="list", elements="str"),
            tags=dict(type="list", elements="str"),
        )

    def check_item(self, item):
        state = item.get("state") or self.module.params["state"]
        if not item.get("cert") and not item.get("snis"):
            return "a certificate needs cert or snis to be identified"
        if state == "present" and not (item.get("cert") and item.get("key")):
            return "cert and key are required with state=present"
        if bool(item.get("cert_alt")) != bool(item.get("key_alt")):
            return "cert_alt and key_alt go together"
        try:
            for option in ("cert", "cert_alt"):
                if item.get(option):
                    chain_digest(item[option], option)
            for option in ("key", "key_alt"):
                if item.get(option):
                    check_private_key(item[option], option)
        except PemError as e:
            return "certificate %s: %s" % (self.identity(item), e)
        return None

    def identity(self, item):
        if item.get("snis"):
            return "sni:%s" % item["snis"][0]
        try:
            return digest_view(item.get("cert")) or "?"
        except PemError:
            return "?"

    def stored_identity(self, entity):
        snis = entity.get("snis") or []
        return "sni:%s" % snis[0] if snis else digest_view(entity.get("cert"))

    def prefetch(self):
        self.index = {}
        for row in self.client.list(self.collection):
            self.index[row["id"]] = row
            for sni in row.get("snis") or []:
                self.index["sni:%s" % sni] = row
            self.index.setdefault(digest_view(row.get("cert")), row)

    def find(self, item):
        if item.get("snis"):
            if self.index is not None:
                return self.index.get("sni:%s" % item["snis"][0])
            # 404 {"message":"SNI not found"}: no certificate serves that name yet.
            return self.client.get("/certificates/%s" % segment(item["snis"][0]))
        if self.index is None:
            self.prefetch()
        return self.index.get(digest_view(item["cert"]))

    def project(self, entity):
        out = super(Certificate, self).project(entity)
        return self.comparable(out)

    def compare_view(self, desired):
        return self.comparable(super(Certificate, self).compare_view(desired))

    @staticmethod
    def comparable(view):
        """Certificates by digest, keys by content: formatting never makes a change."""
        view = dict(view)
        for name in ("cert", "cert_alt"):
            view[name] = digest_view(view.get(name))
        for name in ("key", "key_alt"):
            view[name] = repr(canonical(view[name])) if view.get(name) else None
        return view

    def payload(self, item, desired):
        body = super(Certificate, self).payload(item, desired)
        body["snis"] = desired.get("snis") or []  # PUT without snis would remove them all
        return body

    def write(self, item, current, payload):
        if current is not None:
            return self.client.put("/certificates/%s" % current["id"], payload)
        return self.client.post("/certificates", payload)


def main():
    run_entity_module(
        Certificate,
        mutually_exclusive=[["snis", "entities"]],
        required_one_of=[["cert", "snis", "entities"]],
    )


if __name__ == "__main__":
    main()
