"""Turn a request into named images: multipart uploads or base64 JSON, checked for type, size and sanity.

Every failure is an ``HTTPException`` with a one-line message naming the upload, so the client learns what to
fix and the server never answers 5xx for bad input. Decoding goes through ``img2prompt.images.load_image``, the
same path as every other stage, so a corrupt upload fails exactly like a corrupt training file.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import warnings
from dataclasses import dataclass

from fastapi import HTTPException, Request
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import DEFAULT_MAX_HEADER_SIZE
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from img2prompt.errors import Img2PromptError
from img2prompt.images import load_image

# Magic numbers: an upload's type is what its bytes say, not what the client claims.
_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpeg": (b"\xff\xd8\xff",),
    "gif": (b"GIF87a", b"GIF89a"),
    "bmp": (b"BM",),
}


class ImageJSON(BaseModel):
    """One image in a JSON body: base64 bytes (a ``data:image/...;base64,`` URL works too) and an optional name."""

    model_config = ConfigDict(extra="forbid")
    image: str = Field(description="the image file's bytes in base64, or a data: URL (data:image/png;base64,...)")
    name: str | None = Field(None, description="a name for the image, echoed in the answer and in errors")


class BatchJSON(BaseModel):
    """Several images, answered in order."""

    model_config = ConfigDict(extra="forbid")
    images: list[ImageJSON] = Field(description="the images, each as in the single-image endpoint")


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes


def sniff_format(data: bytes) -> str | None:
    """The image format named by the file's first bytes, or None when it is none we know."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((fmt for fmt, heads in _SIGNATURES.items() if data.startswith(heads)), None)


async def read_uploads(request: Request, *, field: str, batch: bool, max_images: int) -> list[Upload]:
    """The uploads of a request: multipart ``field`` (repeated for a batch) or JSON ``{"image": ...}``."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("multipart/form-data", "application/json"):
        shape = '{"images": [{"image": "<base64>"}]}' if batch else '{"image": "<base64>"}'
        raise HTTPException(415, f"unsupported content type {kind or 'none'!r}: send multipart/form-data with "
                                 f"a {field!r} file field, or application/json {shape}")
    if kind == "multipart/form-data":
        uploads = await _read_multipart(request, field, batch, max_images)
    else:
        uploads = await _read_json(request, batch)
    if not uploads:
        raise HTTPException(422, f"no image: send at least one {field!r} file")
    if len(uploads) > (max_images if batch else 1):
        raise _too_many(str(len(uploads)), batch, max_images)
    return uploads


def _too_many(count: str, batch: bool, max_images: int) -> HTTPException:
    if not batch:
        return HTTPException(422, f"{count} images sent to the single-image endpoint: use /v1/predict/batch")
    return HTTPException(413, f"{count} images in one request (at most {max_images})")


def decode_upload(upload: Upload, *, allowed_formats: list[str], max_pixels: int) -> Image.Image:
    """Check the upload's type by its bytes, then decode it to RGB; bad images are 4xx, never 5xx."""
    if upload.data:
        fmt = sniff_format(upload.data)
        if fmt not in allowed_formats:
            what = f"{fmt} images are not accepted" if fmt else "not an image type this server accepts"
            raise HTTPException(415, f"{upload.name}: {what} (allowed: {', '.join(allowed_formats)})")
    try:
        return load_image(upload.data, name=upload.name, max_pixels=max_pixels)
    except Img2PromptError as exc:
        raise HTTPException(400, str(exc)) from None


def header_pixels(upload: Upload, max_pixels: int) -> int:
    """The pixels an upload decodes to, read from its header alone and at most ``max_pixels`` (0 when the header
    is unreadable: decoding then says why), so the server can budget images before decoding them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(upload.data)) as image:
                return min(image.width * image.height, max_pixels)
    except Exception:  # any unreadable header: decode_upload gives the named error
        return 0


async def _read_multipart(request: Request, field: str, batch: bool, max_images: int) -> list[Upload]:
    try:
        async with request.form(max_files=max_images + 1, max_fields=8) as form:
            unknown = sorted({key for key in form if key != field})
            if unknown:
                raise HTTPException(422, f"unexpected form field {unknown[0]!r} (send the image as {field!r})")
            uploads = []
            for index, item in enumerate(form.getlist(field)):
                if not isinstance(item, UploadFile):
                    raise HTTPException(422, f"form field {field!r} must be a file upload, not text")
                uploads.append(Upload(_label(item.filename, f"{field}[{index}]"), await item.read()))
            return uploads
    except StarletteHTTPException as exc:
        if exc.status_code == 400 and str(exc.detail).startswith("Too many files"):  # the parser stopped counting
            raise _too_many(f"more than {max_images + 1}", batch, max_images) from None
        if _header_too_long(exc):  # a part's header line holds its file name
            raise HTTPException(400, f"a file name (or another header of a part) is longer than the "
                                     f"{DEFAULT_MAX_HEADER_SIZE:,} bytes a part's header may take: send a shorter "
                                     "file name") from None
        if exc.status_code == 400:  # starlette's multipart parser: say what was malformed
            raise HTTPException(400, f"malformed multipart body ({exc.detail})") from None
        raise


def _header_too_long(exc: BaseException) -> bool:
    """Whether the multipart parser stopped at a part header over its size limit (starlette calls every parse
    error "Invalid multipart data"; python-multipart's own error says which)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, MultipartParseError) and "header size" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _read_json(request: Request, batch: bool) -> list[Upload]:
    body = await request.body()
    try:
        payload = json.loads(body)
        items = BatchJSON.model_validate(payload).images if batch else [ImageJSON.model_validate(payload)]
    except ValidationError as exc:  # before ValueError, its base class
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise HTTPException(422, f"{where}: {first['msg']}") from None
    except RecursionError:
        raise HTTPException(400, "request body is not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of more than 4,300 digits
        raise HTTPException(400, f"request body is not valid JSON ({exc})") from None
    return [_from_base64(item, f"image[{i}]" if batch else "image") for i, item in enumerate(items)]


def _from_base64(item: ImageJSON, fallback: str) -> Upload:
    label = _label(item.name, fallback)
    text = item.image
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise HTTPException(400, f"{label}: a data URL must be base64-encoded")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HTTPException(400, f"{label}: invalid base64 ({exc})") from None
    return Upload(label, data)


def _label(name: str | None, fallback: str) -> str:
    """An upload's name goes into answers and error messages: printable, one line, at most 200 characters."""
    text = "".join(ch if ch.isprintable() else "?" for ch in name or "")[:200]
    return text or fallback
