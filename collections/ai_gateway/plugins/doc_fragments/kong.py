# -*- coding: utf-8 -*-
# Copyright: ai-gateway project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """Options shared by every ai_gateway.kong module."""

    # How to reach Kong's Admin API. Every module accepts these; set them once per play with
    # module_defaults and the action group (group/ai_gateway.kong.kong).
    DOCUMENTATION = r"""
options:
  admin_url:
    description:
      - Base URL of Kong's Admin API.
      - If not set, the environment variable E(KONG_ADMIN_URL) is used, then V(http://127.0.0.1:8001).
    type: str
    default: http://127.0.0.1:8001
  admin_headers:
    description:
      - Extra HTTP headers sent with every Admin API request, for example the token of a reverse
        proxy that protects the Admin API, such as C(Authorization) with a bearer token.
      - Every value is a secret (C(no_log)) and never appears in output. A header whose value is
        empty (an undefined vault variable, for instance) fails the task before any request.
    type: dict
    default: {}
  admin_username:
    description:
      - User name for HTTP basic authentication in front of the Admin API.
    type: str
  admin_password:
    description:
      - Password for HTTP basic authentication in front of the Admin API.
    type: str
  client_cert:
    description:
      - PEM file with the client certificate for mutual TLS to the Admin API.
    type: path
  client_key:
    description:
      - PEM file with the private key of O(client_cert).
    type: path
  ca_path:
    description:
      - PEM file with the CA certificates used to verify the Admin API's certificate.
    type: path
  validate_certs:
    description:
      - Whether to verify the Admin API's TLS certificate.
    type: bool
    default: true
  timeout:
    description:
      - Timeout of each Admin API request, in seconds.
    type: int
    default: 10
  secret_headers:
    description:
      - Names of HTTP headers (case-insensitive) whose values are secrets, in addition to the
        names that look like credentials (C(Authorization), C(Cookie), and names with a
        C(secret), C(token), C(key), C(auth), C(password), C(credential) or C(session) part,
        such as C(X-Gateway-Secret) or C(X-Api-Key)).
      - Their values are masked wherever a header appears with its value - the C(name:value)
        lists of the request- and response-transformer plugins (C(config.add.headers),
        C(config.append.headers), C(config.replace.headers)) and the C(headers) of routes - in
        diffs, returned values and error messages. Set it once for a play with C(module_defaults).
      - Kong's secret fields (key-auth keys, passwords such as C(config.redis.password), tokens,
        client secrets, certificate keys) are masked whatever this option says.
    type: list
    elements: str
    default: []
notes:
  - Kong older than 3.0 is refused with an error (3.0 changed regex paths and plugin schemas).
  - Kong's schema-violation errors are shown with Kong's own C(fields), verbatim (secrets masked).
  - A 404 from Kong means "absent" only when one entity is read. A 404 on a write or on a listing
    (an endpoint of a plugin Kong does not load, an unknown path) fails with Kong's message.
  - Secrets are replaced by C(********) in returned values; in diffs they are followed by a
    fingerprint, such as C(******** (3f9a0c1d)), which differs when the secret changes. The
    fingerprint is keyed with a random value drawn for each run, so it cannot be tested against
    guessed secrets nor compared across runs.
"""

    # Bulk mode and decK-style ownership, shared by the entity modules.
    ENTITY = r"""
options:
  state:
    description:
      - V(present) creates or updates the entity so that it matches the options (Kong's schema
        defaults apply to every option that is not given, because Kong stores entities whole).
      - V(absent) deletes it.
      - In bulk mode, the default O(entities[].state) of every entry.
    type: str
    choices: [present, absent]
    default: present
  select_tags:
    description:
      - Ownership tags, like decK's C(select_tags). They are added to the tags of every entity
        this task manages, and they scope O(prune).
      - Kong filters by at most 5 tags.
    type: list
    elements: str
    default: []
  prune:
    description:
      - Delete every entity of this module's kind that carries all O(select_tags) but was not
        declared by this task, so that removing an entry from the inventory removes it from Kong.
      - Requires O(select_tags). Entities without all the O(select_tags) are never touched.
    type: bool
    default: false
"""

    # Ansible's attributes block, the same for every entity module.
    ATTRIBUTES = r"""
attributes:
  check_mode:
    support: full
    description: Reads Kong and reports what would change, without writing.
  diff_mode:
    support: full
    description: >-
      Shows the entity as Kong stores it before and as it will be after, secrets masked with a
      fingerprint that shows whether they change.
  action_group:
    description: >-
      Use C(group/ai_gateway.kong.kong) in C(module_defaults) to set the connection options once.
    support: full
    membership:
      - ai_gateway.kong.kong
"""
