"""``ko-finetune``: the command-line front of ko-hf (a Typer app; no training logic of its own).

Layout note: the source lives in the repository's ``cli/`` folder, but it is installed as the import package
``ko_hf_cli`` (``[tool.setuptools.package-dir] ko_hf_cli = "cli"`` in pyproject.toml). A top-level package named
``cli`` would land in site-packages as ``cli`` and clash with any other distribution that made the same choice
(several do), and ``import cli`` would silently pick whichever was installed last. ``ko_hf_cli`` is unique to this
project, works the same in an editable install (``pip install -e .``) and in a wheel, and keeps the folder name the
project's layout asks for. The console script is ``ko-finetune = "ko_hf_cli.main:main"``; ``python -m ko_hf_cli``
runs the same thing (handy under ``torchrun -m``).

Importing this package (or ``ko_hf_cli.main``) must not import torch or transformers, so that ``--help`` is
instant: the commands import them in their bodies.
"""
