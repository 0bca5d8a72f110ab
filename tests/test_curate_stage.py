"""The curation stage end to end on the fixtures: table, counts, report, determinism, resume, CLI errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from img2prompt.curate.config import CurateConfig, SplitConfig
from img2prompt.curate.run import curate, split_of
from img2prompt.prompt_table import COLUMNS, prompt_id, read_table
from img2prompt.sections import load_section

FIXTURES = Path(__file__).parent / "fixtures" / "prompts"
CHUNK = 8  # prompts per cached embedding chunk: small, so a run has several
SOURCES = [
    {"name": "ddb", "type": "diffusiondb", "path": "diffusiondb_metadata.parquet"},
    {"name": "coco", "type": "coco", "path": "coco_captions.json"},
    {"name": "vizwiz", "type": "vizwiz", "path": "vizwiz_captions.json"},
    {"name": "textcaps", "type": "textcaps", "path": "textcaps_train.json"},
    {"name": "flickr", "type": "flickr", "path": "flickr30k_results.token"},
    {"name": "narratives", "type": "localized_narratives", "path": "*_localized_narratives.jsonl"},
    {"name": "llm_txt", "type": "text", "path": "llm_prompts.txt"},
    {"name": "llm_csv", "type": "csv", "path": "llm_prompts.csv"},
    {"name": "llm_jsonl", "type": "jsonl", "path": "llm_prompts.jsonl"},
    {"name": "pairs", "type": "csv", "path": "dissim_pairs.tsv", "delimiter": "\t", "header": False, "column": "2"},
    {"name": "coyo", "type": "coyo", "path": "coyo_part-*.parquet", "tier": "lq"},
    {"name": "scenes", "type": "scenes", "count": 4, "seed": 7},
]


def write_config(tmp: Path, out: Path, **extra) -> Path:
    """The fixtures hold a few malformed rows on purpose (counted below), so this run tolerates any share."""
    sources = [{**s, "path": str(FIXTURES / s["path"])} if "path" in s else s for s in SOURCES]
    section = {"out": str(out), "progress": False, "sources": sources, "max_bad_share": 1.0, **extra}
    path = tmp / "curate.yaml"
    path.write_text(yaml.safe_dump({"curate": section}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("curate")
    curate(load_section(write_config(tmp, tmp / "out"), "curate", CurateConfig, [f"curate.embedding.chunk={CHUNK}"]))
    return tmp / "out"


def test_table_has_the_contract_columns_and_exact_target_embeddings(run, text_embedder):
    frame, vectors = read_table(run / "prompts.parquet")
    assert not (run / "candidate_embeddings.npy").exists()  # the scratch memmap goes once the table is written
    assert (*frame.columns, "embedding") == COLUMNS
    assert frame["prompt_id"].is_unique
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert np.abs(vectors - text_embedder.encode(list(frame["prompt"]))).max() < 1e-6


def test_rules_dedup_and_tiers_did_their_job(run):
    frame, _ = read_table(run / "prompts.parquet", columns=["prompt", "source", "tier", "cluster", "split"])
    prompts = set(frame["prompt"])
    assert "a castle on a hill at sunset, highly detailed, by greg rutkowski" in prompts  # weights stripped
    assert "A man riding a wave on top of a surfboard." in prompts  # coco, read before flickr and llm_txt
    assert "A man rides a wave on top of a surfboard." not in prompts  # flickr's near duplicate
    assert "a man riding a wave on top of a surfboard" not in prompts  # llm_txt's near duplicate
    assert not any("http" in p or "\ufffd" in p for p in prompts)
    assert "highly detailed, 8k, trending on artstation" not in prompts
    assert not any(p.startswith("Un homme") for p in prompts)
    assert set(frame.loc[frame.source == "coyo", "tier"]) == {"lq"}
    assert frame.loc[frame.prompt == "Two young, White males are outside near many bushes.", "tier"].item() == "hq"
    assert set(frame["source"]) >= {"ddb", "coco", "vizwiz", "textcaps", "narratives", "llm_csv", "scenes"}
    # hq rows come first, then lq; clusters are named by their first row
    assert list(frame["tier"]).index("lq") > 0 if "lq" in set(frame["tier"]) else True
    assert (frame["cluster"] <= frame.index).all()
    assert frame.groupby("cluster")["split"].nunique().max() == 1


def test_counts_per_source_and_rule(run):
    stats = json.loads((run / "stats.json").read_text())
    by_name = {s["name"]: s for s in stats["sources"]}
    assert by_name["ddb"]["read"] == 4 and by_name["ddb"]["bad_rows"] == 1
    assert by_name["ddb"]["exact_duplicates"] == 1 and by_name["ddb"]["only_modifiers"] == 1
    assert by_name["ddb"]["weights_normalised"] == 1
    assert by_name["coco"]["non_english"] == 1 and by_name["coyo"]["url_or_email"] == 1
    assert by_name["llm_txt"]["unreadable"] == 1 and by_name["flickr"]["too_short"] == 1
    assert by_name["flickr"]["near_duplicates"] == 1 and by_name["llm_txt"]["near_duplicates"] == 1
    assert stats["totals"]["bad_rows"] == 7
    assert stats["totals"]["read"] == sum(s["read"] for s in stats["sources"])
    frame, _ = read_table(run / "prompts.parquet", columns=["source"])
    assert stats["totals"]["kept"] == len(frame) == sum(s.get("kept", 0) for s in stats["sources"])
    totals = stats["totals"]
    assert totals["train"] + totals["val"] + totals["test"] == totals["kept"]
    assert totals["moved_to_train"] == sum(s.get("moved_to_train", 0) for s in stats["sources"])
    assert 1 <= totals["largest_cluster"] <= totals["largest_component"]
    assert 1 <= totals["cluster_size_p99"] <= totals["largest_cluster"]
    for source in stats["sources"]:
        removed = sum(source.get(k, 0) for k in ("unreadable", "url_or_email", "non_english", "too_short",
                                                 "too_long", "too_many_tokens", "only_modifiers",
                                                 "blocked_word", "exact_duplicates", "near_duplicates"))
        assert source["read"] == removed + source.get("kept", 0), source["name"]


def test_every_bad_row_is_in_bad_rows_tsv_and_counted_per_file_in_stats(run):
    with open(run / "bad_rows.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    stats = json.loads((run / "stats.json").read_text())
    assert len(rows) == stats["totals"]["bad_rows"] == sum(stats["bad_rows_per_file"].values()) == 7
    assert stats["bad_rows_per_file"] == dict(Counter(row["file"] for row in rows))
    assert stats["bad_rows_per_file"][str(FIXTURES / "flickr30k_results.token")] == 1
    ddb = str(FIXTURES / "diffusiondb_metadata.parquet")
    assert {"file": ddb, "unit": "row", "number": "3", "reason": "prompt is NoneType, not text"} in rows
    assert not (run / "bad_rows.tsv.tmp").exists()


def test_report_and_resolved_config(run):
    html = (run / "report.html").read_text()
    for needle in ("<h2>Summary</h2>", "<td class=\"t\">prompts read</td>", "Per source", "Removed near duplicates",
                   "A man rides a wave", "flickr30k_results.token:3", "val/test prompts were moved",
                   "<th>val/test moved to train</th>", "<th>not English</th>"):
        assert needle in html
    assert "moved_to_train" not in html and "non_english" not in html  # people read labels, not keys
    assert html.count('src="data:image/png;base64,') == 2  # both plots inline: the page stands alone
    for png in ("length_histogram.png", "nearest_neighbour_histogram.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    resolved = yaml.safe_load((run / "config.yaml").read_text())["curate"]
    assert resolved["dedup"]["threshold"] == 0.8 and len(resolved["sources"]) == len(SOURCES)


def test_resume_reuses_cached_chunks_and_gives_the_same_table_bit_for_bit(run, tmp_path, monkeypatch):
    from img2prompt.embedding import TextEmbedder

    encoded: list[int] = []
    original = TextEmbedder._encode_uncached

    def killed_after_first_chunk(self, prompts, **options):
        if encoded:
            raise KeyboardInterrupt  # the run is killed while the second chunk is being embedded
        encoded.append(len(prompts))
        return original(self, prompts, **options)

    config = load_section(write_config(tmp_path, tmp_path / "out"), "curate", CurateConfig,
                          [f"curate.embedding.chunk={CHUNK}"])
    monkeypatch.setattr(TextEmbedder, "_encode_uncached", killed_after_first_chunk)
    with pytest.raises(KeyboardInterrupt):
        curate(config)
    assert not (tmp_path / "out" / "prompts.parquet").exists()

    def counting(self, prompts, **options):
        encoded.append(len(prompts))
        return original(self, prompts, **options)

    monkeypatch.setattr(TextEmbedder, "_encode_uncached", counting)
    curate(config)
    total = json.loads((tmp_path / "out" / "stats.json").read_text())["totals"]["after_rules_and_exact_dedup"]
    assert encoded[0] == CHUNK and sum(encoded[1:]) == total - CHUNK  # nothing embedded twice

    first, first_vectors = read_table(run / "prompts.parquet")
    second, second_vectors = read_table(tmp_path / "out" / "prompts.parquet")
    pd.testing.assert_frame_equal(first, second)
    assert np.array_equal(first_vectors, second_vectors)


def test_splits_are_stable_hashes_of_the_cluster_with_the_asked_fractions():
    ids = [prompt_id(f"prompt number {i}") for i in range(20_000)]
    splits = pd.Series([split_of(i, SplitConfig(val=0.1, test=0.05)) for i in ids]).value_counts(normalize=True)
    assert splits["val"] == pytest.approx(0.1, abs=0.01) and splits["test"] == pytest.approx(0.05, abs=0.01)
    assert split_of("0000000000000000", SplitConfig()) == "val"
    assert split_of("ffffffffffffffff", SplitConfig()) == "train"


def test_config_errors_are_one_line_and_name_the_file(tmp_path, monkeypatch, capsys):
    from img2prompt.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("curate:\n  sources:\n    - {name: x, type: text, path: nowhere.txt}\n", encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["img2prompt", "curate", str(bad), "--set", f"curate.out={tmp_path}/o"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == "error: nowhere.txt: source file not found"

    bad.write_text("curate:\n  sources:\n    - {name: x, type: scenes}\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        main()
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad}: curate.sources.0") and "needs count > 0" in err and "\n" not in err


def test_an_empty_or_ambiguous_source_list_is_rejected():
    with pytest.raises(ValueError):
        CurateConfig(sources=[])
    twice = {"name": "a", "type": "text", "path": "x.txt"}
    with pytest.raises(ValueError, match="source names must be unique"):
        CurateConfig(sources=[twice, twice])


def test_max_kept_caps_a_source_at_that_many_candidates(tmp_path):
    """The recipe caps COYO by what survives the rules, not by rows read (memory grows with candidates)."""
    from img2prompt.curate.rules import PromptRules
    from img2prompt.curate.run import read_candidates
    from img2prompt.curate.sources import BadRows

    config = load_section(write_config(tmp_path, tmp_path / "out"), "curate", CurateConfig)
    full, _ = read_candidates(config, PromptRules(config.rules), BadRows())
    coyo = config.sources[-2]
    assert coyo.name == "coyo"
    total = sum(1 for s in full.source if s == len(config.sources) - 2)
    assert total > 1
    coyo.max_kept = 1
    capped, stats = read_candidates(config, PromptRules(config.rules), BadRows())
    assert sum(1 for s in capped.source if s == len(config.sources) - 2) == 1 == stats[-2]["candidates"]
    assert len(capped.texts) == len(full.texts) - total + 1


def cut_coco_config(tmp_path: Path, **source) -> Path:
    """A COCO captions file cut mid-way (as a failed download leaves it), as the only source."""
    text = (FIXTURES / "coco_captions.json").read_text()
    cut = tmp_path / "captions_train2017.json"
    cut.write_text(text[: text.index("caption", text.index("caption") + 10) + 30])
    path = tmp_path / "curate.yaml"
    path.write_text(yaml.safe_dump({"curate": {"out": str(tmp_path / "out"), "progress": False, "sources": [
        {"name": "coco", "type": "coco", "path": str(cut), **source}]}}))
    return path


def test_a_truncated_source_stops_the_run_with_one_line_and_keeps_bad_rows_tsv(tmp_path):
    from img2prompt.errors import Img2PromptError

    config = load_section(cut_coco_config(tmp_path), "curate", CurateConfig)
    with pytest.raises(Img2PromptError, match=r"captions_train2017\.json: damaged \(item 2: JSON broken after "
                                              r"item 1.*allow_partial: true") as info:
        curate(config)
    assert "\n" not in str(info.value) and not (tmp_path / "out" / "prompts.parquet").exists()
    assert "JSON broken after item 1" in (tmp_path / "out" / "bad_rows.tsv").read_text()
    result = subprocess.run([sys.executable, "-m", "img2prompt", "curate", str(cut_coco_config(tmp_path))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "damaged" in result.stderr


def test_allow_partial_keeps_what_a_damaged_source_held(tmp_path):
    table = curate(load_section(cut_coco_config(tmp_path, allow_partial=True), "curate", CurateConfig))
    frame, _ = read_table(table)
    assert len(frame) == 1


def test_a_source_of_mostly_bad_rows_stops_the_run(tmp_path):
    from img2prompt.errors import Img2PromptError

    lines = tmp_path / "llm.jsonl"
    lines.write_text('{"prompt": "a red fox on a beach at sunset, oil painting"}\n' + "not json\n" * 3)
    config = load_section(None, "curate", CurateConfig, [f"curate.out={tmp_path / 'out'}", "curate.progress=false",
                                f"curate.sources=[{{name: llm, type: jsonl, path: '{lines}'}}]"])
    with pytest.raises(Img2PromptError, match=r"llm\.jsonl: 3 of 4 rows of source 'llm' are malformed"):
        curate(config)
