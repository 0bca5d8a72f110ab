"""Evaluation: score predictions against true prompts (``run``) and show the scores in one HTML page
(``report``). The names both of them give to rows of the scores live here."""

BASELINE = "constant baseline"  # the model name of the constant baseline's rows
CSV_SOURCE = "csv"  # a Kaggle prompts CSV names no source: its rows are labelled this, not with the file's name
