# -*- coding: utf-8 -*-
# Copyright: ai-gateway project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one HTTP client of the collection: every Admin API call goes through KongClient._request().

Status codes are mapped to errors in one place (_describe_failure). A 404 means "absent" only
where it can mean that: a read of one entity (get) and a delete. A 404 on a write or on a
listing (a plugin that Kong does not load has no endpoints, an Admin API path that does not
exist) is a failure with Kong's message, never an empty answer.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
from http.client import HTTPException
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode

from ansible.module_utils.basic import env_fallback
from ansible.module_utils.common.text.converters import to_native, to_text
from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import open_url
from ansible_collections.ai_gateway.kong.plugins.module_utils.masking import Masker

MIN_VERSION = (3, 0)

# Kong's largest page (kong/api/endpoints.lua: max size 1000); fewer round trips when listing.
PAGE_SIZE = 1000


def kong_argument_spec():
    """The connection options of every module (documented in the ai_gateway.kong.kong fragment)."""
    return dict(
        admin_url=dict(
            type="str", default="http://127.0.0.1:8001", fallback=(env_fallback, ["KONG_ADMIN_URL"])
        ),
        admin_headers=dict(type="dict", default={}, no_log=True),
        admin_username=dict(type="str"),
        admin_password=dict(type="str", no_log=True),
        client_cert=dict(type="path"),
        client_key=dict(type="path", no_log=False),
        ca_path=dict(type="path"),
        validate_certs=dict(type="bool", default=True),
        timeout=dict(type="int", default=10),
        secret_headers=dict(type="list", elements="str", default=[], no_log=False),
    )


# The options of kong_argument_spec() that configure the client (secret_headers is the masker's).
CLIENT_OPTIONS = (
    "admin_url",
    "admin_headers",
    "admin_username",
    "admin_password",
    "client_cert",
    "client_key",
    "ca_path",
    "validate_certs",
    "timeout",
)
# RFC 9110 field-name token characters.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def check_admin_headers(headers):
    """An error message for admin_headers that must not be sent, else None (values not shown).

    An empty value is almost always a vault variable that did not resolve: sending the request
    without the token would fail later with a misleading 401, or succeed against an unprotected
    Admin API that was meant to be protected.
    """
    for name, value in (headers or {}).items():
        if not HEADER_NAME.match(to_text(name)):
            return "admin_headers: %r is not a valid HTTP header name" % to_text(name)
        if value is None or not to_text(value).strip():
            return (
                "admin_headers: the value of header %r is empty (an undefined or empty vault "
                "variable?); nothing was sent to Kong" % to_text(name)
            )
        if isinstance(value, (dict, list)):
            return "admin_headers: the value of header %r must be a string" % to_text(name)
        if re.search(r"[\r\n\x00]", to_text(value)):
            return (
                "admin_headers: the value of header %r contains a line break or NUL; "
                "nothing was sent to Kong" % to_text(name)
            )
    return None


def segment(value):
    """Quote one URL path segment (names, usernames and keys may hold any printable character)."""
    return quote(to_text(value), safe="")


def parse_version(text):
    """'3.9.3' -> (3, 9, 3); Enterprise strings ('3.4.3.1', '3.9.1.0-enterprise') work too."""
    numbers = re.findall(r"\d+", to_text(text).split("-")[0])
    return tuple(int(n) for n in numbers[:3])


class KongError(Exception):
    """An Admin API failure, with Kong's status code and JSON body when there was a response."""

    def __init__(self, message, status=None, body=None):
        super(KongError, self).__init__(message)
        self.status = status
        self.body = body


def _describe_failure(status, body):
    """One human sentence for a failed response (body already masked); Kong's `fields` map is
    appended verbatim."""
    if status in (401, 403):
        what = "the Admin API refused the request (check admin_headers or admin_username)"
    elif status == 404:
        what = "not found"
    elif status == 405:
        what = "operation not allowed"
    elif status == 409:
        what = "conflict"
    elif status >= 500:
        what = "Kong server error"
    else:
        what = "rejected"
    parts = ["HTTP %d %s" % (status, what)]
    if isinstance(body, dict):
        if body.get("name"):
            parts.append(to_text(body["name"]))
        if body.get("message"):
            parts.append(to_text(body["message"]))
        # Kong puts per-field errors in `fields`, and the filter errors of code 11 in `options`.
        for detail in ("fields", "options"):
            if body.get(detail):
                parts.append("%s: %s" % (detail, json.dumps(body[detail], sort_keys=True)))
        if body.get("code") == 12:
            # DB-less Kong answers every write with 405 code 12 (kong/db/strategies/off/init.lua).
            parts.append("Kong runs without a database: use ai_gateway.kong.kong_declarative")
    elif body:
        parts.append(to_text(body)[:500])
    return ": ".join(parts)


class KongClient(object):
    """A small client for Kong's Admin API on top of ansible.module_utils.urls.open_url."""

    def __init__(
        self,
        admin_url,
        admin_headers=None,
        admin_username=None,
        admin_password=None,
        client_cert=None,
        client_key=None,
        ca_path=None,
        validate_certs=True,
        timeout=10,
        masker=None,
    ):
        self.masker = masker or Masker()
        self.admin_url = admin_url.rstrip("/")
        self.headers = dict(admin_headers or {})
        self.username = admin_username
        self.password = admin_password
        self.client_cert = client_cert
        self.client_key = client_key
        self.ca_path = ca_path
        self.validate_certs = validate_certs
        self.timeout = timeout
        self._node = None

    @classmethod
    def from_module(cls, module, masker=None):
        """Build a client from the module's connection options (fails on bad admin_headers);
        `masker` masks the bodies of Kong's error answers."""
        error = check_admin_headers(module.params.get("admin_headers"))
        if error:
            module.fail_json(msg=error)
        options = dict((k, module.params[k]) for k in CLIENT_OPTIONS)
        return cls(masker=masker or Masker.from_module(module), **options)

    def safe_url(self):
        """admin_url without user:password@, for messages."""
        return re.sub(r"//[^/@]*@", "//", self.admin_url)

    def url(self, path, query=None):
        url = self.admin_url + path
        if query:
            url += ("&" if "?" in url else "?") + urlencode(query)
        return url

    def _request(self, method, path, body=None, query=None, raw=None, expect=()):
        """Send one request and return (status, decoded JSON body or None).

        Statuses in `expect` (404 for a read of one entity, 304 from POST /config?check_hash=1)
        are returned as they are. Anything else >= 300 raises KongError with Kong's message.
        """
        url = self.url(path, query)
        headers = {"Accept": "application/json"}
        headers.update(self.headers)
        data = None
        if raw is not None:
            data = raw
            headers["Content-Type"] = "application/json"
        elif body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        try:
            response = open_url(
                url,
                method=method,
                data=data,
                headers=headers,
                url_username=self.username,
                url_password=self.password,
                force_basic_auth=self.username is not None,
                client_cert=self.client_cert,
                client_key=self.client_key,
                ca_path=self.ca_path,
                validate_certs=self.validate_certs,
                timeout=self.timeout,
                http_agent="ai_gateway.kong",
                follow_redirects="none",
            )
            status, content = response.getcode(), response.read()
        except HTTPError as e:
            status = e.code
            try:
                content = e.read()
            except Exception:  # the body of an error response is best effort
                content = b""
        except (URLError, UrlsConnectionError, HTTPException, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise KongError(
                "Kong Admin API at %s is unreachable (%s %s): %s"
                % (self.safe_url(), method, path, to_native(reason))
            ) from None
        payload = None
        if content:
            try:
                payload = json.loads(to_text(content))
            except ValueError:
                payload = to_text(content)
        if status >= 300 and status not in expect:
            # Kong's errors may quote what was sent (a UNIQUE violation names the key).
            payload = self.masker.returned(payload)
            raise KongError(
                "Kong %s %s failed: %s" % (method, path, _describe_failure(status, payload)),
                status=status,
                body=payload,
            )
        return status, payload

    def get(self, path, query=None):
        """One entity: the JSON body of GET path, or None when Kong answers 404 (absent)."""
        status, body = self._request("GET", path, query=query, expect=(404,))
        return None if status == 404 else body

    def read(self, path, query=None):
        """GET a resource that must exist (a listing page, /status, /config): 404 fails."""
        return self._request("GET", path, query=query)[1]

    def post(self, path, body, query=None):
        return self._request("POST", path, body=body, query=query)[1]

    def put(self, path, body):
        return self._request("PUT", path, body=body)[1]

    def patch(self, path, body):
        return self._request("PATCH", path, body=body)[1]

    def delete(self, path):
        """DELETE path; False when it did not exist (Kong's nested collections answer 404):
        the module deletes only what it has just read, so a 404 means someone else did."""
        return self._request("DELETE", path, expect=(404,))[0] != 404

    def list(self, path, tags=None):
        """Every row of a paginated collection; `tags` are ANDed (Kong's `?tags=a,b`)."""
        query = {"size": PAGE_SIZE}
        if tags:
            query["tags"] = ",".join(tags)
        rows = []
        while True:
            page = self.read(path, query)
            if not isinstance(page, dict):
                raise KongError("Kong GET %s returned %r, not a page of entities" % (path, page))
            rows.extend(page.get("data") or [])
            # Kong omits `offset` on the last page (kong/api/endpoints.lua).
            if not page.get("offset"):
                return rows
            query["offset"] = page["offset"]

    def node(self):
        """GET / once per client, refusing Kong older than 3.0 with a clear message."""
        if self._node is None:
            node = self.read("/")
            if not isinstance(node, dict) or "version" not in node:
                raise KongError(
                    "%s does not look like Kong's Admin API: GET / returned %r"
                    % (self.safe_url(), node)
                )
            version = parse_version(node["version"])
            if version < MIN_VERSION:
                raise KongError(
                    "Kong %s at %s is not supported: ai_gateway.kong needs Kong %d.%d or newer"
                    % (node["version"], self.safe_url(), MIN_VERSION[0], MIN_VERSION[1])
                )
            self._node = node
        return self._node

    def database(self):
        """Kong's `database` setting: 'postgres', or 'off' for DB-less."""
        return (self.node().get("configuration") or {}).get("database")
