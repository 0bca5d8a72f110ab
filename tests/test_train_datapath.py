"""The training data path at scale, on a small scale: 2 processes x 2 loader workers read every sample once per
epoch, also across a mid-epoch kill and resume; a bad image is skipped and counted without desynchronising the
ranks; damaged shards are one-line errors naming the shard; old shards without index files still train.

Reads are counted by the test, not by the code under test: ``HOOKED_CLI`` wraps ``read_record`` (the one function
that reads a sample's bytes) to append each key it reads to a file of its own process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from img2prompt.errors import Img2PromptError
from img2prompt.shards import index_path, read_index
from img2prompt.train.config import TrainConfig
from img2prompt.train.index import ShardIndex
from img2prompt.train.trainer import train
from learning import Bar, assert_learned, loss_drop
from test_train_data import make_color_shards

REPO = Path(__file__).resolve().parents[1]

# ``logged_read`` wraps read_record: each sample read appends "<monotonic ns> <key>" to
# $READS/<rank>-<loader worker or main>-<pid>.txt.
READ_LOGGER = """
import os, time
from pathlib import Path
import torch
import img2prompt.train.epochs as epochs

read_record = epochs.read_record

def logged_read(path, offset, size):
    raw = read_record(path, offset, size)
    info = torch.utils.data.get_worker_info()
    name = f"{os.environ.get('RANK', '0')}-{info.id if info else 'main'}-{os.getpid()}.txt"
    with open(Path(os.environ["READS"]) / name, "a") as handle:
        handle.write(f"{time.monotonic_ns()} {raw['__key__']}\\n")
    return raw
"""

# ``img2prompt train`` with every read logged, each rank's final weights hashed to $READS/weights-<rank>.txt and,
# with $KILL set, every rank SIGKILLed right after its first save (state.pt in place: a fixed point, never a race).
HOOKED_CLI = READ_LOGGER + """
import hashlib, signal
from img2prompt.train.trainer import Trainer

LOG = Path(os.environ["READS"])
epochs.read_record = logged_read
fit, save = Trainer.fit, Trainer.save

def fit_and_hash(self):
    out = fit(self)
    weights = b"".join(t.detach().numpy().tobytes() for t in self.model.state_dict().values())
    (LOG / f"weights-{self.accelerator.process_index}.txt").write_text(hashlib.sha256(weights).hexdigest())
    return out

def save_then_die(self):
    save(self)
    os.kill(os.getpid(), signal.SIGKILL)

Trainer.fit = fit_and_hash
if os.environ.get("KILL"):
    Trainer.save = save_then_die
from img2prompt.cli import main
main()
"""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """In-process trainings of the tiny model use one intra-op thread, as the torchrun ranks do: on 2 shared cores,
    two threads spinning against other work made a 4 s run take 40 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def torchrun(tmp_path: Path, cfg: Path, reads: Path, *overrides: str, kill: bool = False,
             processes: int = 2) -> subprocess.CompletedProcess:
    """``img2prompt train cfg`` under torchrun with gloo, through ``HOOKED_CLI``, logging reads under ``reads``."""
    script = tmp_path / "hooked_cli.py"
    script.write_text(HOOKED_CLI)
    reads.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               str(script), "train", str(cfg), *[arg for o in overrides for arg in ("--set", o)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "READS": str(reads), "KILL": "1" if kill else ""}
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


def read_log(reads: Path) -> dict[tuple[str, str], list[list[str]]]:
    """(rank, loader worker or "main") -> the keys each of its processes read, processes in start order (a loader
    worker process lives one epoch, so for workers this is one list per epoch)."""
    files: dict[tuple[str, str], list[tuple[int, list[str]]]] = {}
    for path in reads.glob("*-*-*.txt"):
        rank, worker, _ = path.stem.split("-")
        lines = [line.split() for line in path.read_text().splitlines()]
        files.setdefault((rank, worker), []).append((int(lines[0][0]), [key for _, key in lines]))
    return {slot: [keys for _, keys in sorted(runs)] for slot, runs in files.items()}


def epoch_reads(log: dict[tuple[str, str], list[list[str]]], epoch: int) -> list[str]:
    """Every training key the loader workers of every rank read in ``epoch``."""
    return [key for (_, worker), runs in log.items() if worker != "main" and len(runs) > epoch
            for key in runs[epoch]]


def prompt_of(key: str) -> str:
    return key.rsplit("-", 1)[0]


def damage_images(shards: Path, keys: list[str]) -> None:
    """Overwrite the middle of these samples' PNG bytes in place: same size, a failing CRC (bit rot after writing)."""
    for tar_path in sorted(shards.glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            spans = [(m.offset_data, m.size) for m in tar.getmembers() if m.name.rsplit(".", 1)[0] in keys
                     and m.name.endswith(".png")]
        with tar_path.open("r+b") as handle:
            for offset, size in spans:
                handle.seek(offset + size // 2)
                handle.write(b"\xff" * 16)


BAD_KEYS = ["p00011-0", "p00011-1", "p00047-0", "p00047-1"]  # both images of two training prompts


def section(shards: Path, seed: int = 0) -> dict:
    return {
        "seed": seed, "log_with": [], "plots": False, "save_every": 3,
        "model": {"backbone": "vit_l_14_336", "pretrained": False, "tiny": True, "image_size": 28},
        "data": {"shards": [str(shards)], "batch_size": 4, "shuffle_buffer": 16, "num_workers": 2,
                 "max_bad_share": 0.2},
        "optim": {"lr": 3e-3, "epochs": 2, "warmup_steps": 1},
    }


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 2-process x 2-worker run over 12 shards with 4 bad images, SIGKILLed after its first save (step 3 of epoch
    0) and started again; beside it, in this process, the same run as 1 process x 4 workers accumulating 2 batches.

    The two have the same 4 (worker, rank) slots (slot = worker * processes + rank), so the same reads, and each
    optimizer step averages the same two slots' batches: the one-process run is the reference of the other.
    """
    tmp = tmp_path_factory.mktemp("ddp")
    shards = make_color_shards(tmp / "shards", n_prompts=120, shard_size=20, size=28)
    damage_images(shards, BAD_KEYS)
    cfg = tmp / "ddp.yaml"
    cfg.write_text(yaml.safe_dump({"train": {**section(shards), "out": str(tmp / "run")}}))
    killed = torchrun(tmp, cfg, tmp / "killed", kill=True)
    assert killed.returncode != 0 and (tmp / "run" / "state.pt").exists(), killed.stderr[-2000:]
    position = torch.load(tmp / "run" / "state.pt", weights_only=True)["run"]
    resumed = torchrun(tmp, cfg, tmp / "resumed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    log = tmp / "reference"
    log.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("READS", str(log))
        logger: dict = {}
        exec(READ_LOGGER, logger)
        patch.setattr("img2prompt.train.epochs.read_record", logger["logged_read"])
        one = reference_run(shards, tmp / "one")
    return {"out": tmp / "run", "one": one, "position": position, "stdout": resumed.stdout,
            "stderr": killed.stderr + resumed.stderr, "killed": read_log(tmp / "killed"),
            "resumed": read_log(tmp / "resumed"), "reference": read_log(log), "reads": tmp / "resumed"}


def reference_run(shards: Path, out: Path, seed: int = 0) -> Path:
    """The 2 x 2 run's reference: 1 process x 4 loader workers, accumulating 2 batches (the same 4 slots)."""
    reference = section(shards, seed)
    reference["data"] |= {"num_workers": 4}
    reference["optim"] |= {"grad_accum": 2}
    with warnings.catch_warnings():  # 4 loader workers on 2 cores: slow, but the point is the same slots
        warnings.filterwarnings("ignore", "This DataLoader will create 4 worker processes", UserWarning)
        return train(TrainConfig.model_validate({**reference, "out": str(out)}))


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


# The runs learn (the 2 x 2 run follows this reference to 1e-4). Bar: the worst of 5 seeds x {1, 2} threads
# (benchmarks/learning_margins.py), minus a margin; a start or end loss is the mean of 3 steps (one is too noisy).
LEARNING = {"start loss - end loss": Bar(0.05, worst=0.1929)}


def measure(seed: int, root: Path) -> dict[str, float]:
    """The reference run on damaged shards of ``seed``: the quantity ``LEARNING`` bounds."""
    shards = make_color_shards(root / "shards", n_prompts=120, shard_size=20, size=28, seed=seed)
    damage_images(shards, BAD_KEYS)
    return {"start loss - end loss": loss_drop(reference_run(shards, root / "one", seed), 3)}


def test_two_ranks_of_two_workers_read_every_sample_once_per_epoch_across_a_kill(ddp: dict) -> None:
    assert (ddp["position"]["epoch"], ddp["position"]["batch"], ddp["position"]["step"]) == (0, 3, 3)
    assert "train: resumed at optimizer step 3 (epoch 0, batch 3)" in ddp["stdout"]
    assert "2 loader worker(s) x 2 process(es)" in ddp["stdout"]
    # The killed run's loader workers read ahead of training (prefetch). What a rank trained on before the kill
    # is, per loader worker w, its first len(range(w, 3, 2)) batches of 4: the loader takes batches round-robin.
    trained = [key for (_, worker), runs in ddp["killed"].items() if worker != "main"
               for key in runs[0][:4 * len(range(int(worker), 3, 2))]]
    epochs = [trained + epoch_reads(ddp["resumed"], 0), epoch_reads(ddp["resumed"], 1)]
    steps = len(metrics(ddp["out"])["train_loss"])
    assert [s for s, _ in metrics(ddp["out"])["train_loss"]] == list(range(1, steps + 1))
    for epoch, keys in enumerate(epochs):
        # Each key at most once, one image per prompt, no val prompt, whole batches of 4 in each of the 4 slots.
        assert len(keys) == len(set(keys)) == len({prompt_of(k) for k in keys})
        assert not any(int(prompt_of(k)[1:]) % 5 == 0 for k in keys) and len(keys) % 16 == 0
        assert len(keys) >= 96 - 4 * 4 * 2  # fewer than 2 batches a slot left out of the 96 prompts
        assert sorted(keys) == sorted(epoch_reads(ddp["reference"], epoch))  # the same samples as 1 x 4 workers
        # Each rank read its own slots: no key read by both.
        by_rank = [{k for (r, w), runs in ddp["resumed"].items() if r == rank and w != "main" for k in runs[epoch]}
                   for rank in "01"]
        assert not by_rank[0] & by_rank[1]
    # Every rank trained on 4-sample batches from 2 workers: the reads are exactly the steps' samples.
    assert sum(len(keys) for keys in epochs) == steps * 2 * 4 and epochs[0] != epochs[1]
    # Validation: each rank read its half of the 24 val prompts' first images, at each of the 2 epoch ends.
    val = {rank: Counter(ddp["resumed"][(rank, "main")][0]) for rank in "01"}
    assert not val["0"].keys() & val["1"].keys() and sum(len(v) for v in val.values()) == 24
    assert all(n == 2 for v in val.values() for n in v.values())


def test_bad_images_are_skipped_and_the_ranks_stay_in_step_on_the_one_process_curve(ddp: dict) -> None:
    done, one = metrics(ddp["out"]), metrics(ddp["one"])
    read = [k for epoch in (0, 1) for k in epoch_reads(ddp["reference"], epoch)]
    bad = sum(1 for k in read if k in BAD_KEYS)
    assert bad >= 1 and done["bad_samples"] == one["bad_samples"] == bad
    assert ddp["stderr"].count("skipped a bad sample") == bad
    assert len({(ddp["reads"] / f"weights-{rank}.txt").read_text() for rank in "01"}) == 1
    assert [s for s, _ in done["train_loss"]] == [s for s, _ in one["train_loss"]]
    np.testing.assert_allclose([v for _, v in done["train_loss"]], [v for _, v in one["train_loss"]], atol=1e-4)
    assert_learned({"start loss - end loss": loss_drop(ddp["one"], 3)}, LEARNING)
    assert done["val_mean_cosine"] == pytest.approx(one["val_mean_cosine"], abs=1e-4)


def one_process(shards: Path, out: Path, **data) -> TrainConfig:
    return TrainConfig.model_validate({
        "out": str(out), "seed": 0, "log_with": [], "plots": False,
        "model": {"backbone": "vit_l_14_336", "pretrained": False, "tiny": True, "image_size": 28},
        "data": {"shards": [str(shards)], "batch_size": 16, "shuffle_buffer": 32, **data},
        "optim": {"lr": 3e-3, "epochs": 2, "warmup_steps": 1},
    })


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """80 training prompts of one image each (5 batches of 16 an epoch: none left out), one image damaged."""
    shards = make_color_shards(tmp_path_factory.mktemp("single"), n_prompts=100, images_per_prompt=1, size=28)
    damage_images(shards, ["p00013-0"])
    return shards


def test_a_bad_image_is_skipped_logged_and_counted_or_fails_past_the_share(
        single: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = train(one_process(single, tmp_path / "skip", max_bad_share=0.05))
    assert metrics(run)["bad_samples"] == 2 and len(metrics(run)["train_loss"]) == 10  # read once in each epoch
    logged = [line for line in capsys.readouterr().err.splitlines() if "skipped a bad sample" in line]
    assert len(logged) == 2 and all("shard-00000.tar:p00013-0.png: corrupt" in line for line in logged)
    with pytest.raises(Img2PromptError) as info:  # the default share: 1 in 80 is more than 0.001
        train(one_process(single, tmp_path / "share"))
    assert str(info.value).startswith("train.data.max_bad_share: 1 bad samples in this rank's epoch of 80, more "
                                      "than 0.001 of them (the last: ") and "\n" not in str(info.value)
    with pytest.raises(Img2PromptError, match=r"shard-00000\.tar:p00013-0\.png: corrupt"):  # from a loader worker
        train(one_process(single, tmp_path / "fail", on_bad_sample="fail", num_workers=1))


def test_damaged_shards_are_one_line_errors_naming_the_shard(tmp_path: Path) -> None:
    shards = make_color_shards(tmp_path / "shards", n_prompts=40, size=28)
    tars = sorted(shards.glob("*.tar"))
    lone = tmp_path / "lone.tar"
    lone.write_bytes(tars[0].read_bytes())
    # A damaged tar header after indexing: the loader worker that reads it stops the run in one line.
    with tarfile.open(tars[0]) as tar:
        headers = [m.offset for m in tar.getmembers()]
    with tars[0].open("r+b") as handle:
        for offset in headers:
            handle.seek(offset + 100)  # the mode field: a bad header checksum
            handle.write(b"\x07")
    with pytest.raises(Img2PromptError) as info:
        train(one_process(shards, tmp_path / "run", batch_size=8, num_workers=1))
    assert str(info.value).startswith(f"{tars[0]}: damaged tar member at byte ") and "\n" not in str(info.value)
    # A truncated shard: the size check at every start.
    with tars[1].open("r+b") as handle:
        handle.truncate(tars[1].stat().st_size - 1024)
    with pytest.raises(Img2PromptError, match=rf"^{tars[1]}: \d+ bytes on disk, \d+ when it was written"):
        ShardIndex.build([tars[1].parent])
    # The same shard without its index: built again, its sha256 differs from the manifest's.
    index_path(tars[0]).unlink()
    with pytest.raises(Img2PromptError, match=rf"^{tars[0]}: sha256 \w+\.\.\. differs from the manifest's"):
        ShardIndex.build([shards])
    # A lone tar (no manifest) whose header is damaged mid-file: tarfile would end the archive there, silently.
    with lone.open("r+b") as handle:
        handle.seek(headers[len(headers) // 2] + 100)
        handle.write(b"\x07")
    with pytest.raises(Img2PromptError, match=r"lone\.tar: damaged tar header after byte \d+"):
        ShardIndex.build([lone])


def test_a_same_size_change_is_found_by_verify_sha256_and_old_shards_get_their_index_built(tmp_path: Path) -> None:
    shards = make_color_shards(tmp_path / "shards", n_prompts=40, size=28)
    tars = sorted(shards.glob("*.tar"))
    written = {path: read_index(index_path(path)) for path in tars}
    for path in tars:  # shards written before index files existed
        index_path(path).unlink()
    index = ShardIndex.build([shards])
    for path, columns in written.items():
        rebuilt = read_index(index_path(path))
        assert rebuilt.meta == columns.meta and np.array_equal(rebuilt.offset, columns.offset)
    assert len(index) == 80 and index.nbytes_per_sample() == 29
    damage_images(shards, ["p00003-1"])
    ShardIndex.build([shards])  # size unchanged: the cheap check passes
    with pytest.raises(Img2PromptError, match=r"shard-00000\.tar: sha256 differs from the one recorded"):
        ShardIndex.build([shards], verify="sha256")
    with pytest.raises(Img2PromptError, match="sha256 differs"):  # rank 1 hashes the other half, where it is not
        ShardIndex.build([shards], verify="sha256", rank=0, world_size=2)
    ShardIndex.build([shards], verify="sha256", rank=1, world_size=2)
