"""``sonotok train ...``: the rest of the command line goes to Hydra unchanged (same as ``python train.py``).

Under ``trainer=ddp trainer.devices=N`` Lightning starts the other ranks by running this process's command
line again (``sys.argv``: the ``sonotok`` script, or ``python -m sonotok.cli``, plus the arguments). Hydra
must parse the overrides without the ``train`` word, and the worker ranks must be started with it, so
``sys.argv`` holds ``[program, *overrides]`` while Hydra parses it and ``[program, "train", *overrides]``
while the training runs.
"""

from __future__ import annotations

import sys
from typing import List


def add_parser(subparsers) -> None:
    # listed for --help only: `sonotok train` is dispatched before argparse (see sonotok.cli.main)
    subparsers.add_parser("train", help="train a codec from the Hydra config (arguments are Hydra overrides)",
                          add_help=False)


def run_train(argv: List[str]) -> int:
    import hydra

    from sonotok.training.train import CONF_DIR, run_training

    program = sys.argv[0]
    relaunch = [program, "train", *argv]

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
    def _train(cfg) -> None:
        sys.argv = relaunch  # what Lightning's DDP launcher runs again for the worker ranks
        run_training(cfg)

    saved = sys.argv
    sys.argv = [program, *argv]
    try:
        _train()
    finally:
        sys.argv = saved
    return 0
