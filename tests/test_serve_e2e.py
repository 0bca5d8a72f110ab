"""``img2prompt serve`` end to end: a tiny random-init checkpoint and a prompt bank behind a real uvicorn server,
driven over HTTP, over raw sockets (slow clients) and from headless Chromium (the web page and the API docs)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from img2prompt.images import load_image
from img2prompt.models.regressor import ModelConfig, Regressor
from img2prompt.prompt_table import prompt_id, write_table
from img2prompt.provenance import MODEL_WARNING
from serve_fakes import COLOUR_PROMPTS, ELONGATED, elongated_png, image_bytes

BANK = [*COLOUR_PROMPTS.values(), "portrait of an old sailor, oil painting, dramatic light",
        "a cyberpunk city street at night, neon signs, rain", "a cute corgi puppy in a field of flowers"]
IMG2PROMPT = str(Path(sys.executable).with_name("img2prompt"))  # the console script installed beside python


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = Regressor(ModelConfig(backbone="efficientnet_lite0", pretrained=False, tiny=True))
    # validated on scenes only, as the quickstart's models are: the page must say what that means
    return model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny", metrics={"val_per_source": {"scenes": 0.5}})


@pytest.fixture(scope="module")
def bank(tmp_path_factory, text_embedder) -> Path:
    frame = pd.DataFrame({"prompt_id": [prompt_id(p) for p in BANK], "prompt": BANK, "source": "test",
                          "tier": "hq", "cluster": list(range(len(BANK))), "split": "train"})
    return write_table(frame, text_embedder.encode(BANK), tmp_path_factory.mktemp("bank") / "prompts.parquet")


@contextmanager
def running_server(args: list[str], log: Path) -> Iterator[str]:
    """``img2prompt serve ARGS`` in a subprocess (on a free port); yields its base URL."""
    command = [IMG2PROMPT, "serve", *args, "--port", "0"]
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
    try:
        yield _wait_for_url(process, log, timeout_s=120)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_for_url(process: subprocess.Popen, log: Path, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(r"Uvicorn running on (http://\S+)", log.read_text())
        if found:
            return found.group(1)
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log.read_text()}")
        time.sleep(0.2)
    raise AssertionError(f"server did not start in {timeout_s}s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(checkpoint, bank, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("server") / "serve.log"
    with running_server([str(checkpoint), "--bank", str(bank), "--set", "decode.modifiers=[]",
                         "--set", "decode.budget_s=0.2",
                         # the embedding cache is opened at start-up and used from the decode thread
                         "--set", f"decode.cache_dir={log.parent / 'cache'}"], log) as url:
        yield url


def test_cli_server_answers_with_the_checkpoint_embedding(server, checkpoint):
    raw = image_bytes((30, 140, 220), size=(300, 200))
    response = httpx.post(f"{server}/v1/predict", files={"file": ("sky.png", raw, "image/png")}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = Regressor.from_pretrained(checkpoint).embed([load_image(raw)])[0]
    np.testing.assert_allclose(body["embedding"], expected, atol=1e-5)
    assert body["model"] == "tiny"  # the checkpoint folder's name, not its path
    assert str(checkpoint.parent) not in response.text
    assert len(body["nearest"]) == 5 and {n["prompt"] for n in body["nearest"]} <= set(BANK)
    assert body["cosine"] >= body["nearest"][0]["cosine"] - 1e-5
    health = httpx.get(f"{server}/healthz").json()
    assert health["bank_size"] == len(BANK) and health["batches_run"] >= 1 and health["model"] == "tiny"


def one_line_error(args: list[str]) -> str:
    """Run ``img2prompt serve ARGS``; it must exit 1 printing exactly one line, which is returned."""
    result = subprocess.run([IMG2PROMPT, "serve", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_cli_rejects_a_missing_model_in_one_line(tmp_path):
    assert one_line_error([str(tmp_path / "nope")]) == (
        f"error: {tmp_path / 'nope'}: not found (a model is a checkpoint folder, an ensemble YAML, or a baseline "
        "(mean:TABLE, nearest:SHARDS), clip:MODEL/PRETRAINED or hf-hub:ORG/NAME[@REVISION])")


def test_cli_rejects_a_misspelled_config_section_in_one_line(bank, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("serv:\n  port: 9000\n")
    assert one_line_error([f"mean:{bank}", "-c", str(config)]) == (
        f"error: {config}: unknown section 'serv' (did you mean 'serve'?) (sections: download, write_prompts, curate, "
        "generate, train, decode, serve, recipe)")


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_cli_rejects_a_port_out_of_range_in_one_line(bank, port):
    assert one_line_error([f"mean:{bank}", "--port", port]) == (
        f"error: --host/--port: serve.port: {port} is out of range (allowed: >= 0 and <= 65535)")


def wait(browser, condition, timeout_s: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout_s).until(condition)


def example(browser, index: int = 0):
    """An example picture of the page once it can be clicked (shown, with a size)."""
    from selenium.webdriver.common.by import By

    def ready(b):
        found = [e for e in b.find_elements(By.CSS_SELECTOR, "#examples .example img") if e.is_displayed()]
        return found if len(found) > index and found[index].size["height"] > 0 else None

    return wait(browser, ready)[index]


def cards(browser, run: int = 0) -> list:
    """The result cards of a run on the page (0: the newest)."""
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, "#runs .run")[run].find_elements(By.CSS_SELECTOR, ".card")


def test_web_page_examples_single_and_batch_uploads_and_modes(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    assert browser.title == "img2prompt"
    wait(browser, lambda b: b.find_element(By.ID, "model-name").text == "tiny")  # named, never by its path
    assert browser.find_element(By.ID, "served").text == f"Serving model tiny · a bank of {len(BANK)} prompts"
    assert browser.find_element(By.ID, "model-warning").text == f"This model {MODEL_WARNING}."
    modes = {m.get_attribute("value"): m.is_selected() for m in browser.find_elements(By.NAME, "mode")}
    assert modes == {"fast": True, "best": False}

    example(browser, 3)  # all four shown
    examples = browser.find_elements(By.CSS_SELECTOR, "#examples .example img")
    assert len(examples) == 4
    loaded = "return arguments[0].complete && arguments[0].naturalWidth"
    assert wait(browser, lambda b: [b.execute_script(loaded, e) for e in examples] == [224] * 4)
    examples[0].click()  # one example: /v1/predict, shown with the prompt it was drawn from
    wait(browser, lambda b: b.find_element(By.ID, "status").text == "chickens.webp")
    [card] = cards(browser)
    prompt = card.find_element(By.CSS_SELECTOR, ".prompt").text
    assert any(prompt.startswith(p) for p in BANK)  # the decoder builds on a bank prompt
    assert re.fullmatch(r"cosine -?\d\.\d{4} of this prompt's embedding to the image's predicted embedding( capped)?",
                        card.find_element(By.CSS_SELECTOR, ".score-line").text)
    assert card.find_element(By.CSS_SELECTOR, ".truth").text.startswith("Drawn from: two large brown chickens")
    neighbours = [li.text for li in card.find_elements(By.CSS_SELECTOR, ".nearest li")]
    assert len(neighbours) == 5 and all(re.search(r"\d\.\d{4}$", n) for n in neighbours)
    card.find_element(By.CSS_SELECTOR, ".copy").click()
    wait(browser, lambda b: card.find_element(By.CSS_SELECTOR, ".copy").text == "Copied", 10)

    browser.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="best"]').click()
    pictures = []
    for i, colour in enumerate([(240, 120, 40), (40, 200, 90), (60, 80, 230)]):
        pictures.append(tmp_path / f"upload{i}.png")
        Image.new("RGB", (320, 240), colour).save(pictures[-1])
    browser.find_element(By.ID, "file").send_keys("\n".join(str(p) for p in pictures))  # several: one batch
    wait(browser, lambda b: b.find_element(By.ID, "status").text == "3 images")
    run = browser.find_elements(By.CSS_SELECTOR, "#runs .run")[0]
    assert run.find_element(By.CSS_SELECTOR, ".run-title").text.startswith("Batch of 3 images · mode best · ")
    assert [c.find_element(By.CSS_SELECTOR, ".name").text for c in cards(browser)] == [p.name for p in pictures]
    assert all(c.find_element(By.CSS_SELECTOR, ".prompt").text for c in cards(browser))
    assert len(cards(browser, 1)) == 1  # the example's answer stays below

    browser.find_element(By.ID, "file").send_keys(str(Path(__file__)))  # not an image: the page shows the error
    wait(browser, lambda b: b.find_element(By.ID, "error").is_displayed(), 30)
    assert "not an image type this server accepts" in browser.find_element(By.ID, "error").text

    browser.execute_async_script(DROP_IMAGE)  # drag and drop: a drop event carrying a PNG file
    wait(browser, lambda b: b.find_element(By.ID, "status").text == "dropped.png")
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert cards(browser)[0].find_element(By.CSS_SELECTOR, ".prompt").text
    assert "/tmp" not in browser.page_source and str(Path.home()) not in browser.page_source


def test_the_page_fits_a_390_px_phone_and_the_prompt_wraps_at_its_width(server, browser):
    """An iPhone-sized viewport (390 CSS px): nothing scrolls sideways, the answer's prompt spans the page."""
    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": True})
    browser.get(server + "/")
    example(browser).click()
    wait(browser, lambda b: b.find_element(By.ID, "status").text == "chickens.webp")
    page = browser.execute_script("return [window.innerWidth, document.documentElement.scrollWidth]")
    assert page == [390, 390]  # no horizontal overflow
    prompt = cards(browser)[0].find_element(By.CSS_SELECTOR, ".prompt")
    assert prompt.size["width"] >= 300  # wraps at the page's width (it was ~12 characters wide)
    assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", prompt)


def test_api_docs_work_offline_and_try_it_out_uploads_a_file(server, browser, tmp_path):
    """Swagger UI renders the schema and its "Try it out" form sends a described multipart body."""
    from selenium.webdriver.common.by import By

    picture = tmp_path / "tryit.png"
    Image.new("RGB", (64, 64), (200, 40, 90)).save(picture)
    browser.get(server + "/docs")
    operation = wait(browser, lambda b: b.find_element(By.ID, "operations-default-predict_v1_predict_post"))
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait(browser, lambda b: operation.find_element(By.CSS_SELECTOR, ".try-out__btn")).click()
    operation.find_element(By.CSS_SELECTOR, 'input[type="file"]').send_keys(str(picture))
    operation.find_element(By.CSS_SELECTOR, ".execute").click()
    live = ".live-responses-table tr.response .response-col_status"
    assert wait(browser, lambda b: operation.find_element(By.CSS_SELECTOR, live)).text == "200"
    assert '"image": "tryit.png"' in operation.find_element(By.CSS_SELECTOR, ".live-responses-table").text


DROP_IMAGE = """
const done = arguments[arguments.length - 1];
const canvas = document.createElement("canvas");
canvas.width = 64; canvas.height = 48;
const context = canvas.getContext("2d");
context.fillStyle = "#3060c0"; context.fillRect(0, 0, 64, 48);
canvas.toBlob((blob) => {
  const data = new DataTransfer();
  data.items.add(new File([blob], "dropped.png", { type: "image/png" }));
  const event = new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true });
  document.getElementById("drop").dispatchEvent(event);
  done(true);
}, "image/png");
"""


SLOW_CLIENTS = 16


@pytest.fixture(scope="module")
def guarded_server(checkpoint, tmp_path_factory) -> Iterator[str]:
    """A server with fewer processing slots than the attack has slow clients, and a 6 s body deadline."""
    log = tmp_path_factory.mktemp("guarded") / "serve.log"
    with running_server([str(checkpoint), "--set", "serve.max_in_flight=4", "--set", "serve.body_timeout_s=6"],
                        log) as url:
        yield url


def slow_client(url: str) -> socket.socket:
    """A raw connection that sends its headers, announcing a 100 kB upload, and then trickles its body."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=20)
    sock.sendall(f"POST /v1/predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 100000\r\n"
                 "Content-Type: multipart/form-data; boundary=x\r\n\r\n--x".encode())
    return sock


def trickle(sockets: list[socket.socket], stop: threading.Event) -> None:
    """One byte on every connection each 0.5 s, until ``stop`` or the server hangs up on them."""
    while not stop.wait(0.5):
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.send(b"-")


def test_under_slow_client_and_extreme_aspect_attacks_a_normal_request_is_answered_in_a_second(guarded_server):
    url = guarded_server
    normal = image_bytes((30, 140, 220), size=(300, 200))
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.post("/v1/predict", files={"file": ("warm.png", normal)}).status_code == 200
        slow = [slow_client(url) for _ in range(SLOW_CLIENTS)]
        stop = threading.Event()
        with ThreadPoolExecutor(3) as pool, contextlib.ExitStack() as cleanup:
            cleanup.callback(stop.set)  # whatever fails below, the trickling thread ends
            for sock in slow:
                cleanup.callback(sock.close)
            pool.submit(trickle, slow, stop)
            while http.get("/healthz").json()["receiving"] < SLOW_CLIENTS:
                time.sleep(0.05)

            def attack() -> list[int]:  # extreme aspect ratios, back to back, from another client
                with httpx.Client(base_url=url, timeout=30) as attacker:
                    return [attacker.post("/v1/predict", files={"file": ("long.png", elongated_png(*size))}).status_code
                            for _ in range(3) for size in ELONGATED]

            attacks = [pool.submit(attack) for _ in range(2)]
            answers = []
            for _ in range(5):
                started = time.perf_counter()
                response = http.post("/v1/predict", files={"file": ("normal.png", normal)})
                answers.append((response.status_code, time.perf_counter() - started))
            assert all(status == 200 for status, _ in answers), answers
            assert max(took for _, took in answers) < 1.0, answers
            assert [status for future in attacks for status in future.result()] == [400] * 12
            health = http.get("/healthz").json()
            assert health["receiving"] == SLOW_CLIENTS  # the slow clients were still sending all along
            cut_off = [sock.recv(200).split(b"\r\n")[0] for sock in slow]  # the body deadline ends them
    assert cut_off == [b"HTTP/1.1 408 Request Timeout"] * SLOW_CLIENTS
