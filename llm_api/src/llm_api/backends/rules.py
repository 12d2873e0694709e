"""LiteLLM's per-model OpenAI parameter rules on the native path.

Some OpenAI models take other parameters than the rest: the o-series and the gpt-5 series want
`max_completion_tokens` instead of `max_tokens` and refuse some `temperature` values. LiteLLM
keeps those rules in the provider config `ProviderConfigManager.get_provider_chat_config`
returns for the model (litellm/utils.py); its `map_openai_params` applies them, dropping what
the model does not support when the deployment sets `drop_params`. Only deployments whose model
has rules (`config.has_param_rules`) pay for LiteLLM's import; the others never import it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from llm_api.backends.translated import import_state
from llm_api.config import NATIVE_REQUEST_OPTIONS, Deployment
from llm_api.errors import Kind, UpstreamError


class ParamRules:
    def __init__(self, litellm_import: asyncio.Future[Any]) -> None:
        self._import = litellm_import
        self._configs: dict[str, Any] = {}

    def not_ready(self) -> str | None:
        return import_state(self._import)

    def close(self) -> None:
        if not self._import.done():
            self._import.cancel()

    async def apply(self, dep: Deployment, payload: dict[str, Any]) -> dict[str, Any]:
        """`payload` with the model's rules applied to its OpenAI parameters."""
        litellm = await asyncio.shield(self._import)
        config: Any = self._configs.get(dep.id)
        if config is None:
            from litellm.utils import ProviderConfigManager

            config = ProviderConfigManager.get_provider_chat_config(
                model=dep.upstream_model, provider=litellm.LlmProviders.OPENAI
            )
            self._configs[dep.id] = config
        params = {k: v for k, v in payload.items() if k in NATIVE_REQUEST_OPTIONS}
        rest = {k: v for k, v in payload.items() if k not in NATIVE_REQUEST_OPTIONS}
        try:
            mapped = config.map_openai_params(
                non_default_params=params,
                optional_params={},
                model=dep.upstream_model,
                drop_params=bool(dep.extra_params.get("drop_params")),
            )
        except litellm.UnsupportedParamsError:
            raise UpstreamError(
                Kind.BAD_REQUEST,
                message="The model does not support a parameter of the request (the "
                "deployment can drop unsupported parameters with drop_params).",
                code="unsupported_parameter",
            ) from None
        return {**rest, **mapped}
