"""The `mock_response` backend: answers locally, no provider, no key (the embedded demo model)."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson

from llm_api.backends import DONE, Usage
from llm_api.config import Deployment


def _words(body: dict[str, Any]) -> int:
    count = 0
    for msg in body.get("messages") or ():
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, str):
            count += len(content.split())
    inp = body.get("input")
    for item in inp if isinstance(inp, list) else [inp]:
        if isinstance(item, str):
            count += len(item.split())
    return max(count, 1)


class MockStream:
    def __init__(self, dep: Deployment, body: dict[str, Any], include_usage: bool) -> None:
        self.usage: Usage | None = None
        self._dep, self._body, self._include_usage = dep, body, include_usage

    async def __aiter__(self) -> AsyncIterator[bytes]:
        text = self._dep.mock_response or ""
        pieces = [w + " " for w in text.split(" ")]
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            obj = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self._dep.model_name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return b"data: " + orjson.dumps(obj) + b"\n\n"

        out = [chunk({"role": "assistant", "content": ""})]
        out += [chunk({"content": p}) for p in pieces]
        out.append(chunk({}, "stop"))
        self.usage = Usage(_words(self._body), len(pieces))
        if self._include_usage:
            usage = _usage(self.usage)
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created}
            obj |= {"model": self._dep.model_name, "choices": [], "usage": usage}
            out.append(b"data: " + orjson.dumps(obj) + b"\n\n")
        out.append(DONE)
        yield b"".join(out)

    def partial_usage(self) -> Usage | None:
        return self.usage

    async def aclose(self) -> None:
        return None


def _usage(u: Usage) -> dict[str, int]:
    total = u.prompt_tokens + u.completion_tokens
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens} | {
        "total_tokens": total
    }


class MockBackend:
    async def chat(self, dep: Deployment, body: dict[str, Any]) -> tuple[bytes, Usage | None]:
        text = dep.mock_response or ""
        usage = Usage(_words(body), len(text.split(" ")))
        resp = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": dep.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(usage),
        }
        return orjson.dumps(resp), usage

    async def open_stream(
        self, dep: Deployment, body: dict[str, Any], include_usage: bool
    ) -> MockStream:
        return MockStream(dep, body, include_usage)

    async def embeddings(self, dep: Deployment, body: dict[str, Any]) -> tuple[bytes, Usage | None]:
        inp = body["input"]
        items = inp if isinstance(inp, list) else [inp]
        data = []
        for i, item in enumerate(items):
            digest = hashlib.sha256(orjson.dumps(item)).digest()
            vec = [round(b / 255.0, 6) for b in digest[:16]]
            data.append({"object": "embedding", "index": i, "embedding": vec})
        ptok = _words(body)
        usage = {"prompt_tokens": ptok, "total_tokens": ptok}
        resp = {"object": "list", "data": data, "model": dep.model_name, "usage": usage}
        return orjson.dumps(resp), Usage(ptok, 0)
