"""Screenshot HTML reports in headless Chromium at a fixed page width, to check they read well at that width.

    python benchmarks/screenshot_reports.py RUN/report/report.html benchmarks/evaluation_report.png \
        RUN/prompts/report.html benchmarks/curation_report.png --width 1400 --height 3000

Each pair is a page and the PNG to write; the shot is the top ``--height`` pixels of the page (or all of it
when shorter), saved with 256 colours. A report is self-contained, so it is opened straight from its file.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def screenshot(pairs: list[tuple[Path, Path]], width: int, height: int) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
    with tempfile.TemporaryDirectory() as profile:
        for flag in [*FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver")))
        try:
            for page, png in pairs:
                _viewport(driver, width, 800)
                driver.get(page.resolve().as_uri())
                full = driver.execute_script("return Math.ceil(document.body.getBoundingClientRect().height)")
                _viewport(driver, width, min(full, height))
                _save_small(driver.get_screenshot_as_png(), png)
                print(f"{page} -> {png} ({width} x {min(full, height)} of {full} px)")
        finally:
            driver.quit()


def _viewport(driver, width: int, height: int) -> None:
    """The page's viewport in CSS pixels, whatever the window around it."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def _save_small(shot: bytes, png: Path) -> None:
    """Keep the shot as a 256-colour PNG: a third of the bytes in the repository, text and plots still sharp."""
    from PIL import Image

    Image.open(io.BytesIO(shot)).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", type=Path, help="PAGE.html OUT.png, repeated")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args()
    if len(args.pairs) % 2:
        parser.error("give pairs of PAGE.html OUT.png")
    screenshot(list(zip(args.pairs[::2], args.pairs[1::2], strict=True)), args.width, args.height)


if __name__ == "__main__":
    main()
