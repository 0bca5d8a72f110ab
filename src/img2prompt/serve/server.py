"""``img2prompt serve``: load the model and the prompt bank once, then run the app under uvicorn, with the
connection limits of ``serve.connections``."""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from img2prompt.decode import DecodeConfig
from img2prompt.models.specs import Spec
from img2prompt.serve.app import create_app
from img2prompt.serve.connections import ConnectionLimits, guarded_protocol
from img2prompt.serve.settings import ServeConfig


def build_app(spec: Spec, settings: ServeConfig, decode: DecodeConfig, bank: Path | None = None) -> FastAPI:
    """The app for a model spec (parsed once, by the caller); with a bank (given, or the one the model carries), it
    decodes prompts too."""
    from img2prompt.models.hub import Bank
    from img2prompt.models.load import load_model, model_bank

    found = Bank(bank) if bank is not None else model_bank(spec)
    embedder = load_model(spec, device=settings.device, batch_size=settings.batch_size,
                          bank=found.table if found else None)
    decoder = None
    if found is not None:
        from img2prompt.dictionary import load_decoder

        decoder = load_decoder(found.table, decode, dictionary=found.dictionary)
    return create_app(embedder, decoder, settings, name=spec.display_name())


def uvicorn_config(app: FastAPI, settings: ServeConfig) -> uvicorn.Config:
    """uvicorn's settings for ``app``: its HTTP/1.1 protocol held to the header deadline and connection caps."""
    limits = ConnectionLimits(max_connections=settings.max_connections,
                              max_per_client=settings.max_connections_per_client,
                              header_timeout_s=settings.header_timeout_s)
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=5,
                          http=guarded_protocol(limits))


def run_server(spec: Spec, settings: ServeConfig, decode: DecodeConfig, bank: Path | None = None) -> None:
    """Serve until interrupted; ``port=0`` picks a free port (uvicorn logs the one it bound)."""
    from img2prompt.models.load import check_spec

    check_spec(spec)  # a missing model is one line, before the start-up line
    what = f"{spec.display_name()} and the prompt bank {bank.name}" if bank else spec.display_name()
    print(f"serve: loading {what} (the first request waits for nothing once uvicorn says it is running)",
          file=sys.stderr, flush=True)
    uvicorn.Server(uvicorn_config(build_app(spec, settings, decode, bank), settings)).run()
