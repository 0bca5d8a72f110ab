"""Bad input gets a 4xx JSON answer with a one-line message naming the upload, and the server keeps serving."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from img2prompt.serve import ServeConfig, create_app
from serve_fakes import ELONGATED, ColourModel, elongated_png, image_bytes, in_lifespan, local_client, png_header_only

RED = image_bytes((255, 0, 0))


@pytest.fixture(scope="module")
def client():
    basis = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
    settings = ServeConfig(max_upload_bytes=200_000, max_pixels=1_000_000, max_images=4)
    with local_client(create_app(ColourModel(basis), None, settings)) as test_client:
        yield test_client


def error_of(response) -> tuple[int, str]:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"]
    return response.status_code, body["error"]


def post_file(client, data: bytes, name: str = "up.png", field: str = "file", path: str = "/v1/predict"):
    return client.post(path, files={field: (name, data, "application/octet-stream")})


@pytest.mark.parametrize(("data", "status", "message"), [
    (b"", 400, "up.png: empty file (0 bytes)"),
    (RED[: len(RED) // 2], 400, "up.png: corrupt or truncated image"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, 400, "up.png: "),
    (png_header_only(5_000, 5_000), 400, "up.png: image too large (5000x5000 > 1,000,000 pixels)"),
    (png_header_only(20_000, 20_000), 400, "up.png: image too large (decompression bomb"),
    (b"plain text, not an image", 415, "up.png: not an image type this server accepts (allowed: png, jpeg, webp)"),
    (image_bytes((1, 2, 3), "GIF"), 415, "up.png: gif images are not accepted (allowed: png, jpeg, webp)"),
    (image_bytes((1, 2, 3), "BMP"), 415, "up.png: bmp images are not accepted"),
])
def test_bad_images_are_4xx_naming_the_upload(client, data, status, message):
    code, error = error_of(post_file(client, data))
    assert code == status
    assert error.startswith(message)


def test_accepted_formats_decode(client):
    for fmt in ("PNG", "JPEG", "WEBP"):
        assert post_file(client, image_bytes((10, 200, 30), fmt), name=f"x.{fmt.lower()}").status_code == 200
    rgba = io.BytesIO()
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(rgba, format="PNG")
    assert post_file(client, rgba.getvalue()).status_code == 200


def test_size_limits(client):
    big = b"\x89PNG\r\n\x1a\n" + bytes(250_000)
    code, error = error_of(post_file(client, big))
    assert code == 413 and error.startswith("request body of ") and error.endswith("exceeds the limit of 200,000 bytes")

    def chunks():  # no Content-Length: the cap must hold while the body streams in
        for _ in range(30):
            yield bytes(10_000)

    streamed = client.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
    assert error_of(streamed) == (413, "request body exceeds the limit of 200,000 bytes")
    five = [("files", (f"{i}.png", RED, "image/png")) for i in range(5)]
    assert error_of(client.post("/v1/predict/batch", files=five)) == (413, "5 images in one request (at most 4)")


@pytest.mark.parametrize(("kwargs", "status", "message"), [
    ({"files": {"image": ("a.png", RED, "image/png")}}, 422,
     "unexpected form field 'image' (send the image as 'file')"),
    ({"data": {"file": "not a file"}, "files": {"file": ("a.png", RED, "image/png")}}, 422,
     "form field 'file' must be a file upload, not text"),
    ({"data": {"file": "not a file"}}, 415, "unsupported content type 'application/x-www-form-urlencoded'"),
    ({"files": [("file", ("a.png", RED, "image/png")), ("file", ("b.png", RED, "image/png"))]}, 422,
     "2 images sent to the single-image endpoint: use /v1/predict/batch"),
    ({"json": {"picture": "abc"}}, 422, "image: Field required"),
    ({"json": {"image": "abc", "extra": 1}}, 422, "extra: Extra inputs are not permitted"),
    ({"json": {"image": 42}}, 422, "image: Input should be a valid string"),
    ({"json": {"image": "%%%not base64%%%"}}, 400, "image: invalid base64"),
    ({"json": {"image": "data:image/png,abc"}}, 400, "image: a data URL must be base64-encoded"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400,
     "request body is not valid JSON"),
    ({"content": b"[" * 100_000, "headers": {"content-type": "application/json"}}, 400,
     "request body is not valid JSON (nested too deeply)"),
    ({"content": b'{"image": ' + b"1" * 5000 + b"}", "headers": {"content-type": "application/json"}}, 400,
     "request body is not valid JSON (Exceeds the limit"),
    ({"json": {"image": "", "name": "two\nlines\x00.png"}}, 400, "two?lines?.png: empty file (0 bytes)"),
    ({"content": RED, "headers": {"content-type": "image/png"}}, 415, "unsupported content type 'image/png'"),
    ({"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data"}}, 400,
     "malformed multipart body"),
])
def test_wrong_fields_and_encodings_are_4xx(client, kwargs, status, message):
    code, error = error_of(client.post("/v1/predict", **kwargs))
    assert code == status
    assert error.startswith(message)


def test_an_over_long_file_name_is_a_400_that_says_so(client):
    """The hardening probe (issue 23): a name over ~4.2 KB was "malformed multipart body", which misleads."""
    status, message = error_of(post_file(client, RED, name="x" * 5000 + ".png"))
    assert (status, message) == (400, "a file name (or another header of a part) is longer than the 4,224 bytes a "
                                      "part's header may take: send a shorter file name")
    long_but_fine = post_file(client, RED, name="y" * 3000 + ".png")
    assert long_but_fine.status_code == 200 and long_but_fine.json()["image"] == "y" * 200  # shown cut to 200


def test_batch_names_the_bad_file_and_the_server_keeps_serving(client):
    files = [("files", ("good.png", RED, "image/png")), ("files", ("bad.png", RED[:30], "image/png"))]
    code, error = error_of(client.post("/v1/predict/batch", files=files))
    assert code == 400 and error.startswith("bad.png: ")
    empty = client.post("/v1/predict/batch", json={"images": []})
    assert error_of(empty) == (422, "no image: send at least one 'files' file")
    assert error_of(client.get("/v1/nothing-here")) == (404, "Not Found")
    assert error_of(client.get("/v1/predict")) == (405, "Method Not Allowed")
    assert client.post("/v1/predict", files={"file": ("ok.png", RED, "image/png")}).status_code == 200
    assert client.get("/healthz").json()["in_flight"] == 0


@pytest.mark.parametrize(("path", "field", "count", "answer"), [
    ("/v1/predict/batch", "files", 5, (413, "5 images in one request (at most 4)")),
    ("/v1/predict/batch", "files", 9, (413, "more than 5 images in one request (at most 4)")),
    ("/v1/predict", "file", 2, (422, "2 images sent to the single-image endpoint: use /v1/predict/batch")),
    ("/v1/predict", "file", 9, (422, "more than 2 images sent to the single-image endpoint: use /v1/predict/batch")),
])
def test_too_many_files_say_so_however_many(client, path, field, count, answer):
    files = [(field, (f"{i}.png", RED, "image/png")) for i in range(count)]
    assert error_of(client.post(path, files=files)) == answer


def test_decoded_images_share_a_pixel_budget():
    """A 4000 x 4000 PNG of one colour is ~60 KB but 48 MB decoded: the second one waiting beside the first is
    refused, and the budget is given back afterwards."""
    hold = asyncio.Event()
    model = ColourModel(np.eye(3, 384, dtype=np.float32))
    settings = ServeConfig(max_pixels=16_000_000, max_decoded_pixels=20_000_000)
    app = create_app(model, None, settings)
    big = image_bytes((10, 20, 30), size=(4000, 4000))
    assert len(big) < 100_000

    async def run(http: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response, int, dict]:
        original = model.embed

        def held(images):
            while not hold.is_set():
                time.sleep(0.01)
            return original(images)

        model.embed = held  # the first request stays in the forward pass, its image decoded
        first = asyncio.ensure_future(http.post("/v1/predict", files={"file": ("a.png", big, "image/png")}))
        while app.state.service.gate.decoded_pixels == 0:
            await asyncio.sleep(0.005)
        second = await http.post("/v1/predict", files={"file": ("b.png", big, "image/png")})
        held_pixels = app.state.service.gate.decoded_pixels
        hold.set()
        done = await first
        return done, second, held_pixels, (await http.get("/healthz")).json()

    first, second, held_pixels, _ = asyncio.run(in_lifespan(app, run))
    assert first.status_code == 200, first.text
    assert held_pixels == 16_000_000
    assert error_of(second) == (503, "server busy: 16,000,000 pixels of images being processed, retry shortly")
    assert second.headers["retry-after"] == "1"
    assert app.state.service.gate.decoded_pixels == 0


@pytest.mark.parametrize(("settings", "message"), [
    ({"top_k": 8, "max_top_k": 5}, "top_k (8) must be at most max_top_k (5)"),
    ({"max_pixels": 1000, "max_decoded_pixels": 999}, "max_decoded_pixels (999) must hold at least one image"),
])
def test_serve_settings_that_cannot_work_are_refused(settings, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ServeConfig(**settings)


def test_app_starts_again_after_shutdown():
    basis = np.random.default_rng(1).standard_normal((3, 384)).astype(np.float32)
    app = create_app(ColourModel(basis))
    for _ in range(2):  # the batcher and the decode thread are created per lifespan, not per app
        with local_client(app) as client:
            assert client.post("/v1/predict", files={"file": ("a.png", RED, "image/png")}).status_code == 200


def test_shipped_serve_configs_load():
    from img2prompt.decode import DecodeConfig
    from img2prompt.sections import load_section
    from img2prompt.serve.settings import ServeConfig

    root = Path(__file__).resolve().parents[1] / "configs" / "serve"
    assert load_section(root / "cpu.yaml", "serve", ServeConfig) == ServeConfig()
    import yaml

    assert set(yaml.safe_load((root / "cpu.yaml").read_text())["serve"]) == set(ServeConfig.model_fields)  # every knob
    gpu = load_section(root / "gpu.yaml", "serve", ServeConfig)
    assert (gpu.device, gpu.batch_size, gpu.max_in_flight) == ("cuda", 64, 64)
    for name in ("cpu.yaml", "gpu.yaml"):
        assert load_section(root / name, "decode", DecodeConfig).budget_s == 0.3


class FailingOnce(ColourModel):
    """A model whose first forward pass fails, as a GPU out-of-memory would."""

    def embed(self, images):
        if not self.batch_sizes:
            self.batch_sizes.append(0)
            raise RuntimeError("CUDA out of memory")
        return super().embed(images)


def test_a_model_failure_is_a_json_500_and_the_next_request_is_served():
    basis = np.random.default_rng(2).standard_normal((3, 384)).astype(np.float32)
    with local_client(create_app(FailingOnce(basis)), raise_server_exceptions=False) as client:
        failed = client.post("/v1/predict", files={"file": ("a.png", RED, "image/png")})
        assert error_of(failed) == (500, "internal error (RuntimeError); see the server log")
        assert client.post("/v1/predict", files={"file": ("a.png", RED, "image/png")}).status_code == 200
        assert client.get("/healthz").json()["in_flight"] == 0


def test_extreme_aspect_ratios_are_a_400_for_that_request_only():
    basis = np.random.default_rng(3).standard_normal((3, 384)).astype(np.float32)
    with local_client(create_app(ColourModel(basis))) as client:  # default limits: 16 M pixels pass the pixel cap
        for width, height in ELONGATED:
            data = elongated_png(width, height)
            assert len(data) < 200_000
            code, error = error_of(post_file(client, data, name="long.png"))
            assert (code, error) == (400, f"long.png: image {width}x{height} is too elongated (the longer side may "
                                          "be at most 10x the shorter)")
        files = [("files", ("good.png", RED, "image/png")), ("files", ("long.png", elongated_png(800_000, 20),
                                                                        "image/png"))]
        code, error = error_of(client.post("/v1/predict/batch", files=files))
        assert code == 400 and error.startswith("long.png: image 800000x20 is too elongated")
        assert post_file(client, image_bytes((1, 2, 3), size=(100, 10))).status_code == 200  # 10:1 still passes
        assert client.get("/healthz").json()["in_flight"] == 0


async def trickle(release: asyncio.Event, head: bytes = b'{"image": "', size: int = 0):
    """A request body that sends ``head`` (and ``size`` bytes), then waits for ``release``: a slow client."""
    yield head + b"A" * size
    await release.wait()
    yield b'"}'


def test_a_body_must_arrive_within_the_deadline():
    app = create_app(ColourModel(np.eye(3, 384, dtype=np.float32)), None, ServeConfig(body_timeout_s=0.3))

    async def run(http: httpx.AsyncClient) -> tuple[httpx.Response, float, dict]:
        started = time.perf_counter()
        slow = await asyncio.wait_for(http.post("/v1/predict", content=trickle(asyncio.Event()),
                                                headers={"content-type": "application/json"}), 10)
        return slow, time.perf_counter() - started, (await http.get("/healthz")).json()

    slow, took, health = asyncio.run(in_lifespan(app, run))
    assert error_of(slow) == (408, "request body not received within 0.3 s (11 bytes arrived)")
    assert slow.headers["connection"] == "close"
    assert 0.3 <= took < 3
    assert (health["in_flight"], health["receiving"]) == (0, 0)


def test_slow_uploads_hold_no_processing_slot():
    app = create_app(ColourModel(np.eye(3, 384, dtype=np.float32)), None, ServeConfig(max_in_flight=2))
    release = asyncio.Event()

    async def run(http: httpx.AsyncClient) -> tuple[list[httpx.Response], httpx.Response, dict]:
        body = base64.b64encode(RED)
        slow = [asyncio.ensure_future(http.post("/v1/predict", content=trickle(release, b'{"image": "' + body),
                                                headers={"content-type": "application/json"})) for _ in range(4)]
        while app.state.service.gate.receiving < 4:
            await asyncio.sleep(0.005)
        normal = await http.post("/v1/predict", files={"file": ("ok.png", RED, "image/png")})
        health = (await http.get("/healthz")).json()
        release.set()
        return await asyncio.gather(*slow), normal, health

    slow, normal, health = asyncio.run(in_lifespan(app, run))
    assert normal.status_code == 200, normal.text
    assert (health["receiving"], health["in_flight"]) == (4, 0)
    # Once their bodies are in they compete for the two slots like anyone: served, or told to retry.
    statuses = sorted(r.status_code for r in slow)
    assert statuses[:2] == [200, 200] and set(statuses) <= {200, 503}


def test_bodies_being_received_share_a_memory_budget():
    settings = ServeConfig(max_upload_bytes=100_000, max_receiving_bytes=150_000)
    app = create_app(ColourModel(np.eye(3, 384, dtype=np.float32)), None, settings)
    release = asyncio.Event()

    async def run(http: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        held = asyncio.ensure_future(http.post("/v1/predict", content=trickle(release, size=90_000),
                                               headers={"content-type": "application/json"}))
        while app.state.service.gate.receiving_bytes < 90_000:
            await asyncio.sleep(0.005)
        refused = await http.post("/v1/predict", files={"file": ("big.png", RED + bytes(70_000), "image/png")})
        release.set()
        held_done = await held
        return refused, held_done, await http.post("/v1/predict", files={"file": ("big.png", RED, "image/png")})

    refused, held, after = asyncio.run(in_lifespan(app, run))
    assert error_of(refused) == (503, "server busy: 2 uploads being received, retry shortly")
    assert refused.headers["retry-after"] == "1"
    assert held.status_code == 415  # its 90,000 "A"s are valid base64 but not an image
    assert after.status_code == 200 and app.state.service.gate.receiving_bytes == 0


def test_a_client_slow_to_read_its_answer_holds_no_slot():
    """The slot is given back when the answer starts, not when the client has read all of it."""
    app = create_app(ColourModel(np.eye(3, 384, dtype=np.float32)), None, ServeConfig(max_in_flight=1))
    reading = asyncio.Event()
    boundary = b"x"
    body = (b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + RED + b"\r\n--x--\r\n")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/predict", "raw_path": b"/v1/predict", "query_string": b"", "root_path": "",
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"localhost"), (b"content-type", b"multipart/form-data; boundary=" + boundary),
                         (b"content-length", str(len(body)).encode())]}
    sent = []

    async def receive():
        if not sent:
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never hangs up

    async def send(message):
        sent.append(message["type"])
        if message["type"] == "http.response.body":
            reading.set()
            await asyncio.sleep(3600)  # the client reads nothing of the answer

    async def run() -> tuple[int, int]:
        async with app.router.lifespan_context(app):
            answer = asyncio.ensure_future(app(scope, receive, send))
            await asyncio.wait_for(reading.wait(), 10)
            in_flight = app.state.service.gate.in_flight
            answer.cancel()
            await asyncio.gather(answer, return_exceptions=True)
            return in_flight, app.state.service.gate.in_flight

    assert asyncio.run(run()) == (0, 0)
    assert sent[0] == "http.response.start"
