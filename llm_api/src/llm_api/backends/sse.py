"""The one SSE parser every path uses (the WHATWG `text/event-stream` format).

`SSEFramer` cuts a response's bytes into whole events; `parse_event` gives an event's name and
its data (several `data:` lines joined with a newline, as the spec says). The common case, an
event of one `data:` line, takes a short cut without splitting lines.
"""

from __future__ import annotations

KEEPALIVE = b": keep-alive\n\n"
"""The SSE comment llm_api sends while a stream waits, and for a provider's own keep-alive."""


class SSEFramer:
    """Cuts a response's bytes into whole SSE events (without the blank line that ends each)."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The events that `data` completes; an unfinished one waits for the next read."""
        buf = self._buf + data
        if b"\r" in buf:
            held = b""
            if buf.endswith(b"\r"):  # maybe the first half of a CRLF split across two reads
                buf, held = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            *events, rest = buf.split(b"\n\n")
            self._buf = rest + held
            return events
        *events, self._buf = buf.split(b"\n\n")
        return events


def parse_event(event: bytes) -> tuple[bytes | None, bytes | None]:
    """(event name, data) of one framed event; data is None when the event has no `data:` line
    (a comment such as a provider's keep-alive, or a bare `event:`)."""
    if event.startswith(b"data:") and b"\n" not in event:
        data = event[5:]
        return None, data[1:] if data.startswith(b" ") else data
    name = None
    lines = []
    for line in event.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            lines.append(value)
        elif field == b"event":
            name = value
    return name, b"\n".join(lines) if lines else None


def is_comment(event: bytes) -> bool:
    """True for an event made only of comment lines (a keep-alive)."""
    return all(line.startswith(b":") for line in event.split(b"\n") if line)
