"""A seeded fuzz of malformed uploads: whatever arrives, the answer is never 5xx and the server keeps serving."""

from __future__ import annotations

import base64
import random

import numpy as np

from img2prompt.serve import ServeConfig, create_app
from serve_fakes import ColourModel, image_bytes, local_client

CASES = 400


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One random corruption: truncate, flip bytes, splice junk, duplicate a slice or keep only the header."""
    data = bytearray(data)
    kind = rng.randrange(7)
    if kind == 0:
        return bytes(data[: rng.randrange(len(data))])
    if kind == 1:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 2:
        at = rng.randrange(len(data))
        return bytes(data[:at] + rng.randbytes(rng.randint(1, 64)) + data[at:])
    if kind == 3:
        start = rng.randrange(len(data))
        return bytes(data + data[start : start + rng.randint(1, 200)])
    if kind == 4:
        return bytes(data[: rng.randint(8, 40)])
    if kind == 5:  # past the upload limit
        return bytes(data + bytes(70_000))
    return rng.randbytes(rng.randint(0, 300))


def random_request(rng: random.Random, seeds: list[bytes], batch: bool) -> dict:
    """A request for ``/v1/predict`` or its batch twin, malformed in one of many ways."""
    data = mutate(rng, rng.choice(seeds))
    right = "files" if batch else "file"
    field = right if rng.random() < 0.7 else rng.choice(["file", "files", "image", "", "fíle"])
    name = rng.choice(["a.png", "", "../../etc/passwd", "x" * 300, "ünï.jpg", "a\r\nb.png"])
    kind = rng.randrange(7)
    if kind <= 2:
        return {"files": {field: (name, data, rng.choice(["image/png", "text/plain", "", "image/jpeg"]))}}
    if kind == 3:
        return {"json": rng.choice([
            {"image": base64.b64encode(data).decode()},
            {"image": base64.b64encode(data).decode()[: rng.randint(0, 40)]},
            {"images": [{"image": base64.b64encode(data).decode()}]},
            {"image": None}, {"image": [1, 2]}, [], "image", {"image": "", "name": "a\nb\u2028c"},
            {"image": "data:;base64," + base64.b64encode(data).decode()},
        ])}
    if kind == 4:
        return {"content": data, "headers": {"content-type": rng.choice([
            "application/json", "multipart/form-data; boundary=xyz", "multipart/form-data", "image/png", "",
            "application/json; charset=latin-1", "text/plain"])}}
    if kind == 5:
        boundary = "b" * rng.randint(1, 70)
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
                f"Content-Type: image/png\r\n\r\n").encode() + data
        if rng.random() < 0.5:
            body += f"\r\n--{boundary}--\r\n".encode()
        return {"content": body, "headers": {"content-type": f"multipart/form-data; boundary={boundary}"}}
    count = rng.randint(0, 6)
    return {"files": [("files", (f"{i}.png", mutate(rng, rng.choice(seeds)), "image/png")) for i in range(count)]}


def test_malformed_uploads_never_get_a_5xx():
    rng = random.Random(1234)
    seeds = [image_bytes((200, 30, 60), fmt, size) for fmt in ("PNG", "JPEG", "WEBP", "GIF")
             for size in ((7, 5), (40, 31))]
    basis = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
    settings = ServeConfig(max_upload_bytes=64_000, max_pixels=100_000, max_images=4)
    statuses: dict[int, int] = {}
    failures = []
    with local_client(create_app(ColourModel(basis), None, settings), raise_server_exceptions=False) as client:
        for case in range(CASES):
            batch = rng.random() < 0.5
            request = random_request(rng, seeds, batch)
            path = "/v1/predict/batch" if batch else "/v1/predict"
            query = rng.choice(["", "", "", "?top_k=3", "?decode=false", "?top_k=-1", "?top_k=abc", "?decode=maybe"])
            response = client.post(path + query, **request)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                failures.append((case, response.status_code, response.text[:200]))
            elif response.status_code >= 400:
                error = response.json()["error"]
                assert error and "\n" not in error and "Traceback" not in error
        assert client.post("/v1/predict", files={"file": ("ok.png", seeds[0], "image/png")}).status_code == 200
        assert client.get("/healthz").json()["in_flight"] == 0
    assert failures == []
    # The fuzz must reach every kind of rejection, and some mutated images must still decode.
    assert {200, 400, 413, 415, 422} <= set(statuses), statuses
