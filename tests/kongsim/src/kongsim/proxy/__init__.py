"""The simulator's proxy listener (Kong's ``proxy_listen``, default ``0.0.0.0:8000``)."""

from .app import create_proxy_app

__all__ = ["create_proxy_app"]
