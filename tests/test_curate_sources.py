"""Each corpus reader on a small fixture in the corpus's published schema, and on the real files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from img2prompt.curate.sources import BAD_ROWS_COLUMNS, BadRows, ReadOptions, bad_rows_file, read_source
from img2prompt.errors import Img2PromptError

FIXTURES = Path(__file__).parent / "fixtures" / "prompts"


def read(kind: str, name: str, **options) -> tuple[list[str], BadRows]:
    bad = BadRows()
    texts = list(read_source(kind, str(FIXTURES / name), ReadOptions(**options), bad))
    return texts, bad


def test_diffusiondb_metadata_parquet_skips_null_prompts():
    texts, bad = read("diffusiondb", "diffusiondb_metadata.parquet")
    assert texts[0] == "a castle on a hill at sunset, (highly detailed:1.3), by greg rutkowski"
    assert len(texts) == 4
    assert bad.examples == [f"{FIXTURES / 'diffusiondb_metadata.parquet'}: row 3: prompt is NoneType, not text"]


def test_coyo_parquet_reads_the_text_column():
    texts, bad = read("coyo", "coyo_part-*.parquet")
    assert texts == [
        "Modern living room interior with a grey sofa and wooden floor",
        "Visit https://example.com for cheap flights",
        "Vintage red bicycle leaning against a brick wall",
    ]
    assert bad.total == 0


def test_coco_captions_json_streams_annotations():
    texts, bad = read("coco", "coco_captions.json")
    assert texts[:3] == [
        "A man is in a kitchen making pizzas.",
        "Man in apron standing on front of oven with pans and bakeware",
        "A man riding a wave on top of a surfboard.",
    ]
    assert len(texts) == 4
    assert bad.examples == [f"{FIXTURES / 'coco_captions.json'}: item 4: item has no text field 'caption'"]


def test_vizwiz_skips_precanned_and_rejected_captions():
    texts, _ = read("vizwiz", "vizwiz_captions.json")
    assert texts == [
        "ITS IS A BASIL LEAVES CONTAINER ITS CONTAINS THE NET WEIGHT TOO.",
        "A can of coffee beans with a yellow label on a white table.",
    ]


def test_textcaps_reads_caption_str():
    texts, _ = read("textcaps", "textcaps_train.json")
    assert texts == [
        "A yellow taxi cab with the number 42 painted on its door.",
        "The cover of a book titled The Old Man and the Sea.",
    ]


def test_flickr_token_file_counts_malformed_lines():
    texts, bad = read("flickr", "flickr30k_results.token")
    assert texts[2] == "A man rides a wave on top of a surfboard ."
    assert len(texts) == 4
    assert bad.examples == [f"{FIXTURES / 'flickr30k_results.token'}:3: expected 'image.jpg#n<TAB>caption'"]


def test_localized_narratives_jsonl_for_open_images_and_ade20k():
    texts, bad = read("localized_narratives", "*_localized_narratives.jsonl")
    assert texts == [  # the ade20k file sorts first
        "In this image I can see a bedroom with a bed, a lamp on a table and curtains on the window.",
        "In this image we can see a woman holding an umbrella and walking on the road.",
        "In this picture there is a red car parked beside the building and trees in the background.",
    ]
    assert bad.total == 1 and "open_images_localized_narratives.jsonl:2: invalid JSON" in bad.examples[0]


def test_text_csv_jsonl_and_headerless_tsv():
    texts, _ = read("text", "llm_prompts.txt")
    assert len(texts) == 4 and texts[-1] == "bad bytes \ufffd here in a prompt about cats"
    texts, bad = read("csv", "llm_prompts.csv")
    assert texts == ["A watercolor painting of a fox in a snowy forest, soft light",
                     'An astronaut, "lost" in a field of sunflowers']
    assert bad.examples == [f"{FIXTURES / 'llm_prompts.csv'}:4: 1 field(s), no column 'prompt'"]
    texts, bad = read("jsonl", "llm_prompts.jsonl")
    assert texts == ["A tiny dragon sleeping inside a teacup on a wooden table"] and bad.total == 1
    texts, bad = read("csv", "dissim_pairs.tsv", column="2", delimiter="\t", header=False)
    assert texts[0] == 'steampunk market interior, colorful, 3d scene, "ultra wide angle"'
    assert len(texts) == 2 and bad.total == 1


def test_scenes_source_calls_the_grammar():
    from img2prompt.scene_grammar import random_prompts

    bad = BadRows()
    assert list(read_source("scenes", None, ReadOptions(count=5, seed=3), bad)) == random_prompts(5, 3)


@pytest.mark.parametrize(
    ("kind", "name", "message"),
    [
        ("text", "missing.txt", "source file not found"),
        ("coco", "textcaps_train.json", "no items under 'annotations'"),
        ("coco", "llm_prompts.txt", "not a JSON file"),
        ("diffusiondb", "llm_prompts.txt", "not a readable Parquet file"),
        ("coyo", "diffusiondb_metadata.parquet", "no column 'text'"),
        ("csv", "llm_prompts.jsonl", "no column 'prompt' in the header"),
    ],
)
def test_wrong_file_is_a_one_line_error_naming_it(kind, name, message):
    with pytest.raises(Img2PromptError) as err:
        read(kind, name)
    assert str(err.value).startswith(str(FIXTURES / name)) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_truncated_json_keeps_what_came_before(tmp_path):
    whole = json.loads((FIXTURES / "coco_captions.json").read_text())
    text = json.dumps(whole)
    cut = tmp_path / "cut.json"
    cut.write_text(text[: text.index("A man riding")])  # the file ends inside the third caption
    bad = BadRows()
    texts = list(read_source("coco", str(cut), ReadOptions(), bad))
    assert len(texts) == 2 and bad.total == 1 and "JSON broken after item 2" in bad.examples[0]


def test_real_shared_files(shared_data):
    counts = {}
    for kind, name, options in [
        ("coco", "captions/coco_captions_val2017.json", {}),
        ("flickr", "captions/Flickr8k.token.txt", {}),
        ("text", "prompts/900k_dedup_08_split_dedup_wt_wv.txt", {}),
        ("csv", "prompts/dissim_pairs_*.txt", {"column": "2", "delimiter": "\t", "header": False}),
    ]:
        bad = BadRows()
        texts = list(read_source(kind, str(shared_data / name), ReadOptions(**options), bad))
        assert bad.total == 0, bad.examples
        assert all(isinstance(t, str) and t for t in texts)
        counts[kind] = len(texts)
    assert counts == {"coco": 25_014, "flickr": 40_460, "text": 43_124, "csv": 2_512 + 1_835 + 20_617}


def test_an_unparseable_csv_row_is_counted_and_the_rows_after_it_are_read(tmp_path):
    path = tmp_path / "prompts.csv"
    too_long = "x" * (csv.field_size_limit() + 1)
    path.write_text(f"id,prompt\n1,a red fox in the snow\n2,{too_long}\n3,a lighthouse at dusk\n4,a blue owl\n")
    bad = BadRows()
    texts = list(read_source("csv", str(path), ReadOptions(), bad))
    assert texts == ["a red fox in the snow", "a lighthouse at dusk", "a blue owl"]
    assert bad.total == 1 and bad.examples[0].startswith(f"{path}:3: unreadable CSV row (field larger than")


def test_an_unparseable_csv_header_is_a_one_line_error_naming_the_file(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text("x" * (csv.field_size_limit() + 1) + "\nnext\n")
    with pytest.raises(Img2PromptError, match="unreadable CSV header") as err:
        list(read_source("csv", str(path), ReadOptions(), BadRows()))
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def corrupt_row_group(path: Path, group: int) -> None:
    """Overwrite the pages of one row group's first column with garbage: its page header cannot be parsed."""
    chunk = pq.ParquetFile(path).metadata.row_group(group).column(0)
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    data = bytearray(path.read_bytes())
    data[start : start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    path.write_bytes(bytes(data))


def test_an_unreadable_parquet_row_group_is_counted_and_the_groups_after_it_are_read(tmp_path):
    path = tmp_path / "metadata.parquet"
    pq.write_table(pa.table({"prompt": [f"prompt {i}" for i in range(9)]}), path, row_group_size=3)
    corrupt_row_group(path, 1)
    bad = BadRows()
    texts = list(read_source("diffusiondb", str(path), ReadOptions(), bad))
    assert texts == ["prompt 0", "prompt 1", "prompt 2", "prompt 6", "prompt 7", "prompt 8"]
    assert bad.total == 1
    assert bad.examples[0].startswith(f"{path}: row group 1: unreadable row group (")
    assert bad.examples[0].endswith("; rows 4-6 skipped") and "\n" not in bad.examples[0]


def test_bad_rows_file_holds_every_entry_but_memory_only_the_first_few(tmp_path):
    path = tmp_path / "out" / "bad_rows.tsv"
    with bad_rows_file(path) as bad:
        for line in range(1, 31):
            bad.add(Path("a.txt"), line, "broken\tin two\nlines")
        bad.add(Path("b.parquet"), 2, "unreadable row group", unit="row group")
        assert not path.exists()  # written beside the target, renamed when the block ends
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert tuple(rows[0]) == BAD_ROWS_COLUMNS
    assert len(rows) == 1 + 31
    assert rows[1] == ["a.txt", "line", "1", "broken in two lines"]
    assert rows[-1] == ["b.parquet", "row group", "2", "unreadable row group"]
    assert len(bad.examples) == bad.keep == 20 and bad.examples[0] == "a.txt:1: broken in two lines"
    assert bad.per_file == {"a.txt": 30, "b.parquet": 1} and bad.total == 31


def test_coyo_keeps_only_captions_above_the_similarity_cut_from_the_parts_own_column(tmp_path):
    from tiny_corpora import coyo_part

    texts = [f"caption number {i} of a part" for i in range(6)]
    frame = coyo_part(texts, [0.31, 0.3, 0.29, 0.5, 0.1, 0.45])
    frame.loc[5, "clip_similarity_vitb32"] = None  # no score: not above the cut
    path = tmp_path / "part-00000.parquet"
    frame.to_parquet(path)
    bad = BadRows()
    kept = list(read_source("coyo", str(path), ReadOptions(min_similarity=0.3), bad))
    assert kept == [texts[0], texts[3]] and bad.total == 0  # above 0.3, strictly
    assert len(list(read_source("coyo", str(path), ReadOptions(), bad))) == 6  # no cut: every row
    with pytest.raises(Img2PromptError, match=r"part-00000.parquet: no column 'clip_similarity_vitl'"):
        list(read_source("coyo", str(path), ReadOptions(min_similarity=0.3, similarity_column="clip_similarity_vitl"),
                         bad))


def test_a_missing_optional_source_is_left_out_with_a_warning_and_a_required_one_stops(tmp_path, capsys):
    from img2prompt.curate.config import CurateConfig
    from img2prompt.curate.run import present_sources

    (tmp_path / "a.txt").write_text("a red fox in the snow\n", encoding="utf-8")
    sources = [{"name": "a", "type": "text", "path": str(tmp_path / "a.txt")},
               {"name": "llm", "type": "text", "path": str(tmp_path / "llm/*.txt"), "optional": True}]
    config = present_sources(CurateConfig(out=tmp_path / "out", sources=sources))
    assert [s.name for s in config.sources] == ["a"]
    assert "warning: optional source 'llm' left out: " in capsys.readouterr().err
    sources[1]["optional"] = False
    with pytest.raises(Img2PromptError, match=r"llm/\*.txt: source file not found"):
        present_sources(CurateConfig(out=tmp_path / "out", sources=sources))
