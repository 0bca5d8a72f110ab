"""The FastAPI app: image in, prompt embedding + decoded prompt + nearest bank prompts out, and a web page.

``create_app(model, decoder, settings)`` takes any ``ImageEmbedder`` (a checkpoint, an ensemble, a baseline)
and an optional ``PromptDecoder``; it loads nothing itself, so the model is loaded once by the caller. It holds them
in a ``Service`` on ``app.state`` for the routes (``serve.routes``, one ``APIRouter``). Images of concurrent
requests are embedded together by the micro-batcher; prompt decoding runs in one worker thread (the text embedder
is not shared across threads). Every client mistake is a 4xx JSON ``{"error": "..."}``. Answers name the model by
its display name (never a filesystem path); ``/docs`` is Swagger UI served from the ``swagger-ui-bundle`` wheel,
so it works offline.
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from swagger_ui_bundle import swagger_ui_path

from img2prompt.decode import DecodeConfig
from img2prompt.errors import Img2PromptError
from img2prompt.images import MAX_ASPECT
from img2prompt.models.specs import parse
from img2prompt.provenance import model_warning
from img2prompt.serve.batcher import MicroBatcher
from img2prompt.serve.limits import AllowedHosts, Gate, RequestLimits
from img2prompt.serve.routes import STATIC_DIR, router
from img2prompt.serve.service import Service
from img2prompt.serve.settings import ServeConfig
from img2prompt.serve.uploads import BatchJSON, ImageJSON

if TYPE_CHECKING:
    from img2prompt.decode import PromptDecoder
    from img2prompt.models.embedder import ImageEmbedder

API_DESCRIPTION = """Recover the prompt behind a Stable Diffusion image: the model predicts the prompt's embedding
(all-MiniLM-L6-v2, 384 floats) and the server composes a readable prompt from its prompt bank. Send one image to
`/v1/predict` or several to `/v1/predict/batch`, as multipart files or base64 JSON. The web page is at [/](/)."""


def create_app(model: ImageEmbedder, decoder: PromptDecoder | None = None, settings: ServeConfig | None = None,
               *, name: str | None = None) -> FastAPI:
    """Build the app around an already loaded model (``name``: its display name, by default its spec's); start it
    with uvicorn or ``with TestClient(app)`` (the lifespan starts the micro-batcher and the decode thread)."""
    settings = settings or ServeConfig()
    gate = Gate(max_body_bytes=settings.max_upload_bytes, max_in_flight=settings.max_in_flight,
                max_receiving_bytes=settings.max_receiving_bytes, body_timeout_s=settings.body_timeout_s,
                max_decoded_pixels=settings.max_decoded_pixels)
    service = Service(settings, MicroBatcher(model.embed, max_batch=settings.batch_size,
                                             wait_s=settings.batch_wait_ms / 1000),
                      decoder, gate, name or parse(model.name).display_name(),
                      model_warning(model.sources),
                      decoder.config if decoder is not None else DecodeConfig())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.batcher.start()
        service.decode_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="img2prompt-decode")
        try:
            yield
        finally:
            await service.batcher.stop()
            service.decode_pool.shutdown(wait=True)

    app = FastAPI(title="img2prompt", summary="Recover the prompt behind a Stable Diffusion image.",
                  description=API_DESCRIPTION, lifespan=lifespan, docs_url=None, redoc_url=None)
    # Swagger UI 4 (the offline bundle) renders OpenAPI 3.0 only; of 3.1 the schema uses just {"type": "null"} in
    # optional fields, which it shows as it stands.
    app.openapi_version = "3.0.3"
    app.openapi = _documented(app.openapi, service)  # type: ignore[method-assign]
    app.add_middleware(RequestLimits, gate=gate)
    app.add_middleware(AllowedHosts, hosts=settings.hosts())  # outermost: checked first
    app.state.service = service
    _add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_docs(app)
    app.include_router(router)
    return app


def _documented(openapi: Callable[[], dict[str, Any]], service: Service) -> Callable[[], dict[str, Any]]:
    """FastAPI's schema plus what the routes read by hand to accept two encodings: the request bodies (multipart or
    JSON, with this server's limits) and their JSON models; and the modes this server offers."""
    def schema() -> dict[str, Any]:
        document = openapi()
        _, top = models_json_schema([(ImageJSON, "validation"), (BatchJSON, "validation")],
                                    ref_template="#/components/schemas/{model}")
        document.setdefault("components", {}).setdefault("schemas", {}).update(top["$defs"])
        example = "data:image/png;base64," + base64.b64encode(_example_png()).decode()
        for path, field_name, batch in (("/v1/predict", "file", False), ("/v1/predict/batch", "files", True)):
            operation = document["paths"][path]["post"]
            operation["requestBody"] = _upload_body(field_name, batch, service.settings, example)
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "mode":
                    parameter["schema"] = {"type": "string", "enum": list(service.decode_config.modes),
                                           "default": service.decode_config.mode}
        return document

    return schema


def _upload_body(field_name: str, batch: bool, settings: ServeConfig, example: str) -> dict[str, Any]:
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
    return {"required": True, "description": "multipart upload, or JSON with base64 images", "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": [field_name],
                                           "properties": {field_name: files}}},
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}, "example": json_example}}}


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
