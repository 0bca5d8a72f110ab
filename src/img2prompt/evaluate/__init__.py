"""Evaluation: score predictions against true prompts (``run``) and show the scores in one HTML page
(``report``)."""
