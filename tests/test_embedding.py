"""The target embedder reproduces the Kaggle host's embeddings and the plain sentence-transformers path."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from img2prompt.cli import app
from img2prompt.embedding import EmbeddingCache, TextEmbedder, token_budget_batches
from img2prompt.kaggle import read_submission


def test_cli_embed_reproduces_host_submission(shared_data, tmp_path):
    sample = shared_data / "kaggle_sample"
    out = tmp_path / "submission.csv"
    result = CliRunner().invoke(app, ["embed", str(sample / "prompts.csv"), "--kaggle", str(out)])
    assert result.exit_code == 0, result.output
    ids, ours = read_submission(out)
    host_ids, host = read_submission(sample / "sample_submission.csv")
    assert ids == host_ids
    assert out.read_text().splitlines()[0] == "imgId_eId,val"
    assert [line.split(",")[0] for line in out.read_text().splitlines()] == [
        line.split(",")[0] for line in (sample / "sample_submission.csv").read_text().splitlines()
    ]
    assert np.abs(ours - host).max() <= 1e-6
    # The host's embeddings have dims 127, 223 and 319 at ~0; ours must too.
    assert np.abs(ours[:, [127, 223, 319]]).max() < 1e-6


def test_matches_plain_sentence_transformers(shared_data, text_embedder):
    from sentence_transformers import SentenceTransformer

    lines = (shared_data / "prompts" / "900k_dedup_08_split_dedup_wt_wv.txt").read_text().splitlines()
    prompts = [line for line in lines[:300] if line.strip()]
    plain = SentenceTransformer(text_embedder.model_path, device="cpu").encode(
        prompts, batch_size=256, normalize_embeddings=True
    )
    ours = text_embedder.encode(prompts)
    assert ours.dtype == np.float32 and ours.shape == (len(prompts), 384)
    assert np.abs(ours - plain).max() <= 1e-6


def test_token_states_and_ids_are_bit_identical_to_transformers(shared_data, text_embedder):
    """Our BERT (img2prompt.bert) and tokenizer against transformers' own, on real prompts in padded batches."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    lines = (shared_data / "prompts" / "prompts_filtered_4.0.txt").read_text().splitlines()[:200]
    texts = [*lines, " ".join(["castle"] * 400), "", "  Ünïcödé café, 東京 🙂\t(art:1.2)  "]
    reference = AutoTokenizer.from_pretrained(text_embedder.model_path)
    ids = text_embedder.token_ids(texts)
    assert ids == reference(texts, truncation=True, max_length=256)["input_ids"] and max(map(len, ids)) == 256
    model = AutoModel.from_pretrained(text_embedder.model_path).eval()
    lengths = [len(x) for x in ids]
    with torch.inference_mode():
        for batch in token_budget_batches(lengths, 2048):
            width = lengths[batch[-1]]
            input_ids = torch.zeros((len(batch), width), dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            for row, index in enumerate(batch):
                input_ids[row, : lengths[index]] = torch.tensor(ids[index])
                mask[row, : lengths[index]] = 1
            expected = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            assert torch.equal(text_embedder._encoder(input_ids, mask), expected)


def test_encode_is_order_preserving_and_deduplicates(text_embedder):
    prompts = ["a red fox", "a very long prompt about a castle on a hill at sunset, oil painting", "a red fox"]
    vectors = text_embedder.encode(prompts)
    assert np.array_equal(vectors[0], vectors[2])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    single = text_embedder.encode([prompts[1]])
    np.testing.assert_allclose(single[0], vectors[1], atol=1e-6)
    assert text_embedder.encode([]).shape == (0, 384)


def test_truncates_long_prompts_like_the_host(text_embedder):
    long_prompt = " ".join(["castle"] * 400)
    vector = text_embedder.encode([long_prompt])
    assert np.isfinite(vector).all() and vector.shape == (1, 384)


def test_token_budget_batches_cover_everything_once():
    lengths = [5, 40, 3, 40, 12, 7, 256, 9]
    batches = list(token_budget_batches(lengths, max_tokens=64))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    for batch in batches:
        widest = max(lengths[i] for i in batch)
        assert len(batch) == 1 or len(batch) * widest <= 64
    assert [lengths[i] for i in flat] == sorted(lengths)


def test_disk_cache_round_trip_and_reuse(tmp_path, text_embedder):
    prompts = ["an astronaut riding a horse", "a bowl of ramen"]
    cached = TextEmbedder(cache_dir=tmp_path)
    first = cached.encode(prompts)
    store = EmbeddingCache(tmp_path / "embeddings.sqlite", cached.cache._tag)
    hits = store.get_many(prompts)
    assert set(hits) == set(prompts)
    np.testing.assert_array_equal(hits["a bowl of ramen"], first[1])
    # A second embedder reads the cache: poison it and the poisoned value must come back.
    store.put_many(["a bowl of ramen"], np.zeros((1, 384), np.float32))
    store.close()
    again = TextEmbedder(cache_dir=tmp_path).encode(prompts)
    np.testing.assert_array_equal(again[0], first[0])
    assert not again[1].any()


def test_int8_backend_is_close_to_exact(text_embedder):
    prompts = ["a portrait of a knight, oil painting, highly detailed", "two cats on a sofa", "city at night"]
    fast = TextEmbedder(backend="int8").encode(prompts)
    exact = text_embedder.encode(prompts)
    cosines = (fast * exact).sum(axis=1)
    assert cosines.min() > 0.98


def test_unknown_backend_and_missing_model_fail_cleanly(tmp_path):
    from img2prompt.errors import Img2PromptError

    with pytest.raises(Img2PromptError, match="unknown embedding backend"):
        TextEmbedder(backend="fp4")  # type: ignore[arg-type]
    with pytest.raises(Img2PromptError, match="cannot load"):
        TextEmbedder(str(tmp_path / "no-model-here"))
