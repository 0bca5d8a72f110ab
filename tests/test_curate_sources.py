"""Each corpus reader on a small fixture in the corpus's published schema, and on the real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from img2prompt.errors import Img2PromptError
from img2prompt.prompts.sources import BadRows, ReadOptions, read_source

FIXTURES = Path(__file__).parent / "fixtures" / "prompts"


def read(kind: str, name: str, **options) -> tuple[list[str], BadRows]:
    bad = BadRows()
    texts = list(read_source(kind, str(FIXTURES / name), ReadOptions(**options), bad))
    return texts, bad


def test_diffusiondb_metadata_parquet_skips_null_prompts():
    texts, bad = read("diffusiondb", "diffusiondb_metadata.parquet")
    assert texts[0] == "a castle on a hill at sunset, (highly detailed:1.3), by greg rutkowski"
    assert len(texts) == 4
    assert bad.examples == [f"{FIXTURES / 'diffusiondb_metadata.parquet'}:3: prompt is NoneType, not text"]


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
    assert bad.examples == [f"{FIXTURES / 'coco_captions.json'}:4: item has no text field 'caption'"]


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
