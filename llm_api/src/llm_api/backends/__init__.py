"""Backends: how one attempt on one deployment is made. The router around them is shared.

Each backend raises `errors.UpstreamError` for every upstream failure, before the first byte of a
stream (from `open_stream`) or in its middle (from iterating the stream), so retries, fallbacks,
cooldowns, metrics and logs behave the same whichever path a deployment takes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from llm_api.config import Deployment


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        if not isinstance(usage, dict):
            return None
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return cls(
            prompt if isinstance(prompt, int) else 0,
            completion if isinstance(completion, int) else 0,
        )

    @classmethod
    def from_litellm(cls, usage: Any) -> Usage | None:
        """From LiteLLM's `Usage` object (None when there is none)."""
        if usage is None:
            return None
        return cls(
            int(getattr(usage, "prompt_tokens", 0) or 0),
            int(getattr(usage, "completion_tokens", 0) or 0),
        )


class Stream(Protocol):
    """An open upstream stream: iterate for SSE bytes (`data: ...\\n\\n` events, `[DONE]` last).

    `usage` is filled once the upstream reports it.
    """

    usage: Usage | None

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    def partial_usage(self) -> Usage | None:
        """The tokens seen so far when the stream ends early (the client went away, a failure):
        the provider's counts when it sent them, else one output token per content chunk."""
        ...

    async def aclose(self) -> None:
        """Release the provider's connection (closed when the answer was not read to its end)."""
        ...


class Backend(Protocol):
    async def chat(self, dep: Deployment, body: dict[str, Any]) -> tuple[bytes, Usage | None]: ...

    async def open_stream(
        self, dep: Deployment, body: dict[str, Any], include_usage: bool
    ) -> Stream: ...

    async def embeddings(
        self, dep: Deployment, body: dict[str, Any]
    ) -> tuple[bytes, Usage | None]: ...


DONE = b"data: [DONE]\n\n"
