"""llm_api: ai-gateway's unified OpenAI-compatible LLM service (FastAPI + LiteLLM)."""

__version__ = "0.1.0"
