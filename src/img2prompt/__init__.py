"""img2prompt: recover the prompt behind an image made by a text-to-image model."""

__version__ = "0.1.0"
