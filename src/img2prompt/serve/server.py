"""``img2prompt serve``: load the model and the prompt bank once, then run the app under uvicorn, with the
connection limits of ``serve.connections``."""

from __future__ import annotations

from pathlib import Path

import uvicorn
from fastapi import FastAPI

from img2prompt.decode import DecodeConfig
from img2prompt.serve.app import create_app
from img2prompt.serve.connections import ConnectionLimits, guarded_protocol
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


def uvicorn_config(app: FastAPI, settings: ServeConfig) -> uvicorn.Config:
    """uvicorn's settings for ``app``: its HTTP/1.1 protocol held to the header deadline and connection caps."""
    limits = ConnectionLimits(max_connections=settings.max_connections,
                              max_per_client=settings.max_connections_per_client,
                              header_timeout_s=settings.header_timeout_s)
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=5,
                          http=guarded_protocol(limits))


def run_server(model: str, settings: ServeConfig, decode: DecodeConfig, bank: Path | None = None) -> None:
    """Serve until interrupted; ``port=0`` picks a free port (uvicorn logs the one it bound)."""
    uvicorn.Server(uvicorn_config(build_app(model, settings, decode, bank), settings)).run()
