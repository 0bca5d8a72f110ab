"""``python -m img2prompt``: the CLI, for launchers that take a module (``accelerate launch -m img2prompt``)."""

from img2prompt.cli import main

main()
