"""Serving: a FastAPI app (``create_app``) with a micro-batched model, upload limits and a local web page."""

from img2prompt.serve.app import create_app
from img2prompt.serve.settings import ServeConfig

__all__ = ["ServeConfig", "create_app"]
