"""Request-target handling as Kong 3.9 does it (``kong/tools/uri.lua``, ``kong/router/utils.lua``).

Paths are handled as latin-1 strings so that every byte survives percent-decoding and
re-escaping unchanged.
"""

from __future__ import annotations

import re
from urllib.parse import quote_plus, unquote_plus

# Percent-encoded reserved characters stay encoded (upper-cased); everything else is decoded.
_RESERVED = frozenset(b"!*'();:@&=+$,/?%#[]")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
# The characters ``escape`` leaves alone: reserved, unreserved and ``%``.
_ESCAPE = re.compile(r"[^!#$&'()*+,/:;=?@\[\]A-Za-z0-9\-_.~%]")


def _decode(match: re.Match[str]) -> str:
    num = int(match.group(1), 16)
    if num in _RESERVED:
        return match.group(0).upper()
    return chr(num)


def normalize(uri: str, merge_slashes: bool = True) -> str:
    """Kong's ``normalize``: decode unreserved/other triplets, remove dot segments,
    merge slashes."""
    if uri in ("", "/"):
        return uri
    if "%" in uri:
        uri = _PCT.sub(_decode, uri)
    if "." not in uri and (not merge_slashes or "//" not in uri):
        return uri
    output: list[str] = []
    while uri:
        if uri == "/.":
            uri = "/"
        elif uri == "/..":
            uri = "/"
            if output:
                output.pop()
        elif uri in (".", ".."):
            uri = ""
        elif uri.startswith("../"):
            uri = uri[3:]
        elif uri.startswith(("./", "/./")):
            uri = uri[2:]
        elif uri.startswith("/../"):
            uri = uri[3:]
            if output:
                output.pop()
        elif merge_slashes and uri.startswith("//"):
            uri = uri[1:]
        else:
            i = uri.find("/", 1)
            if i == -1:
                output.append(uri)
                uri = ""
            else:
                output.append(uri[:i])
                uri = uri[i:]
    return "".join(output)


def escape(uri: str) -> str:
    """Kong's ``escape``: percent-encode what is unsafe in a request line."""
    if _ESCAPE.search(uri) is None:
        return uri
    return _ESCAPE.sub(lambda m: f"%{ord(m.group(0)):02X}", uri)


def sanitize_postfix(postfix: str) -> str:
    if not postfix:
        return postfix
    if postfix in (".", ".."):
        return ""
    if postfix.startswith("./"):
        return postfix[2:]
    if postfix.startswith("../"):
        return postfix[3:]
    return postfix


def upstream_uri_v0(strip_path: bool, postfix: str, req_uri: str, base: str) -> str:
    """Kong's ``get_upstream_uri_v0``: join the service path and the request path."""
    if base.endswith("/"):
        if strip_path:
            if postfix == "":
                if base == "/":
                    return "/"
                if req_uri.endswith("/"):
                    return base
                return base[:-1]
            if postfix.startswith("/"):
                return base[:-1] + postfix
            return base + postfix
        return base + req_uri[1:]
    if strip_path:
        if postfix == "":
            if len(req_uri) > 1 and req_uri.endswith("/"):
                return base + "/"
            return base
        if postfix.startswith("/"):
            return base + postfix
        return base + "/" + postfix
    if req_uri == "/":
        return base
    return base + req_uri


QueryValue = str | bool | list[str | bool]


def parse_query(args: str) -> dict[str, QueryValue]:
    """``ngx.req.get_uri_args``: ``a`` alone is ``True``, repeated names become lists."""
    result: dict[str, QueryValue] = {}
    if not args:
        return result
    for part in args.split("&"):
        if not part:
            continue
        name, sep, raw = part.partition("=")
        if not name:
            continue
        key = unquote_plus(name, encoding="latin-1")
        value: str | bool = unquote_plus(raw, encoding="latin-1") if sep else True
        current = result.get(key)
        if current is None:
            result[key] = value
        elif isinstance(current, list):
            current.append(value)
        else:
            result[key] = [current, value]
    return result


def remove_query_arg(args: str, name: str) -> str:
    """``kong.service.request.clear_query_arg``: drop every ``name`` argument and
    re-serialise the rest as ``application/x-www-form-urlencoded`` (ada's URLSearchParams),
    keeping their order."""
    kept: list[str] = []
    for part in args.split("&"):
        if not part:
            continue
        key, _, raw = part.partition("=")
        key = unquote_plus(key, encoding="latin-1")
        if key == name:
            continue
        value = unquote_plus(raw, encoding="latin-1")
        kept.append(
            quote_plus(key, safe="*", encoding="latin-1")
            + "="
            + quote_plus(value, safe="*", encoding="latin-1")
        )
    return "&".join(kept).replace("~", "%7E")
