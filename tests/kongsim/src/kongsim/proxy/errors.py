"""Kong's error bodies and their content negotiation (``kong/tools/http.lua``,
``kong/pdk/response.lua`` ``error``, ``kong/error_handlers.lua``)."""

from __future__ import annotations

import re

JSON = "application/json; charset=utf-8"
PLAIN = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"
XML = "application/xml; charset=utf-8"

_MIME_TYPES = {
    "text/html": HTML,
    "application/json": JSON,
    "text/plain": PLAIN,
    "application/xml": XML,
    "application": JSON,
    "text": PLAIN,
}

_TEMPLATES = {
    JSON: '{\n  "message":"%s",\n  "request_id":"%s"\n}',
    PLAIN: "%s\nrequest_id: %s\n",
    HTML: (
        '<!doctype html>\n<html>\n  <head>\n    <meta charset="utf-8">\n'
        "    <title>Error</title>\n  </head>\n  <body>\n    <h1>Error</h1>\n"
        "    <p>%s.</p>\n    <p>request_id: %s</p>\n  </body>\n</html>\n"
    ),
    XML: (
        '<?xml version="1.0" encoding="UTF-8"?>\n<error>\n  <message>%s</message>\n'
        "  <requestid>%s</requestid>\n</error>\n"
    ),
}

# The media-range grammar of ``get_response_type`` (anchored, case-insensitive).
_MEDIA_RANGE = re.compile(
    r"((?:[a-z0-9][a-z0-9\-!#$&^_+.]+|\*)/(?:[a-z0-9][a-z0-9\-!#$&^_+.]+|\*))"
    r"(?:\s*;\s*q=(1(?:\.0{0,3}|)|0(?:\.\d{0,3}|))|\s*;\s*[a-z0-9][a-z0-9\-!#$&^_+.]+(?:=[^;]*|))*",
    re.IGNORECASE,
)

# nginx-level failures answered by ``kong/error_handlers.lua``.
NGINX_MESSAGES = {
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    411: "Length required",
    412: "Precondition failed",
    413: "Payload too large",
    414: "URI too long",
    417: "Expectation failed",
    494: "Request header or cookie too large",
    500: "An unexpected error occurred",
    502: "An invalid response was received from the upstream server",
    503: "The upstream server is currently unavailable",
    504: "The upstream server is timing out",
}


def mime_type(media_type: str) -> str:
    """``get_mime_type`` with its default: unknown types answer JSON."""
    media_type = media_type.strip().split(";", 1)[0]
    major, sep, minor = media_type.partition("/")
    if not sep:
        return JSON
    if minor == "*":
        return JSON if major == "*" else _MIME_TYPES.get(major, JSON)
    return _MIME_TYPES.get(media_type, JSON)


def response_type(accept: str | None) -> str:
    """``get_response_type``: the Accept entry with the highest q wins; JSON by default."""
    content_type = JSON
    if accept is None:
        return content_type
    best = 0.0
    for value in accept.split(","):
        found = _MEDIA_RANGE.match(value.strip())
        if not found:
            continue
        quality = float(found.group(2)) if found.group(2) else 1.0
        if quality > best:
            best = quality
            content_type = mime_type(found.group(1))
    return content_type


def render(content_type: str, message: str, request_id: str) -> bytes:
    return (_TEMPLATES[content_type] % (message, request_id)).encode()


def nginx_error_type(accept: str | None, content_type: str | None, default_type: str) -> str:
    """``error_handlers.lua`` chooses from Accept, else Content-Type, else
    ``error_default_type``."""
    header = accept if accept is not None else content_type
    return response_type(header if header is not None else default_type)
