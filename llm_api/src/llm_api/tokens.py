"""Prompt tokens counted locally, for quota reservations (an estimate; settlement corrects it).

tiktoken's `cl100k_base`, loaded from the copy that ships in the litellm package (no network),
plus OpenAI's per-message framing (4 tokens a message, 3 for the reply's priming). Images count
as a high-detail 1024x1024 image (765 tokens). Other providers' tokenizers differ: the estimate
is then approximate, and settling to the provider's usage keeps the counts exact.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any, Protocol

import orjson

log = logging.getLogger("llm_api.tokens")
PER_MESSAGE, PER_REPLY, PER_IMAGE = 4, 3, 765


class Encoding(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


@functools.cache
def _encoding() -> Encoding | None:
    spec = importlib.util.find_spec("litellm")
    for root in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(root) / "litellm_core_utils" / "tokenizers"
        if bundled.is_dir():
            # The same cache directory LiteLLM points tiktoken at when it is imported.
            os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(bundled))
    try:
        import tiktoken

        enc: Encoding = tiktoken.get_encoding("cl100k_base")
        return enc
    except Exception:
        log.warning("no local tokenizer: prompt tokens are estimated from byte counts")
        return None


class TokenCounter:
    def __init__(self) -> None:
        self._enc: Encoding | None = None

    async def load(self) -> None:
        """Load the tokenizer (a second or two of CPU, once per process) off the event loop."""
        self._enc = await asyncio.to_thread(_encoding)

    def count(self, text: str) -> int:
        if self._enc is None:
            return len(text.encode())  # every token holds at least one byte: an upper bound
        return len(self._enc.encode_ordinary(text))

    def prompt_tokens(self, body: dict[str, Any], chat: bool) -> int:
        if not chat:
            inp = body.get("input")
            items = inp if isinstance(inp, list) else [inp]
            total = 0
            for item in items:
                if isinstance(item, str):
                    total += self.count(item)
                elif isinstance(item, list):
                    total += len(item)  # already token ids
            return max(total, 1)
        total = PER_REPLY
        for msg in body.get("messages") or ():
            if not isinstance(msg, dict):
                continue
            total += PER_MESSAGE
            for key, value in msg.items():
                if key == "content":
                    total += self._content(value)
                elif isinstance(value, str):
                    total += self.count(value)
                elif value is not None:
                    total += self.count(orjson.dumps(value).decode())
        for key in ("tools", "functions", "response_format"):
            if body.get(key):
                total += self.count(orjson.dumps(body[key]).decode())
        return total

    def _content(self, value: object) -> int:
        if isinstance(value, str):
            return self.count(value)
        total = 0
        if isinstance(value, list):
            for part in value:
                if not isinstance(part, dict):
                    continue
                if isinstance(part.get("text"), str):
                    total += self.count(part["text"])
                elif part.get("type") in ("image_url", "input_image", "image"):
                    total += PER_IMAGE
                else:
                    total += self.count(orjson.dumps(part).decode())
        return total
