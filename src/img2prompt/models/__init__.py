"""Image-to-embedding models: a registry of backbones, the regression head and the ``Regressor``."""
