"""The FastAPI app: image in, prompt embedding + decoded prompt + nearest bank prompts out, and a web page.

``create_app(model, decoder, settings)`` takes any ``ImageEmbedder`` (a checkpoint, an ensemble, a baseline)
and an optional ``PromptDecoder``; it loads nothing itself, so the model is loaded once by the caller. Images
of concurrent requests are embedded together by the micro-batcher; prompt decoding runs in one worker thread
(the text embedder is not shared across threads). Every client mistake is a 4xx JSON ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from img2prompt.errors import Img2PromptError
from img2prompt.serve.batcher import BatchInfo, MicroBatcher
from img2prompt.serve.limits import Gate, RequestLimits
from img2prompt.serve.settings import ServeConfig
from img2prompt.serve.uploads import Upload, decode_upload, read_uploads

if TYPE_CHECKING:
    from img2prompt.decode import PromptDecoder
    from img2prompt.models.embedder import ImageEmbedder

STATIC_DIR = Path(__file__).parent / "static"


class DecodedPrompt(BaseModel):
    text: str
    cosine: float


class Neighbour(BaseModel):
    prompt: str
    score: float


class Timings(BaseModel):
    """Milliseconds spent on each step; ``batch_size`` is how many images shared the forward pass."""

    read_ms: float
    image_ms: float
    queue_ms: float
    embed_ms: float
    decode_ms: float
    total_ms: float
    batch_size: int


class Prediction(BaseModel):
    name: str
    model: str
    embedding: list[float]
    prompt: DecodedPrompt | None
    nearest: list[Neighbour]
    timings: Timings


class BatchPrediction(BaseModel):
    model: str
    results: list[Prediction]


class Health(BaseModel):
    status: str
    model: str
    bank_size: int
    in_flight: int
    batches_run: int


class ErrorBody(BaseModel):
    error: str


def _upload_body(field: str, batch: bool) -> dict[str, Any]:
    """The request body in the OpenAPI schema (the endpoints read it by hand to accept two encodings)."""
    file_schema = {"type": "string", "format": "binary"}
    image = {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "description": "base64 bytes or a data: URL"}, "name": {"type": "string"}}}
    multipart = {field: {"type": "array", "items": file_schema} if batch else file_schema}
    json_schema = {"type": "object", "required": ["images"], "properties": {"images": {"type": "array",
                   "items": image}}} if batch else image
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": [field], "properties": multipart}},
        "application/json": {"schema": json_schema}}}}


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": why} for code, why in [
        (400, "corrupt, truncated or oversized image; malformed body"), (413, "request too large"),
        (415, "unsupported content or image type"), (422, "missing or unexpected fields"), (503, "server busy")]
}


def create_app(model: ImageEmbedder, decoder: PromptDecoder | None = None, settings: ServeConfig | None = None
               ) -> FastAPI:
    """Build the app around an already loaded model; start it with uvicorn or ``TestClient(app)``."""
    settings = settings or ServeConfig()
    batcher = MicroBatcher(model.embed, max_batch=settings.batch_size, wait_s=settings.batch_wait_ms / 1000)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        app.state.decode_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="img2prompt-decode")
        try:
            yield
        finally:
            await batcher.stop()
            app.state.decode_pool.shutdown(wait=True)

    # Swagger UI and ReDoc load their scripts from a CDN, so only the schema itself is served.
    app = FastAPI(title="img2prompt", summary="Recover the prompt behind a Stable Diffusion image.",
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    gate = Gate(max_body_bytes=settings.max_upload_bytes, max_in_flight=settings.max_in_flight)
    app.add_middleware(RequestLimits, gate=gate)
    app.state.settings = settings
    app.state.gate = gate
    app.state.batcher = batcher
    _add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    async def predict_uploads(uploads: list[Upload], top_k: int, decode: bool, started: float) -> list[Prediction]:
        read_ms = (time.perf_counter() - started) * 1000
        images = await run_in_threadpool(
            lambda: [decode_upload(u, allowed_formats=list(settings.allowed_formats), max_pixels=settings.max_pixels)
                     for u in uploads])
        image_ms = (time.perf_counter() - started) * 1000 - read_ms
        vectors, info = await batcher.embed(images)
        loop = asyncio.get_running_loop()
        results = []
        for upload, vector in zip(uploads, vectors, strict=True):
            decoded, nearest, decode_ms = await loop.run_in_executor(
                app.state.decode_pool, _describe, vector, top_k, decode)
            results.append(Prediction(
                name=upload.name, model=model.name, embedding=[float(x) for x in vector], prompt=decoded,
                nearest=nearest, timings=_timings(read_ms, image_ms, info, decode_ms, started)))
        return results

    def _describe(vector: np.ndarray, top_k: int, decode: bool) -> tuple[DecodedPrompt | None, list[Neighbour], float]:
        if decoder is None:
            return None, [], 0.0
        started = time.perf_counter()
        nearest = [Neighbour(prompt=p, score=s) for p, s in decoder.nearest(vector, top_k)] if top_k else []
        decoded = None
        if decode:
            result = decoder.decode(vector)
            decoded = DecodedPrompt(text=result.text, cosine=result.cosine)
        return decoded, nearest, (time.perf_counter() - started) * 1000

    top_k_query = Query(settings.top_k, ge=0, le=settings.max_top_k, description="nearest bank prompts to return")
    decode_query = Query(True, description="compose a prompt (false: embedding and nearest prompts only)")

    @app.post("/v1/predict", response_model=Prediction, responses=_ERRORS, openapi_extra=_upload_body("file", False))
    async def predict(request: Request, top_k: int = top_k_query, decode: bool = decode_query) -> Prediction:
        """One image (multipart field ``file``, or JSON ``{"image": base64}``) -> embedding, prompt, neighbours."""
        started = time.perf_counter()
        uploads = await read_uploads(request, field="file", batch=False, max_images=1)
        return (await predict_uploads(uploads, top_k, decode, started))[0]

    @app.post("/v1/predict/batch", response_model=BatchPrediction, responses=_ERRORS,
              openapi_extra=_upload_body("files", True))
    async def predict_batch(request: Request, top_k: int = top_k_query, decode: bool = decode_query) -> BatchPrediction:
        """Several images (repeated multipart field ``files``, or JSON ``{"images": [...]}``), answered in order."""
        started = time.perf_counter()
        uploads = await read_uploads(request, field="files", batch=True, max_images=settings.max_images)
        return BatchPrediction(model=model.name, results=await predict_uploads(uploads, top_k, decode, started))

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        """Liveness and load: the model's name, the bank size, requests in flight, forward passes run."""
        return Health(status="ok", model=model.name, bank_size=len(decoder.prompts) if decoder else 0,
                      in_flight=gate.in_flight, batches_run=batcher.batches_run)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    return app


def _timings(read_ms: float, image_ms: float, info: BatchInfo, decode_ms: float, started: float) -> Timings:
    return Timings(read_ms=round(read_ms, 2), image_ms=round(image_ms, 2), queue_ms=round(info.queue_ms, 2),
                   embed_ms=round(info.embed_ms, 2), decode_ms=round(decode_ms, 2),
                   total_ms=round((time.perf_counter() - started) * 1000, 2), batch_size=info.batch_size)


def _add_error_handlers(app: FastAPI) -> None:
    """Every error is ``{"error": "<one line>"}``: client mistakes 4xx, anything unexpected a bare 500."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p not in ("query", "body"))
        return JSONResponse({"error": f"{where}: {first['msg']}"}, status_code=422)

    @app.exception_handler(Img2PromptError)
    async def user_error(_: Request, exc: Img2PromptError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(Exception)
    async def server_error(_: Request, exc: Exception) -> JSONResponse:  # uvicorn still logs the traceback
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server log"}, status_code=500)
