#!/usr/bin/env python3
"""A chat completion and a streamed one through the gateway with the official OpenAI SDK.

    openai_sdk_check.py --base-url http://GATEWAY/llm/v1 --key CLIENT_KEY --model MODEL

The client key goes in the `x-api-key` header (`default_headers`, which Kong's key-auth reads)
and, as users often do, also as the SDK's `api_key` (sent as `Authorization: Bearer`, which Kong
must strip before llm_api). Prints a JSON summary; any SDK error ends the script with its message.
"""

import argparse
import json

import openai


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    client = openai.OpenAI(
        base_url=args.base_url,
        api_key=args.key,
        default_headers={"x-api-key": args.key},
        max_retries=0,
        timeout=60,
    )
    messages = [{"role": "user", "content": "Say hello through the gateway."}]
    chat = client.chat.completions.create(model=args.model, messages=messages)  # type: ignore[arg-type]
    chunks = 0
    parts = []
    stream = client.chat.completions.create(model=args.model, messages=messages, stream=True)  # type: ignore[arg-type]
    for chunk in stream:
        chunks += 1
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    summary = {
        "sdk_version": openai.__version__,
        "chat": {
            "id": chat.id,
            "model": chat.model,
            "content": chat.choices[0].message.content,
            "total_tokens": chat.usage.total_tokens if chat.usage else None,
        },
        "stream": {"chunks": chunks, "content": "".join(parts)},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
