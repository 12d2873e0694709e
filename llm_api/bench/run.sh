#!/usr/bin/env bash
# llm_api's benchmark in one command: the fake provider directly, LiteLLM's proxy and llm_api,
# one worker each, pinned to CPUs, at c=1/10/50, plain and streaming, for an OpenAI-compatible
# and an Anthropic (translated) deployment. Prints the table and the llm_api/proxy ratios.
#   llm_api/bench/run.sh [--duration SECONDS] [--only-quotas]
# The run ends with the token quotas' overhead: llm_api with quotas on (Redis on loopback) vs off;
# --only-quotas runs just that comparison (no LiteLLM proxy needed).
set -euo pipefail
cd "$(dirname "$0")/../.."
BENCH=build/bench
mkdir -p "$BENCH"
# LiteLLM's own proxy, the baseline: the newest litellm whose [proxy] extra installs from the
# index (1.110.x pins a litellm-proxy that has no distribution; see the LiteLLM facts).
PROXY_VERSION=1.108.7
if [[ " $* " != *" --only-quotas "* ]] && [ "$(cat "$BENCH/proxy-venv/.installed" 2>/dev/null)" != "$PROXY_VERSION" ]; then
  rm -rf "$BENCH/proxy-venv"
  python3.11 -m venv "$BENCH/proxy-venv"
  "$BENCH/proxy-venv/bin/pip" install -q "litellm[proxy]==$PROXY_VERSION"
  echo "$PROXY_VERSION" >"$BENCH/proxy-venv/.installed"
fi
command -v wrk >/dev/null || { echo "bench: wrk is missing (make setup installs it)" >&2; exit 1; }
exec .venv/bin/python llm_api/bench/bench.py --proxy-venv "$BENCH/proxy-venv" --out "$BENCH" "$@"
