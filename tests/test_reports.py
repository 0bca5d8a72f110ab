"""Both HTML reports stand alone (every src/href a data URI or an in-page anchor) and lead with what matters."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from img2prompt.curate.report import ReportData, write_report
from img2prompt.evaluate import BASELINE
from img2prompt.evaluate.run import run_evaluate
from img2prompt.predictions import write_predictions
from img2prompt.prompt_table import write_table
from img2prompt.provenance import SCORE_WARNING
from img2prompt.space import normalise

MODELS = ["/runs/train/vit_l_14_336", "mean:/runs/curate/prompts.parquet", "ensemble.yaml"]


class Page(HTMLParser):
    """Every src/href of a page, and the text of its first table."""

    def __init__(self, html: str):
        super().__init__()
        self.links: list[str] = []
        self.tables = 0
        self.first_table = ""
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [value or "" for name, value in attrs if name in ("src", "href")]
        self.tables += tag == "table"

    def handle_data(self, data: str) -> None:
        if self.tables == 1:
            self.first_table += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.tables == 1:
            self.tables = 2  # past the first table


def assert_self_contained(html: str) -> Page:
    page = Page(html)
    outside = [link for link in page.links if not link.startswith(("data:", "#"))]
    assert not outside, outside
    assert "<link" not in html and "<script" not in html and "url(" not in html  # no external CSS or JS
    return page


def test_the_evaluation_report_is_self_contained_and_leads_with_the_leaderboard(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    truth_vectors = normalise(rng.normal(size=(6, 384)))
    ids = [f"p{k}" for k in range(6)]
    frame = pd.DataFrame({"prompt_id": ids, "prompt": [f"prompt number {k} " + "word " * (4 * k) for k in range(6)],
                          "source": ["coco", "diffusiondb"] * 3, "tier": "hq", "cluster": range(6), "split": "test"})
    truth = write_table(frame, truth_vectors, tmp_path / "truth.parquet")
    (tmp_path / "images").mkdir()
    for k, image_id in enumerate(ids):
        Image.new("RGB", (64, 48), (40 * k, 100, 200)).save(tmp_path / "images" / f"{image_id}.png")
    files = [write_predictions(ids, model, normalise(truth_vectors + rng.normal(scale=0.05 * (i + 1), size=(6, 384))),
                               tmp_path / f"m{i}.parquet") for i, model in enumerate(MODELS)]
    run_evaluate(files, truth, tmp_path / "report", images=[tmp_path / "images"], grid=4)
    page = assert_self_contained((tmp_path / "report" / "report.html").read_text())
    assert sum(link.startswith("data:image/jpeg;base64,") for link in page.links) == 3 * 4  # 2 best, 2 worst each
    assert sum(link.startswith("data:image/png;base64,") for link in page.links) == 2  # both plots
    board = " ".join(page.first_table.split())
    for name in [*MODELS, BASELINE, "gain over the constant baseline", "coco", "diffusiondb"]:
        assert name in board, name
    assert board.index("1-5") < board.index("6-10") < board.index("11-20") < board.index("21-40")  # by number
    assert "Not real-image quality" not in (tmp_path / "report" / "report.html").read_text()


def test_scores_on_synthetic_scenes_say_they_are_not_real_image_quality(tmp_path: Path) -> None:
    vectors = normalise(np.random.default_rng(1).normal(size=(3, 384)))
    frame = pd.DataFrame({"prompt_id": ["a", "b", "c"], "prompt": ["one cat", "two dogs", "a red car"],
                          "source": "scenes", "tier": "hq", "cluster": range(3), "split": "test"})
    truth = write_table(frame, vectors, tmp_path / "truth.parquet")
    run_evaluate([write_predictions(["a", "b", "c"], "m", vectors, tmp_path / "m.parquet")], truth,
                 tmp_path / "report", grid=2)
    html = " ".join((tmp_path / "report" / "report.html").read_text().split())
    assert f"Not real-image quality:</b> {SCORE_WARNING}." in html


def test_the_curation_report_is_self_contained_and_says_none_for_empty_tables(tmp_path: Path) -> None:
    counts = {"read": 10, "bad_rows": 1, "kept": 8, "hq": 8, "train": 8, "too_short": 1}
    data = ReportData(
        sources=[{"name": "coco", "type": "coco", "tier": "hq", **counts}], rule_columns=["too_short"],
        rule_examples={"too_short": ["a dog"]}, totals={**counts, "moved_to_train": 0, "val": 0, "test": 0},
        timings={"embed": 1.0}, word_counts=np.array([3, 4, 4, 9]), nearest=np.array([0.2, 0.5, 0.75]),
        threshold=0.8, cluster_threshold=0.7, duplicates=[], bad_rows=[],
    )
    html = write_report(data, tmp_path).read_text()
    page = assert_self_contained(html)
    assert sum(link.startswith("data:image/png;base64,") for link in page.links) == 2
    assert "<td class=\"t\">prompts read</td><td>10</td>" in html  # the summary is a table of readable labels
    near = html.split("Removed near duplicates")[1].split("</table>")[0]
    assert '<td class="empty" colspan="3">none</td>' in near
