"""``python -m ray_mlops``: the same CLI as the ``ray-mlops`` command."""

from ray_mlops.cli import main

main()
