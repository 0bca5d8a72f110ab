"""``img2prompt download``: every corpus the recipe reads, fetched into the paths its curate configs name.

``catalog`` says what each corpus is (its files, their pins, where they go), ``http`` fetches a file over HTTPS
with resumable range requests and checks its pinned size and checksum, ``hub`` fetches Hugging Face datasets at a
pinned revision, ``competition`` the Kaggle competition files through the ``kaggle`` client, ``archives`` unpacks
the members the curate configs read, ``state`` records what was verified, and ``run`` is the stage.
"""
