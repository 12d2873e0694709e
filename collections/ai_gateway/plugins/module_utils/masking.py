# -*- coding: utf-8 -*-
# Copyright: ai-gateway project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one masker of the collection: every module passes its diff, its returned values and
Kong's error bodies through a Masker, so that no secret reaches Ansible's output.

A value is secret when
  - its field is one of Kong's secret fields (key-auth `key`, plugin passwords such as
    `config.redis.password` or the deprecated `redis_password`, tokens, client secrets,
    certificate keys; see SECRET_FIELDS and SECRET_SUFFIXES), at any depth; or
  - it is the value of a secret header: the `name:value` strings of the request- and
    response-transformer (`config.add.headers`, `config.append.headers`, ...) and the
    `{name: [values]}` headers of routes, when the header name is listed in the `secret_headers`
    option or looks like a credential (Authorization, Cookie, names with secret, token, key,
    password; see is_secret_name()).

Returned values get MASK in place of a secret. Diffs get MASK followed by a fingerprint: an HMAC
of the value under a random key drawn for each module run and never shown, so that a reviewer
sees *that* a secret changed (the fingerprints before and after differ) but nothing that could
be tested offline against guessed values, nor linked across runs.

Every secret the masker meets, in the module's options or in what Kong returns, is also added to
the module's `no_log_values`: Ansible then removes it from everything the module returns,
including the `invocation` it prints at -v and the text of error messages.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import hmac
import os
import re

from ansible.module_utils.common.text.converters import to_bytes, to_text

MASK = "********"

# Kong's fields that hold secrets (schemas of key-auth, basic-auth, hmac-auth, jwt, oauth2,
# the Redis-backed plugins, ai-proxy's `auth`, certificates and vaults, kong.conf).
SECRET_FIELDS = frozenset(
    (
        "key",  # key-auth credentials; certificates' private key
        "key_alt",  # certificates' alternate private key
        "password",
        "secret",
        "token",
        "api_key",
        "apikey",
        "client_secret",
        "private_key",
        "provision_key",  # oauth2
        "header_value",  # ai-proxy config.auth
        "param_value",  # ai-proxy config.auth
        "aws_access_key_id",
        "gcp_service_account_json",
        "pg_password",
        "redis_password",  # rate-limiting's deprecated shorthand of config.redis.password
        "sentinel_password",
    )
)
SECRET_SUFFIXES = ("_password", "_secret", "_token", "_api_key", "_private_key", "_access_key")

# Header and parameter names whose values are credentials whatever the configuration says.
CREDENTIAL_NAME = re.compile(
    r"(^|[-_])(secret|token|password|passwd|api[-_]?key|apikey|key|auth|authorization|cookie"
    r"|credential|session)([-_]|$)",
    re.IGNORECASE,
)

# Keys of the transformer plugins whose lists hold `name:value` strings (request-transformer,
# response-transformer: add, append and replace); `remove` and `rename` hold only names.
NAME_VALUE_LISTS = frozenset(("headers", "querystring", "body", "json"))
NAMES_ONLY_PARENTS = frozenset(("remove", "rename"))


def is_secret_field(name):
    """Whether a field of a Kong entity or plugin config holds a secret."""
    name = to_text(name).lower()
    return name in SECRET_FIELDS or name.endswith(SECRET_SUFFIXES)


def is_secret_name(name, secret_headers=()):
    """Whether a header (or query/body parameter) named `name` carries a credential."""
    name = to_text(name).strip()
    if name.lower() in set(to_text(h).strip().lower() for h in secret_headers or ()):
        return True
    return bool(CREDENTIAL_NAME.search(name))


class Masker(object):
    """Masks secrets in any JSON-like value; see the module docstring for the rules.

    `secret_headers`: more header names whose values are secret (case-insensitive).
    `module`: an AnsibleModule whose no_log_values receive every secret met (optional).
    """

    def __init__(self, secret_headers=None, module=None):
        self.secret_headers = [to_text(h) for h in (secret_headers or [])]
        self.module = module
        self._key = os.urandom(32)

    @classmethod
    def from_module(cls, module):
        return cls(module.params.get("secret_headers"), module)

    # ----- primitives ------------------------------------------------------------------------
    def fingerprint(self, value):
        """8 hex digits that differ when the value differs, within this module run only."""
        return hmac.new(self._key, to_bytes(value), hashlib.sha256).hexdigest()[:8]

    def _hide(self, value, diff):
        """The replacement of one secret scalar (None and "" stay: "not set" is no secret)."""
        if value is None or value == "" or isinstance(value, bool):
            return value
        text = to_text(value)
        if self.module is not None:
            self.module.no_log_values.add(text)
        if diff:
            return "%s (%s)" % (MASK, self.fingerprint(text))
        return MASK

    def _hide_all(self, value, diff):
        """Everything beneath a secret field is secret."""
        if isinstance(value, dict):
            return dict((k, self._hide_all(v, diff)) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return [self._hide_all(v, diff) for v in value]
        return self._hide(value, diff)

    def _name_value(self, item, diff):
        """`Name:value` with the value masked when the name is a secret one."""
        if not isinstance(item, str) or ":" not in item:
            return item
        name, value = item.split(":", 1)
        if value and is_secret_name(name, self.secret_headers):
            if self.module is not None and len(value.split()) > 1:
                # `Bearer <token>`: Kong or a log may quote the credential without its scheme.
                self.module.no_log_values.add(value.split()[-1])
            return "%s:%s" % (name, self._hide(value, diff))
        return item

    # ----- the walk ------------------------------------------------------------------------
    def _walk(self, value, diff, parent=None):
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if is_secret_field(k) and not isinstance(v, bool):
                    out[k] = self._hide_all(v, diff)
                elif (
                    k in NAME_VALUE_LISTS
                    and isinstance(v, list)
                    and parent not in NAMES_ONLY_PARENTS
                ):
                    out[k] = [
                        self._name_value(i, diff) if isinstance(i, str) else self._walk(i, diff, k)
                        for i in v
                    ]
                elif k == "headers" and isinstance(v, dict):
                    # A route's headers: {name: [values]}.
                    out[k] = dict(
                        (
                            name,
                            self._hide_all(values, diff)
                            if is_secret_name(name, self.secret_headers)
                            else self._walk(values, diff, k),
                        )
                        for name, values in v.items()
                    )
                else:
                    out[k] = self._walk(v, diff, k)
            return out
        if isinstance(value, (list, tuple)):
            return [self._walk(v, diff, parent) for v in value]
        return value

    def returned(self, value):
        """A copy of a value to return (entities, lists, error bodies): secrets are MASK."""
        return self._walk(value, diff=False)

    def diff(self, value):
        """A copy of a value for a diff: secrets are MASK plus this run's fingerprint."""
        return self._walk(value, diff=True)

    def protect(self, value):
        """Register the secrets of a module option (such as `config` or `entities`) with
        Ansible's no_log_values, so that the printed `invocation` does not show them."""
        self._walk(value, diff=False)

    def fail(self, error):
        """fail_json with a KongError's message and Kong's JSON body, secrets masked."""
        self.module.fail_json(
            msg=to_text(error),
            status=getattr(error, "status", None),
            kong_error=self.returned(getattr(error, "body", None)),
        )
