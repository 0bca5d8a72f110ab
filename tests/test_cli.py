"""The command line people meet first: the version, verbs in pipeline order, examples that work, did-you-mean."""

from __future__ import annotations

import re
import shlex

import pytest
from typer.testing import CliRunner

from img2prompt import __version__
from img2prompt.cli import EXAMPLES, ORDER, app
from img2prompt.errors import Img2PromptError
from img2prompt.recipe.plan import plan
from img2prompt.sections import load_section
from img2prompt.train.config import TrainConfig
from test_config import MODELS

runner = CliRunner()
VERBS = [name for name in ORDER if name in EXAMPLES]  # the verbs registered here, in pipeline order


def help_text(*args: str) -> str:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"img2prompt {__version__}"


def test_help_lists_the_verbs_in_pipeline_order() -> None:
    text = help_text()
    listed = [word for line in text.splitlines() for word in re.findall(r"^│ ([a-z-]+) ", line) if word in ORDER]
    assert listed == VERBS
    assert VERBS[:10] == ["download", "write-prompts", "embed", "curate", "generate", "train", "predict", "ensemble",
                          "evaluate", "decode"]


def set_examples(verb: str) -> list[tuple[str | None, str]]:
    """(config, KEY=VALUE) of every --set in a verb's help: the shipped config its example names after the verb
    (``configs/...``), else none."""
    text = re.sub(r"\\\s*\n", " ", help_text(verb))  # join the continued lines
    found = []
    for line in text.splitlines():
        if not line.lstrip().startswith(("img2prompt ", "torchrun ", "accelerate ")) or "--set" not in line:
            continue  # not an example with an override
        tokens = shlex.split(line, comments=True)
        after = tokens[tokens.index(verb) + 1:]
        config = next((t for t in after if t.startswith("configs/") and t.endswith(".yaml")), None)
        found += [(config, after[i + 1]) for i, token in enumerate(after) if token == "--set"]
    return found


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_shows_its_examples_whole(verb: str) -> None:
    text = help_text(verb)
    assert "Examples" in text
    for line in EXAMPLES[verb]:
        assert line in text, line  # not wrapped, nothing taken for markup


@pytest.mark.parametrize("verb", [v for v in VERBS if any("--set" in line for line in EXAMPLES[v])])
def test_every_set_example_is_a_valid_config_key(verb: str) -> None:
    examples = set_examples(verb)
    assert examples
    for config, override in examples:  # an unknown key or a bad value raises
        if verb in ("recipe", "quickstart"):  # each step's config gets the overrides of its section
            plan(config or "configs/recipe/quickstart.yaml", [override])
        else:
            section = override.split(".", 1)[0]
            load_section(config, section, MODELS[section], [override])


def test_the_old_example_key_is_rejected() -> None:
    with pytest.raises(Img2PromptError, match=r"train\.lr: Extra inputs are not permitted"):
        load_section(None, "train", TrainConfig, ["train.lr=1e-4"])


def test_a_mistyped_verb_or_option_gets_a_suggestion() -> None:
    verb = runner.invoke(app, ["evalute"])
    assert verb.exit_code == 2 and "Did you mean 'evaluate'?" in verb.output
    option = runner.invoke(app, ["evaluate", "p.parquet", "--truht", "t.csv", "--out", "r"])
    assert option.exit_code == 2 and "No such option: --truht" in option.output and "--truth" in option.output


def test_help_shows_what_to_type_not_python_types() -> None:
    for verb in ["", *VERBS]:
        text = help_text(*([verb] if verb else []))
        assert not re.search(r"<(bool|str|path|int|float|list\[)", text), verb
    interrogate = help_text("interrogate")
    assert re.search(r"--json +One JSON", interrogate)  # a flag takes no value
    assert re.search(r"--mode +\[fast\|best\]", interrogate)  # a choice shows its choices
    assert re.search(r"--bank +PATH", interrogate) and re.search(r"IMAGES +TEXT", interrogate)


def test_the_mode_choices_are_the_decoders_modes() -> None:
    from typing import get_args

    from img2prompt.cli.app import Mode
    from img2prompt.decode import default_modes

    assert list(get_args(Mode)) == list(default_modes())
    wrong = runner.invoke(app, ["decode", "bank.parquet", "--text", "x", "--mode", "slow"])
    assert "'slow' is not one of 'fast', 'best'" in str(wrong.exception)  # one line, before the bank is read
