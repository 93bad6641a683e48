"""``sonotok train ...``: the rest of the command line goes to Hydra unchanged (same as ``python train.py``)."""

from __future__ import annotations

import sys
from typing import List


def add_parser(subparsers) -> None:
    # listed for --help only: `sonotok train` is dispatched before argparse (see sonotok.cli.main)
    subparsers.add_parser("train", help="train a codec from the Hydra config (arguments are Hydra overrides)",
                          add_help=False)


def run_train(argv: List[str]) -> int:
    from sonotok.training.train import main as hydra_main

    sys.argv = ["sonotok train", *argv]
    hydra_main()
    return 0
