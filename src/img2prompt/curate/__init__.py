"""Prompt curation: read every corpus, clean it by rules, deduplicate by meaning, tier and split it.

``sources`` (one streaming reader per corpus), ``rules`` (filters and normalisers), ``dedup`` (faiss),
``run`` (the stage: ``curate(config) -> prompts.parquet``) and ``report`` (the HTML page).
"""
