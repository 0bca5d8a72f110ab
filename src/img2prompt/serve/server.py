"""``img2prompt serve``: load the model and the prompt bank once, then run the app under uvicorn."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from img2prompt.decode import DecodeConfig
from img2prompt.serve.app import create_app
from img2prompt.serve.settings import ServeConfig


def build_app(model: str, settings: ServeConfig, decode: DecodeConfig, bank: Path | None = None) -> FastAPI:
    """The app for a checkpoint, ensemble YAML or baseline spec; with a bank, it decodes prompts too."""
    from img2prompt.models.load import load_model

    embedder = load_model(model, device=settings.device, batch_size=settings.batch_size, bank=bank)
    decoder = None
    if bank is not None:
        from img2prompt.decode import PromptDecoder

        decoder = PromptDecoder.from_table(bank, config=decode)
    return create_app(embedder, decoder, settings)


def run_server(model: str, settings: ServeConfig, decode: DecodeConfig, bank: Path | None = None) -> None:
    """Serve until interrupted; ``port=0`` picks a free port (uvicorn logs the one it bound)."""
    import uvicorn

    app = build_app(model, settings, decode, bank)
    # limit_concurrency bounds open connections (uvicorn answers 503 past it); uvicorn has no timeout for a
    # request's headers, so a server exposed to the internet belongs behind a reverse proxy that has one.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=5,
                limit_concurrency=settings.max_connections)
