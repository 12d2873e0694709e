"""Request-body checks for the OpenAI endpoints; every failure names the bad parameter.

Hand-written rather than pydantic models: the body is forwarded as the client sent it (unknown
parameters included, for providers that support them), and these checks cost microseconds.
"""

from __future__ import annotations

from typing import Any

import orjson

from llm_api.errors import ApiError, bad_request

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def parse_json(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise bad_request("The request body is empty; send a JSON object.", None, "invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("The request body is not valid JSON.", None, "invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", None, "invalid_type")
    return body


def _type_error(param: str, expected: str) -> ApiError:
    return bad_request(f"Invalid type for '{param}': expected {expected}.", param, "invalid_type")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _number(body: dict[str, Any], param: str, lo: float, hi: float, integer: bool) -> None:
    value = body.get(param)
    if value is None:
        return
    if not (_is_int(value) if integer else _is_number(value)):
        raise _type_error(param, "an integer" if integer else "a number")
    if not lo <= value <= hi:
        raise bad_request(f"Invalid value for '{param}': must be between {lo} and {hi}.", param)


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise bad_request(
            "Missing required parameter: 'model'.", "model", "missing_required_parameter"
        )
    if not isinstance(model, str) or not model.strip():
        raise _type_error("model", "a non-empty string")
    return model


def _optional(body: dict[str, Any], param: str, types: type | tuple[type, ...], name: str) -> None:
    value = body.get(param)
    if value is not None and not isinstance(value, types):
        raise _type_error(param, name)


def validate_chat(body: dict[str, Any]) -> str:
    """Check a chat completion request; returns the model name."""
    model = _model(body)
    messages = body.get("messages")
    if messages is None:
        raise bad_request(
            "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"
        )
    if not isinstance(messages, list):
        raise _type_error("messages", "an array")
    if not messages:
        raise bad_request(
            "Invalid 'messages': empty array; at least one message is required.",
            "messages",
            "empty_array",
        )
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _type_error(where, "an object")
        role = msg.get("role")
        if role is None:
            raise bad_request(
                f"Missing required parameter: '{where}.role'.",
                f"{where}.role",
                "missing_required_parameter",
            )
        if not isinstance(role, str) or role not in ROLES:
            raise bad_request(
                f"Invalid value for '{where}.role': must be one of {', '.join(sorted(ROLES))}.",
                f"{where}.role",
            )
        content = msg.get("content")
        if content is None:
            if role != "assistant":
                raise bad_request(
                    f"Missing required parameter: '{where}.content'.",
                    f"{where}.content",
                    "missing_required_parameter",
                )
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise _type_error(f"{where}.content[{j}]", "an object with a 'type'")
        elif not isinstance(content, str):
            raise _type_error(f"{where}.content", "a string or an array of content parts")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _type_error("stream", "a boolean")
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _type_error("stream_options", "an object")
        usage = options.get("include_usage")
        if usage is not None and not isinstance(usage, bool):
            raise _type_error("stream_options.include_usage", "a boolean")
    _number(body, "temperature", 0, 2, integer=False)
    _number(body, "top_p", 0, 1, integer=False)
    _number(body, "presence_penalty", -2, 2, integer=False)
    _number(body, "frequency_penalty", -2, 2, integer=False)
    _number(body, "n", 1, 128, integer=True)
    _number(body, "max_tokens", 1, 10_000_000, integer=True)
    _number(body, "max_completion_tokens", 1, 10_000_000, integer=True)
    _number(body, "top_logprobs", 0, 20, integer=True)
    _number(body, "seed", -(2**63), 2**63 - 1, integer=True)
    stop = body.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise _type_error("stop", "a string or an array of strings")
    _optional(body, "user", str, "a string")
    _optional(body, "tools", list, "an array")
    _optional(body, "tool_choice", (str, dict), "a string or an object")
    _optional(body, "response_format", dict, "an object")
    _optional(body, "logit_bias", dict, "an object")
    _optional(body, "logprobs", bool, "a boolean")
    return model


def validate_embeddings(body: dict[str, Any]) -> str:
    """Check an embeddings request; returns the model name."""
    model = _model(body)
    inp = body.get("input")
    if inp is None:
        raise bad_request(
            "Missing required parameter: 'input'.", "input", "missing_required_parameter"
        )
    if isinstance(inp, str):
        if not inp:
            raise bad_request("Invalid 'input': empty string.", "input")
    elif isinstance(inp, list):
        if not inp:
            raise bad_request("Invalid 'input': empty array.", "input", "empty_array")
        ok = (
            all(isinstance(i, str) and i for i in inp)
            or all(_is_int(i) for i in inp)
            or all(isinstance(i, list) and i and all(_is_int(t) for t in i) for i in inp)
        )
        if not ok:
            raise _type_error(
                "input", "a string, an array of non-empty strings, or arrays of token ids"
            )
    else:
        raise _type_error("input", "a string or an array")
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise bad_request(
            "Invalid value for 'encoding_format': must be 'float' or 'base64'.", "encoding_format"
        )
    _number(body, "dimensions", 1, 65536, integer=True)
    _optional(body, "user", str, "a string")
    return model
