#!/usr/bin/env python3
"""A fast fake LLM provider speaking OpenAI's and Anthropic's wire formats (test equipment).

Standard library only: it runs in a bare Debian 12 container as the e2e "provider host" and as
the benchmark's upstream. A raw asyncio protocol with HTTP/1.1 keep-alive (uvloop if importable).

    python3 fake_provider.py --host 0.0.0.0 --port 9000 [--api-key KEY]

Endpoints:
  POST /v1/chat/completions   OpenAI chat completions; "stream": true gives a role chunk,
                              20 content chunks (max_tokens, when lower), a finish chunk, a
                              usage chunk when stream_options.include_usage is set, then
                              "data: [DONE]"
  POST /v1/embeddings         OpenAI embeddings (8-dimensional, deterministic)
  GET  /v1/models             OpenAI model list
  POST /v1/messages           Anthropic messages, plain and as its SSE event stream
  POST /__control             {"mode": "ok"|"fail"|"stall"|"ratelimit"|"unauthorized",
                               "stall_seconds": N}: a failure mode for every request;
                              {"chunk_delay": S}: streams send one event every S seconds;
                              {"plain_delay": S}: non-streamed answers take one step of S
                              seconds per word (20 steps) before they are sent whole;
                              {"gap_seconds": G, "gap_after": N, "keepalive_seconds": K}:
                              streams pause G seconds after N events, sending a keep-alive
                              every K seconds meanwhile (OpenAI: an SSE comment, Anthropic:
                              its "ping" event; 0: none)
  GET  /__requests            the recent requests' method, path, headers and JSON body
                              (DELETE clears)
  GET  /__streams             the recent paced streams (chunk_delay or a gap), slow answers
                              (plain_delay, "stream": false) and stalled requests ("stalled":
                              true): model, events sent (for a slow answer: steps done) and
                              in all, "client_gone" when the
                              client closed the connection before the end, and
                              "gone_after_events" (DELETE clears)
  GET  /__stats               request counts by path and by outcome
  GET  /health                200

It also answers as an HTTP proxy would: a request with an absolute URL
("POST http://host/v1/chat/completions") is served as its path, and recorded with
"proxied_host" in /__requests.

Markers in the model name select a failure for that request: err400, err401, err403, err404,
err429 (with Retry-After), err500, err503, err529 (Anthropic "overloaded"), ctxlen (the
provider's context-length error), stall (answer after stall_seconds, default 30), midstream
(a stream that breaks after 5 content chunks: OpenAI's connection is cut, Anthropic sends its
"event: error"), leak (a 400 whose message names a URL, a host, a key and an organisation
id, with param "temperature" and code "invalid_value", as a provider's message may), tooluse
(the answer calls the request's first tool, or "get_weather", with {"city": "Paris"}, plain
and streamed in each provider's shape). Errors use each provider's real shape: OpenAI
{"error": {...}}, Anthropic {"type": "error", "error": {...}}.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import json
import time

CHUNKS = 20
WORDS = [f"word{i} " for i in range(CHUNKS)]
TEXT = "".join(WORDS)
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    529: "Overloaded",
}
MARKERS = ("err400", "err401", "err403", "err404", "err429", "err500", "err503", "err529")
MAX_BODY = 64 * 1024 * 1024
TOOL_TEXT = "Let me check."
TOOL_ARGS = ['{"city":', ' "Paris"}']  # streamed in two pieces, as providers split arguments


class State:
    """Run-time state shared by every connection: the global mode, counters, recent requests."""

    def __init__(self, api_key: str | None) -> None:
        self.api_key = api_key
        self.mode = "ok"
        self.stall_seconds = 30.0
        self.chunk_delay = 0.0
        self.plain_delay = 0.0
        self.gap_seconds = 0.0
        self.gap_after = 1
        self.keepalive_seconds = 0.0
        self.streams: collections.deque[dict] = collections.deque(maxlen=100)
        self.requests: collections.deque[dict] = collections.deque(maxlen=500)
        self.stats: collections.Counter[str] = collections.Counter()


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def openai_error(status: int, message: str, etype: str, code: str | None, param=None) -> tuple:
    body = {"error": {"message": message, "type": etype, "param": param, "code": code}}
    return status, _json(body)


def anthropic_error(status: int, etype: str, message: str) -> tuple:
    return status, _json({"type": "error", "error": {"type": etype, "message": message}})


def failure_for(kind: str, anthropic: bool) -> tuple:
    """(status, body) of a provider error of `kind`, in the provider's own shape."""
    if anthropic:
        return {
            "err400": lambda: anthropic_error(400, "invalid_request_error", "bad request"),
            "err401": lambda: anthropic_error(401, "authentication_error", "invalid x-api-key"),
            "err403": lambda: anthropic_error(403, "permission_error", "not allowed"),
            "err404": lambda: anthropic_error(404, "not_found_error", "model: not found"),
            "err429": lambda: anthropic_error(
                429, "rate_limit_error", "Number of request tokens has exceeded your rate limit."
            ),
            "err500": lambda: anthropic_error(500, "api_error", "Internal server error"),
            "err503": lambda: anthropic_error(503, "api_error", "Service unavailable"),
            "err529": lambda: anthropic_error(529, "overloaded_error", "Overloaded"),
            "ctxlen": lambda: anthropic_error(
                400, "invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum"
            ),
        }[kind]()
    return {
        "err400": lambda: openai_error(400, "bad request", "invalid_request_error", None),
        "err401": lambda: openai_error(
            401,
            "Incorrect API key provided. You can find your API key in your account settings.",
            "invalid_request_error",
            "invalid_api_key",
        ),
        "err403": lambda: openai_error(403, "not allowed", "invalid_request_error", None),
        "err404": lambda: openai_error(
            404, "The model does not exist", "invalid_request_error", "model_not_found"
        ),
        "err429": lambda: openai_error(
            429, "Rate limit reached for requests", "requests", "rate_limit_exceeded"
        ),
        "err500": lambda: openai_error(500, "The server had an error", "server_error", None),
        "err503": lambda: openai_error(503, "The engine is overloaded", "server_error", None),
        "err529": lambda: openai_error(529, "Overloaded", "server_error", None),
        "ctxlen": lambda: openai_error(
            400,
            "This model's maximum context length is 8192 tokens. However, your messages "
            "resulted in 9000 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        ),
    }[kind]()


LEAK_KEY = "sk-proj-LeakedKey0123456789abcdefXYZ"
LEAK_MESSAGE = (
    "Invalid value for 'temperature': 7 is greater than the maximum of 2. See "
    f"https://internal.fake-provider.example/docs/errors?key={LEAK_KEY} (request sent by "
    f"organization org-AbCdEf123456 to host api.fake-provider.example:8443 with key {LEAK_KEY})."
)


def leak_error(anthropic: bool) -> tuple:
    """A 400 whose message names a URL, a host, a key and an organisation id."""
    if anthropic:
        return anthropic_error(400, "invalid_request_error", LEAK_MESSAGE)
    return openai_error(400, LEAK_MESSAGE, "invalid_request_error", "invalid_value", "temperature")


def prompt_tokens(payload: dict) -> int:
    """A rough, deterministic token count: words in the messages' or the input's text."""
    text = []
    for msg in payload.get("messages") or []:
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, str):
            text.append(content)
        elif isinstance(content, list):
            text.extend(p.get("text", "") for p in content if isinstance(p, dict))
    inp = payload.get("input")
    if isinstance(inp, str):
        text.append(inp)
    elif isinstance(inp, list):
        text.extend(i for i in inp if isinstance(i, str))
    if isinstance(payload.get("system"), str):
        text.append(payload["system"])
    return max(1, sum(len(t.split()) for t in text))


def sse(data: bytes, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + data + b"\n\n"


def tool_name(payload: dict, anthropic: bool) -> str:
    """The name of the request's first tool (each provider's shape), else "get_weather"."""
    for tool in payload.get("tools") or []:
        if isinstance(tool, dict):
            name = tool.get("name") if anthropic else (tool.get("function") or {}).get("name")
            if isinstance(name, str):
                return name
    return "get_weather"


def openai_tool_chat(model: str, ptok: int, name: str) -> bytes:
    call = {
        "id": "call_fake",
        "type": "function",
        "function": {"name": name, "arguments": "".join(TOOL_ARGS)},
    }
    message = {"role": "assistant", "content": TOOL_TEXT, "tool_calls": [call]}
    return _json(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": ptok, "completion_tokens": 7, "total_tokens": ptok + 7},
        }
    )


def openai_tool_stream(model: str, ptok: int, include_usage: bool, name: str) -> list:
    created = int(time.time())
    head = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created}
    head["model"] = model

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse(_json({**head, "choices": [choice]}))

    first = {"index": 0, "id": "call_fake", "type": "function"}
    first["function"] = {"name": name, "arguments": ""}
    events = [chunk({"role": "assistant", "content": TOOL_TEXT}), chunk({"tool_calls": [first]})]
    for piece in TOOL_ARGS:
        events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    events.append(chunk({}, "tool_calls"))
    if include_usage:
        usage = {"prompt_tokens": ptok, "completion_tokens": 7, "total_tokens": ptok + 7}
        events.append(sse(_json({**head, "choices": [], "usage": usage})))
    events.append(b"data: [DONE]\n\n")
    return events


def openai_chat(model: str, ptok: int, words: int = CHUNKS) -> bytes:
    return _json(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(WORDS[:words])},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": ptok,
                "completion_tokens": words,
                "total_tokens": ptok + words,
            },
        }
    )


def openai_stream(
    model: str, ptok: int, include_usage: bool, break_after: int | None, words: int = CHUNKS
) -> list:
    """The SSE events of a chat completion stream; None in the list means "cut the connection"."""
    created = int(time.time())
    usage_field = {"usage": None} if include_usage else {}

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        return sse(
            _json(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    **usage_field,
                }
            )
        )

    events: list = [chunk({"role": "assistant", "content": ""})]
    for i, word in enumerate(WORDS[:words]):
        if break_after is not None and i == break_after:
            events.append(None)
            return events
        events.append(chunk({"content": word}))
    events.append(chunk({}, "stop"))
    if include_usage:
        usage = {"prompt_tokens": ptok, "completion_tokens": words, "total_tokens": ptok + words}
        body = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
        }
        events.append(sse(_json(body)))
    events.append(b"data: [DONE]\n\n")
    return events


def anthropic_message(model: str, ptok: int) -> bytes:
    return _json(
        {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": TEXT}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": ptok, "output_tokens": CHUNKS},
        }
    )


def anthropic_tool_message(model: str, ptok: int, name: str) -> bytes:
    content = [
        {"type": "text", "text": TOOL_TEXT},
        {"type": "tool_use", "id": "toolu_fake", "name": name, "input": {"city": "Paris"}},
    ]
    return _json(
        {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": ptok, "output_tokens": 7},
        }
    )


def anthropic_event(obj: dict) -> bytes:
    """An Anthropic stream event: its type as the SSE event name too."""
    return sse(_json(obj), obj["type"])


def anthropic_stream_start(model: str, ptok: int) -> list:
    message = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": ptok, "output_tokens": 1},
    }
    return [anthropic_event({"type": "message_start", "message": message})]


def anthropic_block(index: int, block: dict, deltas: list) -> list:
    """A content block's events: its start, one event per delta, its stop."""
    events = [
        anthropic_event({"type": "content_block_start", "index": index, "content_block": block})
    ]
    for delta in deltas:
        events.append(
            anthropic_event({"type": "content_block_delta", "index": index, "delta": delta})
        )
    events.append(anthropic_event({"type": "content_block_stop", "index": index}))
    return events


def anthropic_stream_end(stop_reason: str, output_tokens: int) -> list:
    delta = {"stop_reason": stop_reason, "stop_sequence": None}
    usage = {"output_tokens": output_tokens}
    return [
        anthropic_event({"type": "message_delta", "delta": delta, "usage": usage}),
        anthropic_event({"type": "message_stop"}),
    ]


def anthropic_tool_stream(model: str, ptok: int, name: str) -> list:
    text = [{"type": "text_delta", "text": TOOL_TEXT}]
    args = [{"type": "input_json_delta", "partial_json": piece} for piece in TOOL_ARGS]
    tool_block = {"type": "tool_use", "id": "toolu_fake", "name": name, "input": {}}
    return [
        *anthropic_stream_start(model, ptok),
        *anthropic_block(0, {"type": "text", "text": ""}, text),
        *anthropic_block(1, tool_block, args),
        *anthropic_stream_end("tool_use", 7),
    ]


def anthropic_stream(model: str, ptok: int, break_after: int | None) -> list:
    deltas = [{"type": "text_delta", "text": word} for word in WORDS]
    start, *content, stop = anthropic_block(0, {"type": "text", "text": ""}, deltas)
    events = [*anthropic_stream_start(model, ptok), start, anthropic_event({"type": "ping"})]
    if break_after is not None:
        # Anthropic reports failures after the 200 as an "error" event in the stream.
        err = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return [*events, *content[:break_after], anthropic_event(err)]
    return [*events, *content, stop, *anthropic_stream_end("end_turn", CHUNKS)]


def embeddings(payload: dict) -> bytes:
    inp = payload.get("input")
    items = inp if isinstance(inp, list) else [inp]
    data = []
    for i, item in enumerate(items):
        digest = hashlib.sha256(str(item).encode()).digest()
        vec = [round(b / 255.0, 4) for b in digest[:8]]
        data.append({"object": "embedding", "index": i, "embedding": vec})
    ptok = prompt_tokens(payload)
    return _json(
        {
            "object": "list",
            "data": data,
            "model": payload.get("model"),
            "usage": {"prompt_tokens": ptok, "total_tokens": ptok},
        }
    )


class HttpProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive; requests on one connection are answered in order."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.stream_record: dict | None = None
        self.proxied_host: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        record = self.stream_record
        if record is not None and not record["completed"]:
            # The client (llm_api) closed the connection in the middle of a paced stream.
            record["client_gone"] = True
            record["gone_after_events"] = record["sent"]
            self.state.stats["client_gone"] += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self.process()

    def process(self) -> None:
        while self.transport is not None and not self.busy:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1").split("\r\n")
            try:
                method, target, _ = head[0].split(" ", 2)
            except ValueError:
                self.transport.close()
                return
            headers: dict[str, str] = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if length > MAX_BODY:
                self.transport.close()
                return
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            keep_alive = headers.get("connection", "").lower() != "close"
            path = target.split("?", 1)[0]
            self.proxied_host = None
            if path.startswith(("http://", "https://")):  # absolute form: we are the proxy
                self.proxied_host, _, rest = path.split("://", 1)[1].partition("/")
                path = "/" + rest
            result = self.handle(method, path, headers, body)
            if isinstance(result, tuple):
                self.respond(*result, keep_alive=keep_alive)
            else:  # a coroutine: delayed answers keep the order of pipelined requests
                self.busy = True
                task = asyncio.get_running_loop().create_task(result)
                task.add_done_callback(lambda _t, k=keep_alive: self._resume(_t, k))

    def _resume(self, task: asyncio.Task, keep_alive: bool) -> None:
        self.busy = False
        if not task.cancelled() and task.exception() is None and task.result() is not None:
            self.respond(*task.result(), keep_alive=keep_alive)
        if self.transport is not None:
            self.process()

    def respond(self, status, body, ctype="application/json", extra=None, keep_alive=True) -> None:
        if self.transport is None:
            return
        lines = [
            f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
            f"content-type: {ctype}",
            "x-request-id: req_fake",
        ]
        lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
        if not keep_alive:
            lines.append("connection: close")
        if isinstance(body, list):  # an SSE stream, sent chunked
            lines.append("transfer-encoding: chunked")
            out = ["\r\n".join(lines).encode() + b"\r\n\r\n"]
            broken = False
            for event in body:
                if event is None:
                    broken = True
                    break
                out.append(b"%x\r\n%s\r\n" % (len(event), event))
            if not broken:
                out.append(b"0\r\n\r\n")
            self.transport.write(b"".join(out))
            if broken:
                self.transport.abort()
                return
        else:
            lines.append(f"content-length: {len(body)}")
            self.transport.write("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
        if not keep_alive:
            self.transport.close()

    def handle(self, method: str, path: str, headers: dict, body: bytes):
        st = self.state
        if path.startswith("/__") or path == "/health":
            return self.control(method, path, body)
        st.stats["requests"] += 1
        st.stats[f"{method} {path}"] += 1
        record = {"method": method, "path": path, "headers": headers}
        if self.proxied_host is not None:
            record["proxied_host"] = self.proxied_host
        st.requests.append(record)
        anthropic = path == "/v1/messages"
        if st.api_key is not None:
            auth = headers.get("authorization", "")
            given = headers.get("x-api-key") if anthropic else None
            if auth.startswith("Bearer "):
                given = given or auth[len("Bearer ") :]
            if given != st.api_key:
                st.stats["unauthorized"] += 1
                return failure_for("err401", anthropic)
        if method == "GET" and path == "/v1/models":
            models = [
                {"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake-provider"}
            ]
            return 200, _json({"object": "list", "data": models})
        if method != "POST" or path not in (
            "/v1/chat/completions",
            "/v1/embeddings",
            "/v1/messages",
        ):
            return openai_error(404, "Unknown request URL", "invalid_request_error", None)
        try:
            payload = json.loads(body)
            record["body"] = payload
            model = str(payload["model"])
        except (ValueError, KeyError, TypeError):
            if anthropic:
                return anthropic_error(400, "invalid_request_error", "invalid JSON body")
            return openai_error(
                400, "We could not parse the JSON body", "invalid_request_error", None
            )
        mode = st.mode
        if mode == "fail":
            return self.count(failure_for("err500", anthropic))
        if mode == "unauthorized":
            return self.count(failure_for("err401", anthropic))
        if mode == "ratelimit":
            return self.count((*failure_for("err429", anthropic), "application/json", RETRY))
        if mode == "stall" or "stall" in model:
            return self.stalled(path, payload, model, anthropic)
        if "leak" in model:
            return self.count(leak_error(anthropic))
        for marker in (*MARKERS, "ctxlen"):
            if marker in model:
                extra = RETRY if marker == "err429" else None
                return self.count((*failure_for(marker, anthropic), "application/json", extra))
        result = self.answer(path, payload, model, anthropic)
        if isinstance(result[1], list) and (st.chunk_delay > 0 or st.gap_seconds > 0):
            return self.paced(*result, model=model, anthropic=anthropic)
        if not isinstance(result[1], list) and st.plain_delay > 0:
            return self.slow(result, model)
        return result

    def count(self, result: tuple) -> tuple:
        self.state.stats[f"status_{result[0]}"] += 1
        return result

    async def stalled(self, path, payload, model, anthropic):
        """Answer after stall_seconds (not a byte before); recorded in /__streams with
        "stalled": true, and "client_gone" when the client left while it waited."""
        record = {"model": model, "stream": bool(payload.get("stream")), "stalled": True}
        record |= {"events": 0, "sent": 0, "client_gone": False, "completed": False}
        self.state.streams.append(record)
        self.stream_record = record
        try:
            await asyncio.sleep(self.state.stall_seconds)
            record["completed"] = True
        finally:
            self.stream_record = None
        return self.answer(path, payload, model, anthropic)

    async def slow(self, result: tuple, model: str) -> tuple | None:
        """A non-streamed answer "generated" one word every plain_delay seconds, then sent
        whole; records whether the client stayed until then (a client that goes away while it
        waits for the answer)."""
        st = self.state
        record = {"model": model, "stream": False, "events": CHUNKS, "sent": 0}
        record |= {"client_gone": False, "completed": False}
        st.streams.append(record)
        self.stream_record = record
        try:
            for _ in range(CHUNKS):
                await asyncio.sleep(st.plain_delay)
                if self.transport is None:
                    return None
                record["sent"] += 1
            record["completed"] = True
            return result
        finally:
            self.stream_record = None

    async def paced(
        self, status: int, events: list, ctype: str, *, model: str, anthropic: bool
    ) -> None:
        """Send a stream one event every chunk_delay seconds (proves that no hop buffers it),
        with the configured gap; record whether the client stayed to the end."""
        st = self.state
        head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", f"content-type: {ctype}"]
        head += ["x-request-id: req_fake", "transfer-encoding: chunked"]
        record = {"model": model, "stream": True, "events": len(events), "sent": 0}
        record["client_gone"] = False
        record["completed"] = False
        st.streams.append(record)
        self.stream_record = record
        if self.transport is not None:
            self.transport.write("\r\n".join(head).encode() + b"\r\n\r\n")
        keepalive = anthropic_event({"type": "ping"}) if anthropic else b": keep-alive\n\n"
        try:
            for i, event in enumerate(events):
                if st.gap_seconds > 0 and i == st.gap_after:
                    await self.gap(st.gap_seconds, st.keepalive_seconds, keepalive)
                await asyncio.sleep(st.chunk_delay)
                if self.transport is None:
                    return
                if event is None:
                    self.transport.abort()
                    return
                self.transport.write(b"%x\r\n%s\r\n" % (len(event), event))
                record["sent"] += 1
            if self.transport is not None:
                self.transport.write(b"0\r\n\r\n")
                record["completed"] = True
        finally:
            self.stream_record = None

    async def gap(self, seconds: float, keepalive_every: float, keepalive: bytes) -> None:
        """Wait `seconds` in the middle of a stream, sending `keepalive` every so often."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, keepalive_every) if keepalive_every > 0 else left)
            if self.transport is None:
                return
            if keepalive_every > 0 and end - time.monotonic() > 0:
                self.transport.write(b"%x\r\n%s\r\n" % (len(keepalive), keepalive))

    def answer(self, path: str, payload: dict, model: str, anthropic: bool) -> tuple:
        ptok = prompt_tokens(payload)
        self.state.stats["status_200"] += 1
        if path == "/v1/embeddings":
            return 200, embeddings(payload)
        break_after = 5 if "midstream" in model else None
        if "tooluse" in model:
            name = tool_name(payload, anthropic)
            stream = bool(payload.get("stream"))
            if anthropic and stream:
                return 200, anthropic_tool_stream(model, ptok, name), "text/event-stream"
            if anthropic:
                return 200, anthropic_tool_message(model, ptok, name)
            if stream:
                opts = payload.get("stream_options") or {}
                usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
                return 200, openai_tool_stream(model, ptok, usage, name), "text/event-stream"
            return 200, openai_tool_chat(model, ptok, name)
        if anthropic:
            if payload.get("stream"):
                return 200, anthropic_stream(model, ptok, break_after), "text/event-stream"
            return 200, anthropic_message(model, ptok)
        # OpenAI answers honour max_tokens (one word, one token): at most CHUNKS words.
        cap = payload.get("max_completion_tokens") or payload.get("max_tokens")
        words = min(CHUNKS, cap) if isinstance(cap, int) and cap > 0 else CHUNKS
        if payload.get("stream"):
            opts = payload.get("stream_options") or {}
            usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
            return 200, openai_stream(model, ptok, usage, break_after, words), "text/event-stream"
        return 200, openai_chat(model, ptok, words)

    def control(self, method: str, path: str, body: bytes) -> tuple:
        st = self.state
        if path == "/health":
            return 200, b'{"status":"ok"}'
        if path == "/__control" and method == "POST":
            try:
                cmd = json.loads(body or b"{}")
                mode = cmd.get("mode", "ok")
                if mode not in ("ok", "fail", "stall", "ratelimit", "unauthorized"):
                    raise ValueError(mode)
                st.mode = mode
                st.stall_seconds = float(cmd.get("stall_seconds", st.stall_seconds))
                st.chunk_delay = float(cmd.get("chunk_delay", st.chunk_delay))
                st.plain_delay = float(cmd.get("plain_delay", st.plain_delay))
                st.gap_seconds = float(cmd.get("gap_seconds", st.gap_seconds))
                st.gap_after = int(cmd.get("gap_after", st.gap_after))
                st.keepalive_seconds = float(cmd.get("keepalive_seconds", st.keepalive_seconds))
            except (ValueError, AttributeError, TypeError):
                return 400, b'{"error":"bad control command"}'
            reply = {"mode": st.mode, "stall_seconds": st.stall_seconds}
            reply |= {"chunk_delay": st.chunk_delay, "plain_delay": st.plain_delay}
            reply |= {"gap_seconds": st.gap_seconds}
            reply |= {"gap_after": st.gap_after, "keepalive_seconds": st.keepalive_seconds}
            return 200, _json(reply)
        if path == "/__streams":
            if method == "DELETE":
                st.streams.clear()
                return 200, b"[]"
            return 200, _json(list(st.streams))
        if path == "/__requests":
            if method == "DELETE":
                st.requests.clear()
                return 200, b"[]"
            return 200, _json(list(st.requests))
        if path == "/__stats":
            if method == "DELETE":
                st.stats.clear()
            return 200, _json(dict(st.stats))
        return 404, b'{"error":"not found"}'


RETRY = {"retry-after": "1"}


async def serve(host: str, port: int, api_key: str | None) -> None:
    state = State(api_key)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpProtocol(state), host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--api-key", default=None, help="require this key (Bearer or x-api-key)")
    args = parser.parse_args()
    try:
        import uvloop  # type: ignore[import-not-found]

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(args.host, args.port, args.api_key))


if __name__ == "__main__":
    main()
