"""Image-to-embedding models. ``load.load_model(spec)`` builds any kind from a string: a trained ``Regressor``
checkpoint (``backbones`` registry + ``heads``), an ensemble (``ensemble``) or a baseline (``baselines``); each is
an ``ImageEmbedder`` (``embedder``)."""
