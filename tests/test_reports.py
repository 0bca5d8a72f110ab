"""Both HTML reports stand alone (every src/href a data URI or an in-page anchor) and lead with what matters; the
evaluation report's contents bar reaches every section, its baselines stand apart from its models, and it reads on
a phone."""

from __future__ import annotations

import json
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from img2prompt.curate.report import ReportData, write_report
from img2prompt.evaluate import BASELINE
from img2prompt.evaluate.run import run_evaluate
from img2prompt.predictions import write_predictions
from img2prompt.prompt_table import write_table
from img2prompt.provenance import SCORE_WARNING
from img2prompt.space import normalise

# Scored best first (more noise, lower cosine), models and baselines interleave: vit, mean, the constant baseline,
# ensemble, nearest, clip. A baseline is known by its spec's kind: the zero-shot clip: model is a model.
MODELS = ["/runs/train/vit_l_14_336", "mean:/runs/curate/prompts.parquet", "ensemble.yaml", "nearest:/runs/generate/hq",
          "clip:ViT-B-32/openai?bank=/runs/curate/prompts.parquet"]


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


class Outline(HTMLParser):
    """Where things sit in a page: every id, the sections (h2, section and details with an id), the contents bar's
    links, and the text, bold text and h3 headings inside each tbody, section and details (by class or id)."""

    CONTAINERS = ("nav", "tbody", "section", "details")

    def __init__(self, html: str):
        super().__init__()
        self.ids: list[str] = []
        self.sections: list[str] = []
        self.nav: list[str] = []
        self.text: dict[str, str] = defaultdict(str)
        self.bold: dict[str, list[str]] = defaultdict(list)
        self.headings: dict[str, list[str]] = defaultdict(list)
        self.open_details: list[str] = []
        self.stack: list[str] = []  # the open containers, as "tag.class" or "tag#id"
        self.inside: str | None = None  # "b" or "h3" while in one
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if named.get("id"):
            self.ids.append(named["id"])
            if tag in ("h2", "section", "details"):
                self.sections.append(named["id"])
        if tag == "a" and "nav" in self.stack:
            self.nav.append((named.get("href") or "").removeprefix("#"))
        if tag in self.CONTAINERS:
            self.stack.append(tag if tag == "nav" else f"{tag}.{named['class']}" if named.get("class") else
                              f"{tag}#{named.get('id')}")
        if tag == "details" and "open" in named:
            self.open_details.append(named["id"] or "")
        if tag in ("b", "h3"):
            self.inside = tag
            for where in self.stack:
                (self.bold if tag == "b" else self.headings)[where].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.CONTAINERS:
            self.stack.pop()
        if tag == self.inside:
            self.inside = None

    def handle_data(self, data: str) -> None:
        for where in self.stack:
            self.text[where] += data
            if self.inside:
                found = self.bold if self.inside == "b" else self.headings
                found[where][-1] += data


def assert_self_contained(html: str) -> Page:
    page = Page(html)
    outside = [link for link in page.links if not link.startswith(("data:", "#"))]
    assert not outside, outside
    assert "<link" not in html and "<script" not in html and "url(" not in html  # no external CSS or JS
    return page


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report folder of MODELS scored on six images of two sources, two best and two worst shown each."""
    tmp_path = tmp_path_factory.mktemp("evaluation")
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
    return tmp_path / "report"


def test_the_evaluation_report_is_self_contained_and_leads_with_the_leaderboard(evaluation: Path) -> None:
    html = (evaluation / "report.html").read_text()
    page = assert_self_contained(html)
    assert sum(link.startswith("data:image/jpeg;base64,") for link in page.links) == 5 * 4  # 2 best, 2 worst each
    assert sum(link.startswith("data:image/png;base64,") for link in page.links) == 2  # both plots
    board = " ".join(page.first_table.split())
    for name in [*MODELS, BASELINE, "gain over the constant baseline", "coco", "diffusiondb"]:
        assert name in board, name
    assert board.index("1-5") < board.index("6-10") < board.index("11-20") < board.index("21-40")  # by number
    assert "Not real-image quality" not in html and "#warning" not in html


def test_the_contents_bar_lists_every_section_and_every_link_lands(evaluation: Path) -> None:
    html = (evaluation / "report.html").read_text()
    outline = Outline(html)
    assert outline.nav == ["leaderboard", "distributions", "models", "model-1", "model-2", "model-3", "baselines",
                           "baseline-1", "baseline-2"]
    assert html.index("<nav") < html.index('id="leaderboard"')  # the bar comes first (sticky: it stays on top)
    assert len(outline.ids) == len(set(outline.ids))
    anchors = [link[1:] for link in Page(html).links if link.startswith("#")]
    assert set(anchors) == set(outline.nav) and set(anchors) <= set(outline.ids)  # every href="#x" has an id="x"
    assert outline.sections == outline.nav  # every section is in the bar, in the page's order


def test_models_and_baselines_are_counted_and_shown_apart(evaluation: Path) -> None:
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert {model: stats["baseline"] for model, stats in metrics.items()} == {
        MODELS[0]: None, MODELS[1]: "mean", MODELS[2]: None, MODELS[3]: "nearest", MODELS[4]: None}
    html = (evaluation / "report.html").read_text()
    outline = Outline(html)
    assert "6 images; 3 models, 3 baselines;" in " ".join(html.split())
    models = ["vit_l_14_336", "ensemble.yaml", "clip:ViT-B-32/openai?bank=prompts.parquet"]
    baselines = ["mean:prompts.parquet", BASELINE, "nearest:hq"]
    assert outline.bold["tbody.models"] == models  # the leaderboard: the models ranked, best first
    assert outline.bold["tbody.baselines"] == baselines  # and below them the baselines, best first
    assert " ".join(outline.text["tbody.baselines"].split()).startswith("Baselines: references a model must beat")
    heading = [" ".join(h.split()).split(":")[0] for h in outline.headings["section#models"]]
    assert heading == ["#1 vit_l_14_336", "#2 ensemble.yaml", "#3 clip"]
    assert [" ".join(h.split()).rsplit(":", 1)[0] for h in outline.headings["section#baselines"]] == [
        "mean:prompts.parquet", "nearest:hq"]  # the constant baseline shows no images: it has no section
    assert outline.open_details == ["model-1", "model-2", "model-3"]  # the baselines' images wait to be opened
    assert "the normalised mean of the training prompts' embeddings" in outline.text["section#baselines"]


def test_scores_on_synthetic_scenes_say_they_are_not_real_image_quality(tmp_path: Path) -> None:
    vectors = normalise(np.random.default_rng(1).normal(size=(3, 384)))
    frame = pd.DataFrame({"prompt_id": ["a", "b", "c"], "prompt": ["one cat", "two dogs", "a red car"],
                          "source": "scenes", "tier": "hq", "cluster": range(3), "split": "test"})
    truth = write_table(frame, vectors, tmp_path / "truth.parquet")
    run_evaluate([write_predictions(["a", "b", "c"], "m", vectors, tmp_path / "m.parquet")], truth,
                 tmp_path / "report", grid=2)
    html = (tmp_path / "report" / "report.html").read_text()
    assert f"Not real-image quality:</b> {SCORE_WARNING}." in " ".join(html.split())
    outline = Outline(html)
    # Above the leaderboard, and first in the contents bar, which stays on screen: no score is read without it.
    assert outline.ids.index("warning") < outline.ids.index("leaderboard")
    assert outline.nav[0] == "warning" and "not real-image quality" in outline.text["nav"]
    assert "1 image" not in html and "3 images; 1 model, 1 baseline;" in " ".join(html.split())


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


def test_the_report_reads_on_a_390_px_phone_under_its_contents_bar(evaluation: Path, browser) -> None:
    """An iPhone-sized viewport: nothing scrolls sideways (the leaderboard scrolls in its own box, its names and mean
    cosines in view), the contents bar is one line, and a jump to a section lands below the bar, which stays on top."""
    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": True})
    page = (evaluation / "report.html").as_uri()
    browser.get(page)
    assert browser.execute_script("return [innerWidth, document.documentElement.scrollWidth]") == [390, 390]
    means = browser.find_elements(By.CSS_SELECTOR, "table.board td.mean")
    assert len(means) == 6 and all(cell.rect["x"] + cell.rect["width"] <= 390 for cell in means)
    assert browser.find_element(By.CSS_SELECTOR, "nav.contents").size["height"] < 50
    browser.get(page + "#model-2")
    nav, section = browser.execute_script(
        "return [document.querySelector('nav.contents'), document.getElementById('model-2')]"
        ".map(e => e.getBoundingClientRect()).map(r => [r.top, r.bottom])")
    assert nav[0] == 0 and section[0] >= nav[1] - 1 and section[0] < 844
