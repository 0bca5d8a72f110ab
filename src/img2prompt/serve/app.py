"""The FastAPI app: image in, prompt embedding + decoded prompt + nearest bank prompts out, and a web page.

``create_app(model, decoder, settings)`` takes any ``ImageEmbedder`` (a checkpoint, an ensemble, a baseline)
and an optional ``PromptDecoder``; it loads nothing itself, so the model is loaded once by the caller. Images
of concurrent requests are embedded together by the micro-batcher; prompt decoding runs in one worker thread
(the text embedder is not shared across threads). Every client mistake is a 4xx JSON ``{"error": "..."}``.
Answers name the model by ``display_name`` (never a filesystem path); ``/docs`` is Swagger UI served from the
``swagger-ui-bundle`` wheel, so it works offline.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from swagger_ui_bundle import swagger_ui_path

from img2prompt.decode import DecodeConfig
from img2prompt.errors import Img2PromptError
from img2prompt.images import MAX_ASPECT
from img2prompt.models.specs import map_paths
from img2prompt.provenance import MODEL_WARNING, synthetic
from img2prompt.serve.batcher import BatchInfo, MicroBatcher
from img2prompt.serve.limits import AllowedHosts, Gate, RequestLimits
from img2prompt.serve.settings import ServeConfig
from img2prompt.serve.uploads import BatchJSON, ImageJSON, Upload, decode_upload, header_pixels, read_uploads

if TYPE_CHECKING:
    from img2prompt.decode import PromptDecoder
    from img2prompt.models.embedder import ImageEmbedder

STATIC_DIR = Path(__file__).parent / "static"


API_DESCRIPTION = """Recover the prompt behind a Stable Diffusion image: the model predicts the prompt's embedding
(all-MiniLM-L6-v2, 384 floats) and the server composes a readable prompt from its prompt bank. Send one image to
`/v1/predict` or several to `/v1/predict/batch`, as multipart files or base64 JSON. The web page is at [/](/)."""
COSINE = ("cosine of this prompt's text embedding (all-MiniLM-L6-v2) to the image's predicted embedding, "
          "from -1 to 1: how closely the text matches what the model predicted for the image, not how sure the "
          "model is")


class DecodedPrompt(BaseModel):
    """A prompt composed from the bank's prompts and phrases to match the image's predicted embedding."""

    text: str
    cosine: float = Field(description=COSINE)
    mode: str = Field(description="the search mode that composed it")
    capped: bool = Field(description="true when the server's time cap (decode.budget_s) cut the search short: "
                                     "an uncapped search may have found a closer prompt")


class Neighbour(BaseModel):
    prompt: str = Field(description="a prompt of the bank")
    score: float = Field(description="cosine of this bank prompt's embedding to the image's predicted embedding")


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
    name: str = Field(description="the upload's file name (or the JSON name, or a position like image[0])")
    model: str = Field(description="the model's display name")
    embedding: list[float] = Field(description="the predicted prompt embedding (384 floats, unit length)")
    prompt: DecodedPrompt | None = Field(description="null without a prompt bank, or with decode=false")
    nearest: list[Neighbour] = Field(description="the bank prompts closest to the embedding, best first")
    timings: Timings


class BatchPrediction(BaseModel):
    model: str
    results: list[Prediction] = Field(description="one per image, in the order sent")


class Health(BaseModel):
    status: str
    model: str = Field(description="the model's display name")
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


def display_name(spec: str) -> str:
    """The model's name in answers and on the page: its spec without folders, which are the server's business
    (a checkpoint's folder name, an ensemble file's name, ``mean:prompts.parquet``)."""
    return map_paths(spec, lambda path: PurePath(path).name or path)


def _body_schemas() -> dict[str, Any]:
    """The JSON bodies' schemas, from the models the endpoints validate them with."""
    _, top = models_json_schema([(ImageJSON, "validation"), (BatchJSON, "validation")],
                                ref_template="#/components/schemas/{model}")
    return top["$defs"]


def _upload_body(field: str, batch: bool, settings: ServeConfig, example: str) -> dict[str, Any]:
    """The request body in the OpenAPI schema (the endpoints read it by hand to accept two encodings)."""
    formats = ", ".join(settings.allowed_formats)
    limits = (f"{formats}; at most {settings.max_upload_bytes:,} bytes per request and "
              f"{settings.max_pixels:,} pixels per image, the longer side at most {MAX_ASPECT}x the shorter")
    file_schema = {"type": "string", "format": "binary"}
    if batch:
        files = {"type": "array", "items": file_schema,
                 "description": f"the images (up to {settings.max_images}, one part each): {limits}"}
        json_example: dict[str, Any] = {"images": [{"image": example, "name": "grey.png"}]}
    else:
        files = {**file_schema, "description": f"the image: {limits}"}
        json_example = {"image": example, "name": "grey.png"}
    model = "BatchJSON" if batch else "ImageJSON"
    return {"requestBody": {"required": True, "description": "multipart upload, or JSON with base64 images",
                            "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": [field], "properties": {field: files}}},
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}, "example": json_example}}}}


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": why} for code, why in [
        (400, "corrupt, truncated, oversized or too elongated image; malformed body"),
        (408, "request body not received within serve.body_timeout_s"), (413, "request too large"),
        (415, "unsupported content or image type"), (422, "missing or unexpected fields; unknown mode"),
        (500, "the model failed on this request's images"), (503, "server busy: retry after Retry-After seconds")]
}


def create_app(model: ImageEmbedder, decoder: PromptDecoder | None = None, settings: ServeConfig | None = None
               ) -> FastAPI:
    """Build the app around an already loaded model; start it with uvicorn or ``with TestClient(app)`` (the
    lifespan starts the micro-batcher)."""
    settings = settings or ServeConfig()
    batcher = MicroBatcher(model.embed, max_batch=settings.batch_size, wait_s=settings.batch_wait_ms / 1000)
    name = display_name(model.name)
    warning = MODEL_WARNING if synthetic(model.sources) else None
    decode_config = decoder.config if decoder is not None else DecodeConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        app.state.decode_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="img2prompt-decode")
        try:
            yield
        finally:
            await batcher.stop()
            app.state.decode_pool.shutdown(wait=True)

    app = FastAPI(title="img2prompt", summary="Recover the prompt behind a Stable Diffusion image.",
                  description=API_DESCRIPTION, lifespan=lifespan, docs_url=None, redoc_url=None)
    # Swagger UI 4 (the offline bundle) renders OpenAPI 3.0 only; of 3.1 the schema uses just {"type": "null"} in
    # optional fields, which it shows as it stands.
    app.openapi_version = "3.0.3"
    app.openapi = _with_body_schemas(app.openapi)  # type: ignore[method-assign]
    gate = Gate(max_body_bytes=settings.max_upload_bytes, max_in_flight=settings.max_in_flight,
                max_receiving_bytes=settings.max_receiving_bytes, body_timeout_s=settings.body_timeout_s,
                max_decoded_pixels=settings.max_decoded_pixels)
    app.add_middleware(RequestLimits, gate=gate)
    app.add_middleware(AllowedHosts, hosts=settings.hosts())  # outermost: checked first
    app.state.settings = settings
    app.state.gate = gate
    app.state.batcher = batcher
    _add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_docs(app)

    async def predict_uploads(uploads: list[Upload], top_k: int, decode: bool, mode: str,
                              started: float) -> list[Prediction]:
        read_ms = (time.perf_counter() - started) * 1000
        pixels = await run_in_threadpool(lambda: sum(header_pixels(u, settings.max_pixels) for u in uploads))
        with gate.decoded(pixels):
            images = await run_in_threadpool(
                lambda: [decode_upload(u, allowed_formats=list(settings.allowed_formats),
                                       max_pixels=settings.max_pixels) for u in uploads])
            image_ms = (time.perf_counter() - started) * 1000 - read_ms
            vectors, info = await batcher.embed(images)
            del images  # the budget covers decoded images; the rest of the answer needs only the vectors
        loop = asyncio.get_running_loop()
        results = []
        for upload, vector in zip(uploads, vectors, strict=True):
            decoded, nearest, decode_ms = await loop.run_in_executor(
                app.state.decode_pool, _describe, vector, top_k, decode, mode)
            results.append(Prediction(
                name=upload.name, model=name, embedding=[float(x) for x in vector], prompt=decoded,
                nearest=nearest, timings=_timings(read_ms, image_ms, info, decode_ms, started)))
        return results

    def _describe(vector: np.ndarray, top_k: int, decode: bool, mode: str
                  ) -> tuple[DecodedPrompt | None, list[Neighbour], float]:
        if decoder is None:
            return None, [], 0.0
        started = time.perf_counter()
        nearest = [Neighbour(prompt=p, score=s) for p, s in decoder.nearest(vector, top_k)] if top_k else []
        decoded = None
        if decode:
            result = decoder.decode(vector, mode=mode)
            decoded = DecodedPrompt(text=result.text, cosine=result.cosine, mode=mode, capped=result.capped)
        return decoded, nearest, (time.perf_counter() - started) * 1000

    top_k_query = Query(settings.top_k, ge=0, le=settings.max_top_k, description="nearest bank prompts to return")
    decode_query = Query(True, description="compose a prompt (false: embedding and nearest prompts only)")
    modes = list(decode_config.modes)

    def mode_query(mode: str = Query(
            decode_config.mode, json_schema_extra={"enum": modes},
            description=f"how hard to search for the prompt: {' or '.join(modes)}; each mode is a fixed amount of "
                        "search work, so an image always gets the same prompt")) -> str:
        if mode not in modes:
            raise HTTPException(422, f"mode: unknown mode {mode!r} (choose from {', '.join(modes)})")
        return mode

    example = "data:image/png;base64," + base64.b64encode(_example_png()).decode()

    @app.post("/v1/predict", response_model=Prediction, responses=_ERRORS,
              openapi_extra=_upload_body("file", False, settings, example))
    async def predict(request: Request, top_k: int = top_k_query, decode: bool = decode_query,
                      mode: str = Depends(mode_query)) -> Prediction:
        """One image (multipart field ``file``, or JSON ``{"image": base64}``) -> embedding, prompt, neighbours."""
        started = time.perf_counter()
        uploads = await read_uploads(request, field="file", batch=False, max_images=1)
        return (await predict_uploads(uploads, top_k, decode, mode, started))[0]

    @app.post("/v1/predict/batch", response_model=BatchPrediction, responses=_ERRORS,
              openapi_extra=_upload_body("files", True, settings, example))
    async def predict_batch(request: Request, top_k: int = top_k_query, decode: bool = decode_query,
                            mode: str = Depends(mode_query)) -> BatchPrediction:
        """Several images (repeated multipart field ``files``, or JSON ``{"images": [...]}``), answered in order."""
        started = time.perf_counter()
        uploads = await read_uploads(request, field="files", batch=True, max_images=settings.max_images)
        return BatchPrediction(model=name, results=await predict_uploads(uploads, top_k, decode, mode, started))

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        """Liveness and load: the model's name, the bank, the modes, requests in flight, forward passes run."""
        return Health(status="ok", model=name, bank_size=len(decoder.prompts) if decoder else 0,
                      modes=modes, mode=decode_config.mode, in_flight=gate.in_flight,
                      receiving=gate.receiving, batches_run=batcher.batches_run, warning=warning)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    return app


def _with_body_schemas(openapi: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """FastAPI's schema plus the JSON request bodies' models (FastAPI adds only the models routes declare)."""
    def with_bodies() -> dict[str, Any]:
        schema = openapi()
        schema.setdefault("components", {}).setdefault("schemas", {}).update(_body_schemas())
        return schema

    return with_bodies


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` from the wheel's files: no CDN, so it works offline."""
    app.mount("/docs/assets", StaticFiles(directory=Path(str(swagger_ui_path))), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="img2prompt API",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon-32x32.png")


def _example_png() -> bytes:
    """A small grey PNG: the JSON example in the docs, so "Try it out" works as it stands."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


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
