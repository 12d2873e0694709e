#!/usr/bin/env python3
"""A chat completion and a streamed one through the gateway with the official OpenAI SDK.

    openai_sdk_check.py --base-url https://GATEWAY/llm/v1 --key KEY --model MODEL [--ca-file CA]

The client key is only the SDK's `api_key`, as almost every OpenAI client (SDKs, LangChain, IDE
plugins) lets users set it: the SDK sends it as `Authorization: Bearer <key>`, which the gateway
maps for Kong's key-auth (and strips before llm_api). A second client with a wrong `api_key`
must get Kong's 401. With --ca-file the SDK's httpx client trusts that CA only (the gateway's
private CA), so the chain and host name are verified. Prints a JSON summary; any other SDK error
ends the script with its message.
"""

import argparse
import json
import ssl

import httpx
import openai


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--ca-file", default="")
    args = parser.parse_args()
    verify = ssl.create_default_context(cafile=args.ca_file) if args.ca_file else True
    http_client = httpx.Client(verify=verify, timeout=60)
    client = openai.OpenAI(
        base_url=args.base_url, api_key=args.key, max_retries=0, timeout=60, http_client=http_client
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
    wrong = openai.OpenAI(
        base_url=args.base_url,
        api_key="not-a-key",
        max_retries=0,
        timeout=60,
        http_client=http_client,
    )
    try:
        wrong.chat.completions.create(model=args.model, messages=messages)  # type: ignore[arg-type]
        refused: dict = {"status": None}
    except openai.AuthenticationError as exc:
        refused = {"status": exc.status_code, "body": exc.body}
    summary = {
        "sdk_version": openai.__version__,
        "chat": {
            "id": chat.id,
            "model": chat.model,
            "content": chat.choices[0].message.content,
            "total_tokens": chat.usage.total_tokens if chat.usage else None,
        },
        "stream": {"chunks": chunks, "content": "".join(parts)},
        "wrong_key": refused,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
