"""``img2prompt serve``: load the model and the prompt bank once, then run the app under uvicorn, with the
connection limits of ``serve.connections``."""

from __future__ import annotations

from pathlib import Path

import uvicorn
from fastapi import FastAPI

from img2prompt.config import load_config, validate
from img2prompt.serve.app import create_app
from img2prompt.serve.connections import ConnectionLimits, guarded_protocol
from img2prompt.serve.settings import ServeConfig


def build_app(model: str, bank: Path | None = None, config: Path | None = None,
              overrides: list[str] | None = None, host: str | None = None, port: int | None = None
              ) -> tuple[FastAPI, ServeConfig]:
    """The app for a checkpoint, ensemble YAML or baseline spec, with the ``serve:``/``decode:`` config sections;
    ``host``/``port`` (the command's flags) replace the config's and are checked by the same rules, before the
    model loads."""
    from img2prompt.models.load import load_model

    loaded = load_config(config, overrides)
    flags = {key: value for key, value in (("host", host), ("port", port)) if value is not None}
    settings = validate(ServeConfig, {**loaded.serve.model_dump(), **flags}, "--host/--port", "serve")
    embedder = load_model(model, device=settings.device, batch_size=settings.batch_size, bank=bank)
    decoder = None
    if bank is not None:
        from img2prompt.decode import PromptDecoder

        decoder = PromptDecoder.from_table(bank, config=loaded.decode)
    return create_app(embedder, decoder, settings), settings


def uvicorn_config(app: FastAPI, settings: ServeConfig) -> uvicorn.Config:
    """uvicorn's settings for ``app``: its HTTP/1.1 protocol held to the header deadline and connection caps."""
    limits = ConnectionLimits(max_connections=settings.max_connections,
                              max_per_client=settings.max_connections_per_client,
                              header_timeout_s=settings.header_timeout_s)
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=5,
                          http=guarded_protocol(limits))


def run_server(model: str, bank: Path | None = None, config: Path | None = None, overrides: list[str] | None = None,
               host: str | None = None, port: int | None = None) -> None:
    """Serve until interrupted; ``port=0`` picks a free port (uvicorn logs the one it bound)."""
    app, settings = build_app(model, bank, config, overrides, host, port)
    uvicorn.Server(uvicorn_config(app, settings)).run()
