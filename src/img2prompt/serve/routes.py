"""The HTTP API's routes, on one ``APIRouter``: ``POST /v1/predict``, ``POST /v1/predict/batch``, ``GET /healthz``
and the web page. Each answer is an ``answers.Answer``, the same object ``interrogate --json`` prints.

The routes find what the app holds (the model's micro-batcher, the decoder, the settings, the gate) on
``request.app.state`` (``serve.app.Service``), so they are plain functions, registered once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from img2prompt.answers import Answer, Timings, describe
from img2prompt.serve.uploads import Upload, decode_upload, header_pixels, read_uploads

if TYPE_CHECKING:
    from img2prompt.serve.service import Service

STATIC_DIR = Path(__file__).parent / "static"
router = APIRouter()


class BatchAnswer(BaseModel):
    model: str = Field(description="the model's name")
    results: list[Answer] = Field(description="one per image, in the order sent")


class Health(BaseModel):
    status: str
    model: str = Field(description="the model's name")
    bank_size: int
    modes: list[str] = Field(description="the decode modes a request may ask for (the mode query parameter)")
    mode: str = Field(description="the mode used when a request names none")
    in_flight: int = Field(description="requests being processed")
    receiving: int = Field(description="requests whose body is still arriving")
    batches_run: int
    warning: str | None = Field(None, description="what the model cannot do, e.g. that it learned only synthetic "
                                                  "scenes; shown on the page")


class ErrorBody(BaseModel):
    error: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": why} for code, why in [
        (400, "corrupt, truncated, oversized or too elongated image; malformed body"),
        (408, "request body not received within serve.body_timeout_s"), (413, "request too large"),
        (415, "unsupported content or image type"), (422, "missing or unexpected fields; unknown mode"),
        (500, "the model failed on this request's images"), (503, "server busy: retry after Retry-After seconds")]
}


@dataclass(frozen=True)
class Options:
    """What a request asks for besides its images (the query parameters, with the server's defaults)."""

    top_k: int
    decode: bool
    mode: str


def options(request: Request,
            top_k: int | None = Query(None, ge=0, description="nearest bank prompts to return (default: the "
                                                               "server's serve.top_k, at most serve.max_top_k)"),
            decode: bool = Query(True, description="compose a prompt (false: embedding and nearest prompts only)"),
            mode: str | None = Query(None, description="how hard to search for the prompt (default: the server's "
                                                       "decode.mode; /healthz lists the modes); each mode is a fixed "
                                                       "amount of search work, so an image always gets the same "
                                                       "prompt")) -> Options:
    service: Service = request.app.state.service
    chosen_k = service.settings.top_k if top_k is None else top_k
    if chosen_k > service.settings.max_top_k:
        raise HTTPException(422, f"top_k: at most {service.settings.max_top_k} (got {chosen_k})")
    chosen_mode = mode or service.decode_config.mode
    if chosen_mode not in service.decode_config.modes:
        raise HTTPException(422, f"mode: unknown mode {chosen_mode!r} "
                                 f"(choose from {', '.join(service.decode_config.modes)})")
    return Options(chosen_k, decode, chosen_mode)


@router.post("/v1/predict", response_model=Answer, responses=ERRORS)
async def predict(request: Request, asked: Options = Depends(options)) -> Answer:
    """One image (multipart field ``file``, or JSON ``{"image": base64}``) -> prompt, nearest prompts, embedding."""
    started = time.perf_counter()
    uploads = await read_uploads(request, field="file", batch=False, max_images=1)
    return (await answer(request.app.state.service, uploads, asked, started))[0]


@router.post("/v1/predict/batch", response_model=BatchAnswer, responses=ERRORS)
async def predict_batch(request: Request, asked: Options = Depends(options)) -> BatchAnswer:
    """Several images (repeated multipart field ``files``, or JSON ``{"images": [...]}``), answered in order."""
    service: Service = request.app.state.service
    started = time.perf_counter()
    uploads = await read_uploads(request, field="files", batch=True, max_images=service.settings.max_images)
    return BatchAnswer(model=service.name, results=await answer(service, uploads, asked, started))


@router.get("/healthz", response_model=Health)
async def healthz(request: Request) -> Health:
    """Liveness and load: the model's name, the bank, the modes, requests in flight, forward passes run."""
    service: Service = request.app.state.service
    return Health(status="ok", model=service.name, bank_size=len(service.decoder.prompts) if service.decoder else 0,
                  modes=list(service.decode_config.modes), mode=service.decode_config.mode,
                  in_flight=service.gate.in_flight, receiving=service.gate.receiving,
                  batches_run=service.batcher.batches_run, warning=service.warning)


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html")


async def answer(service: Service, uploads: list[Upload], asked: Options, started: float) -> list[Answer]:
    """Decode the uploads (within the decoded-pixel budget), embed them in a shared forward pass, then describe
    each embedding on the decode thread."""
    settings = service.settings
    read_ms = (time.perf_counter() - started) * 1000
    pixels = await run_in_threadpool(lambda: sum(header_pixels(u, settings.max_pixels) for u in uploads))
    with service.gate.decoded(pixels):
        images = await run_in_threadpool(
            lambda: [decode_upload(u, allowed_formats=list(settings.allowed_formats),
                                   max_pixels=settings.max_pixels) for u in uploads])
        image_ms = (time.perf_counter() - started) * 1000 - read_ms
        vectors, info = await service.batcher.embed(images)
        del images  # the budget covers decoded images; the rest of the answer needs only the vectors
    loop = asyncio.get_running_loop()
    answers = []
    for upload, vector in zip(uploads, vectors, strict=True):
        fields = await loop.run_in_executor(service.decode_pool, lambda v=vector: describe(
            v, service.decoder, top_k=asked.top_k, decode=asked.decode, mode=asked.mode))
        timings = Timings(read_ms=round(read_ms, 2), image_ms=round(image_ms, 2), queue_ms=round(info.queue_ms, 2),
                          embed_ms=round(info.embed_ms, 2), decode_ms=round(fields.pop("decode_ms"), 2),
                          total_ms=round((time.perf_counter() - started) * 1000, 2), batch_size=info.batch_size)
        answers.append(Answer(image=upload.name, model=service.name, warning=service.warning, timings=timings,
                              **fields))
    return answers
