"""The HTTP API with a deterministic colour model and a real prompt decoder over a three-prompt bank."""

from __future__ import annotations

import asyncio
import base64
import re
import threading

import httpx
import numpy as np
import pytest

from img2prompt.decode import DecodeConfig, PromptDecoder
from img2prompt.images import load_image
from img2prompt.phrases import bank_phrases
from img2prompt.provenance import MODEL_WARNING
from img2prompt.serve import ServeConfig, create_app
from serve_fakes import COLOUR_PROMPTS, LOCAL, PRIMARIES, ColourModel, image_bytes, in_lifespan, local_client


@pytest.fixture(scope="module")
def basis(text_embedder) -> np.ndarray:
    return text_embedder.encode(list(COLOUR_PROMPTS.values()))


def build_decoder(embedder, basis: np.ndarray, budget_s: float) -> PromptDecoder:
    prompts = list(COLOUR_PROMPTS.values())
    phrases = bank_phrases(prompts, min_count=1)
    return PromptDecoder(prompts, basis, phrases, embedder.encode(phrases), embedder,
                         DecodeConfig(modifiers=[], budget_s=budget_s))


@pytest.fixture(scope="module")
def decoder(text_embedder, basis) -> PromptDecoder:
    return build_decoder(text_embedder, basis, budget_s=0.2)


@pytest.fixture(scope="module")
def nearest_only(text_embedder, basis) -> PromptDecoder:
    """No time to compose: the decoded prompt is the nearest bank prompt."""
    return build_decoder(text_embedder, basis, budget_s=0.0)


@pytest.fixture()
def client(basis, decoder):
    with local_client(create_app(ColourModel(basis), decoder)) as test_client:
        yield test_client


def upload(colour: str, name: str | None = None) -> dict:
    return {"file": (name or f"{colour}.png", image_bytes(PRIMARIES[colour]), "image/png")}


def test_predict_multipart_returns_embedding_prompt_neighbours_and_timings(client, basis):
    response = client.post("/v1/predict", files=upload("red"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["image"] == "red.png" and body["model"] == "colour-mix"
    np.testing.assert_allclose(body["embedding"], basis[0], atol=1e-6)
    assert body["nearest"][0] == {"prompt": COLOUR_PROMPTS["red"], "cosine": pytest.approx(1.0, abs=1e-5)}
    assert len(body["nearest"]) == 3  # top_k=5 capped by the bank size
    scores = [n["cosine"] for n in body["nearest"]]
    assert scores == sorted(scores, reverse=True)
    # The decoder starts from the best bank prompt, so it can only match or beat it; the cosine is exact.
    assert body["cosine"] >= body["nearest"][0]["cosine"] - 1e-5
    timings = body["timings"]
    assert timings["batch_size"] == 1
    assert timings["total_ms"] >= timings["embed_ms"] >= 0 and timings["decode_ms"] > 0


def test_each_primary_colour_finds_its_own_prompt(client):
    for colour, prompt in COLOUR_PROMPTS.items():
        body = client.post("/v1/predict?decode=false", files=upload(colour)).json()
        assert body["nearest"][0]["prompt"] == prompt
        assert body["prompt"] is None


def test_json_base64_and_data_url_match_multipart(client):
    raw = image_bytes((200, 120, 40))
    via_form = client.post("/v1/predict?decode=false", files={"file": ("x.png", raw, "image/png")}).json()
    encoded = base64.b64encode(raw).decode()
    via_json = client.post("/v1/predict?decode=false", json={"image": encoded, "name": "x.png"}).json()
    via_url = client.post("/v1/predict?decode=false", json={"image": f"data:image/png;base64,{encoded}"}).json()
    assert via_json["embedding"] == via_form["embedding"] == via_url["embedding"]
    assert via_json["nearest"] == via_form["nearest"]
    assert via_url["image"] == "image"


def test_batch_endpoint_answers_in_order_in_one_forward_pass(basis, nearest_only):
    model = ColourModel(basis)
    with local_client(create_app(model, nearest_only)) as client:
        files = [("files", (f"{c}.png", image_bytes(rgb), "image/png")) for c, rgb in PRIMARIES.items()]
        body = client.post("/v1/predict/batch?top_k=1", files=files).json()
        assert [r["image"] for r in body["results"]] == ["red.png", "green.png", "blue.png"]
        assert [r["nearest"][0]["prompt"] for r in body["results"]] == list(COLOUR_PROMPTS.values())
        assert model.batch_sizes == [3]
        assert {r["timings"]["batch_size"] for r in body["results"]} == {3}
        images = [{"image": base64.b64encode(image_bytes(rgb)).decode()} for rgb in PRIMARIES.values()]
        as_json = client.post("/v1/predict/batch?top_k=1", json={"images": images}).json()
        assert [r["embedding"] for r in as_json["results"]] == [r["embedding"] for r in body["results"]]
        assert [r["image"] for r in as_json["results"]] == ["image[0]", "image[1]", "image[2]"]


def test_top_k_and_decode_switches(client):
    assert client.post("/v1/predict?top_k=0&decode=false", files=upload("blue")).json()["nearest"] == []
    assert len(client.post("/v1/predict?top_k=2&decode=false", files=upload("blue")).json()["nearest"]) == 2
    too_many = client.post("/v1/predict?top_k=51", files=upload("blue"))
    assert too_many.status_code == 422
    assert too_many.json() == {"error": "top_k: at most 50 (got 51)"}


def test_server_without_bank_returns_embedding_only(basis):
    with local_client(create_app(ColourModel(basis))) as client:
        body = client.post("/v1/predict", files=upload("green")).json()
        np.testing.assert_allclose(body["embedding"], basis[1], atol=1e-6)
        assert body["prompt"] is None and body["nearest"] == []
        assert client.get("/healthz").json()["bank_size"] == 0


def test_healthz_and_openapi_schema(client):
    health = client.get("/healthz").json()
    assert health == {"status": "ok", "model": "colour-mix", "bank_size": 3, "modes": ["fast", "best"],
                      "mode": "fast", "in_flight": 0, "receiving": 0, "batches_run": 0, "warning": None}
    schema = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/predict/batch", "/healthz"} <= set(schema["paths"])
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert "Answer" in schema["components"]["schemas"]


@pytest.mark.parametrize(("path", "field", "model"), [("/v1/predict", "file", "ImageJSON"),
                                                      ("/v1/predict/batch", "files", "BatchJSON")])
def test_openapi_describes_each_request_body_and_its_example_works(client, path, field, model):
    schema = client.get("/openapi.json").json()
    post = schema["paths"][path]["post"]
    content = post["requestBody"]["content"]
    part = content["multipart/form-data"]["schema"]["properties"][field]
    assert "png, jpeg, webp" in part["description"] and "10x the shorter" in part["description"]
    assert (part.get("items") or part)["format"] == "binary"
    assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}
    image = schema["components"]["schemas"]["ImageJSON"]["properties"]["image"]
    assert "base64" in image["description"]
    mode = next(p for p in post["parameters"] if p["name"] == "mode")
    assert mode["schema"]["enum"] == ["fast", "best"] and mode["schema"]["default"] == "fast"
    assert {"400", "408", "413", "415", "422", "503"} <= set(post["responses"])
    answer = client.post(path, json=content["application/json"]["example"])  # "Try it out" as the docs stand
    assert answer.status_code == 200, answer.text


def test_swagger_ui_is_served_offline(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in page.text and "SwaggerUIBundle" in page.text
    assert not re.search(r"https?://", page.text)  # no CDN: every script and style comes from this server
    assets = re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', page.text)
    assert len(assets) == 3  # the script, the stylesheet and the icon
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200 and len(response.content) > 500, asset


@pytest.mark.parametrize(("spec", "shown"), [
    ("/srv/runs/checkpoints/vit-l-336", "vit-l-336"), ("/srv/runs/checkpoints/vit-l-336/", "vit-l-336"),
    ("runs/ensemble/ensemble.yaml", "ensemble.yaml"), ("mean:/srv/data/prompts.parquet", "mean:prompts.parquet"),
    ("nearest:/srv/shards", "nearest:shards"), ("colour-mix", "colour-mix"),
    ("clip:ViT-B-32/openai?bank=/srv/data/bank.parquet&k=8", "clip:ViT-B-32/openai?bank=bank.parquet&k=8"),
    ("hf-hub:org/name@main", "hf-hub:org/name@main"),
])
def test_answers_name_the_model_never_its_path(basis, nearest_only, spec, shown):
    model = ColourModel(basis)
    model.name = spec
    with local_client(create_app(model, nearest_only)) as client:
        single = client.post("/v1/predict", files=upload("red"))
        batch = client.post("/v1/predict/batch", files=[("files", ("a.png", image_bytes((9, 9, 9)), "image/png"))])
        health = client.get("/healthz")
    assert single.json()["model"] == batch.json()["model"] == batch.json()["results"][0]["model"] == shown
    assert health.json()["model"] == shown
    for response in (single, batch, health):
        assert "/srv" not in response.text and "runs/" not in response.text


def test_a_model_that_learned_only_synthetic_scenes_is_flagged_for_the_page(basis, nearest_only):
    model = ColourModel(basis)
    model.sources = ("scenes",)
    with local_client(create_app(model, nearest_only)) as client:
        assert client.get("/healthz").json()["warning"] == f"This model {MODEL_WARNING}."
    model.sources = ("coco", "scenes")  # partly real prompts: no warning
    with local_client(create_app(model, nearest_only)) as client:
        assert client.get("/healthz").json()["warning"] is None


def test_mode_reaches_the_decoder_and_an_unknown_mode_is_422(client, decoder, monkeypatch):
    asked = []
    decode = decoder.decode
    monkeypatch.setattr(decoder, "decode", lambda vector, mode=None, budget_s=None: asked.append(mode) or decode(
        vector, mode=mode, budget_s=budget_s))
    best = client.post("/v1/predict?mode=best", files=upload("red")).json()
    default = client.post("/v1/predict", files=upload("red")).json()
    files = [("files", (f"{c}.png", image_bytes(rgb), "image/png")) for c, rgb in PRIMARIES.items()]
    batch = client.post("/v1/predict/batch?mode=best", files=files).json()
    assert asked == ["best", "fast", "best", "best", "best"]
    assert best["mode"] == "best" and default["mode"] == "fast"
    assert {r["mode"] for r in batch["results"]} == {"best"}
    assert isinstance(best["capped"], bool)
    for path in ("/v1/predict", "/v1/predict/batch"):
        unknown = client.post(f"{path}?mode=slow", files=upload("red") if path == "/v1/predict" else files)
        assert unknown.status_code == 422
        assert unknown.json() == {"error": "mode: unknown mode 'slow' (choose from fast, best)"}
    assert len(asked) == 5


def test_a_capped_decode_says_so(basis, nearest_only):
    with local_client(create_app(ColourModel(basis), nearest_only)) as client:  # budget_s=0: capped at once
        answer = client.post("/v1/predict", files=upload("green")).json()
    assert answer["capped"] is True and answer["prompt"] == COLOUR_PROMPTS["green"]


@pytest.mark.parametrize(("settings", "host", "status"), [
    ({}, "localhost:8000", 200), ({}, "127.0.0.1", 200), ({}, "[::1]:8000", 200),
    ({}, "evil.example", 400), ({}, "192.168.1.20:8000", 400),
    ({"host": "0.0.0.0"}, "192.168.1.20:8000", 200),
    ({"host": "0.0.0.0", "allowed_hosts": ["img2prompt.lan"]}, "img2prompt.lan:8000", 200),
    ({"host": "0.0.0.0", "allowed_hosts": ["img2prompt.lan"]}, "localhost", 400),
    ({"host": "0.0.0.0", "allowed_hosts": ["*.example.org"]}, "api.example.org:443", 200),
    ({"host": "0.0.0.0", "allowed_hosts": ["*.example.org"]}, "example.org.evil.test", 400),
    # the name is parsed exactly (issue 23): a bracketed IPv6 address only as a whole, then at most a port
    ({}, "[::1]evil", 400), ({}, "[::1]:8000evil", 400), ({}, "[::1", 400), ({}, "localhost:8000:1", 400),
    ({}, "localhost:http", 400), ({}, "LOCALHOST:8000", 200),
])
def test_only_the_servers_own_host_names_are_answered(basis, settings, host, status):
    with local_client(create_app(ColourModel(basis), None, ServeConfig(**settings))) as client:
        for path in ("/healthz", "/", "/docs"):
            assert client.get(path, headers={"host": host}).status_code == status
        answer = client.post("/v1/predict", files=upload("red"), headers={"host": host})
        assert answer.status_code == status
    if status == 400:  # the app's JSON, naming the host, as every other refusal
        assert answer.json() == {"error": f"host {host!r} is not served here (serve.allowed_hosts)"}


def test_web_page_and_assets_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in page.text and 'href="/static/app.css"' in page.text
    for asset in ("/static/app.js", "/static/app.css"):
        text = client.get(asset).text
        assert len(text) > 500
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert "http://" not in page.text and "https://" not in page.text


def test_concurrent_requests_are_micro_batched_and_not_mixed_up(basis, nearest_only):
    model = ColourModel(basis, delay_s=0.05)  # a slow forward pass lets the queue fill up behind it
    app = create_app(model, nearest_only, ServeConfig(batch_wait_ms=20, top_k=1))
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
               (128, 128, 128), (250, 250, 250)]

    async def run() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=LOCAL) as http:
                return await asyncio.gather(*[
                    http.post("/v1/predict", files={"file": (f"{i}.png", image_bytes(c), "image/png")})
                    for i, c in enumerate(colours)])

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * len(colours)
    expected = model.embed([load_image(image_bytes(c)) for c in colours])
    for i, response in enumerate(responses):
        assert response.json()["image"] == f"{i}.png"
        np.testing.assert_allclose(response.json()["embedding"], expected[i], atol=1e-6)
    served = model.batch_sizes[:-1]  # the last entry is the reference pass above
    assert sum(served) == len(colours)
    assert len(served) < len(colours) and max(served) > 1


def test_concurrency_limit_answers_503_and_recovers(basis):
    hold = threading.Event()
    app = create_app(ColourModel(basis, hold=hold), None, ServeConfig(max_in_flight=2))

    async def run() -> tuple[list[httpx.Response], httpx.Response, dict, dict]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=LOCAL) as http:
                def post() -> asyncio.Task:
                    return asyncio.ensure_future(http.post("/v1/predict", files=upload("red")))

                held = [post(), post()]
                while app.state.service.gate.in_flight < 2:
                    await asyncio.sleep(0.005)
                busy_health = (await http.get("/healthz")).json()
                refused = await http.post("/v1/predict", files=upload("blue"))
                hold.set()
                done = await asyncio.gather(*held)
                return done, refused, busy_health, (await http.get("/healthz")).json()

    done, refused, busy_health, health = asyncio.run(run())
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json() == {"error": "server busy: 2 requests in flight, retry shortly"}
    assert [r.status_code for r in done] == [200, 200]
    assert busy_health["in_flight"] == 2 and health["in_flight"] == 0


class PoisonedModel(ColourModel):
    """Fails any forward pass holding a magenta image, as a model failing on one odd image would."""

    def __init__(self, basis: np.ndarray):
        super().__init__(basis)
        self.attempts: list[int] = []  # images per forward pass tried, failed ones included

    def embed(self, images):
        self.attempts.append(len(images))
        if any(im.getpixel((0, 0)) == (255, 0, 255) for im in images):
            raise RuntimeError("the model choked on this image")
        return super().embed(images)


def test_a_failing_shared_pass_fails_only_the_request_that_broke_it(basis):
    model = PoisonedModel(basis)
    app = create_app(model, None, ServeConfig(batch_wait_ms=300))  # long enough for all four to share a pass
    colours = [(255, 0, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255)]

    async def run(http: httpx.AsyncClient) -> list[httpx.Response]:
        return await asyncio.gather(*[http.post("/v1/predict", files={"file": (f"{i}.png", image_bytes(c),
                                                                                "image/png")})
                                      for i, c in enumerate(colours)])

    responses = asyncio.run(in_lifespan(app, run, raise_app_exceptions=False))
    assert [r.status_code for r in responses] == [200, 500, 200, 200]
    assert responses[1].json() == {"error": "internal error (RuntimeError); see the server log"}
    assert model.attempts == [4, 1, 1, 1, 1]  # shared, then one by one
    assert [r.json()["timings"]["batch_size"] for r in responses if r.status_code == 200] == [1, 1, 1]
