"""Evaluation: score predictions against true prompts (``run``) and show the scores in one HTML page
(``report``). The names both of them give to rows of the scores, and which rows are baselines, live here."""

from __future__ import annotations

from img2prompt.models.specs import parse

BASELINE = "constant baseline"  # the model name of the constant baseline's rows
CSV_SOURCE = "csv"  # a Kaggle prompts CSV names no source: its rows are labelled this, not with the file's name

# What each baseline predicts, by its kind: the constant baseline the evaluation adds, and the model spec kinds of
# ``models.baselines`` (``mean:TABLE``, ``nearest:SHARDS``, what ``recipe.baselines`` predicts). A baseline is a
# reference a model must beat, learnt from no image, so the report keeps it apart from the models.
BASELINE_KINDS = {
    "constant": "one vector for every image: the normalised mean of these images' true embeddings",
    "mean": "one vector for every image: the normalised mean of the training prompts' embeddings",
    "nearest": "the prompt of the most similar training image, by pretrained image features",
}


def baseline_kind(model: str) -> str | None:
    """The kind of baseline a scored model is (a key of ``BASELINE_KINDS``), from the spec a prediction names as
    its model (contract 4); None for a model."""
    if model == BASELINE:
        return "constant"
    kind = parse(model).kind
    return kind if kind in BASELINE_KINDS else None
