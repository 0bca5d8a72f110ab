"""Training-image generation: prompt table in, WebDataset shards out (``run.generate``).

Two backends draw the images: ``diffusion`` (Stable Diffusion through diffusers, the real recipe) and
``scenes`` (an offline renderer of the scenes grammar, for the quickstart, the tests and benchmarks).
"""
