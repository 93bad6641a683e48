"""``sonotok demo`` (the library side is :func:`sonotok.training.demo.run_demo`): corpus -> CPU training of ``experiment=tiny`` -> tokenize + reconstruct held-out
speakers -> metrics next to the shipped pretrained default.

This is what ``make demo`` runs. Everything goes through the same public pieces a user would call
(``sonotok corpus build``, ``python train.py experiment=tiny``, ``sonotok tokenize``/``decode``,
``sonotok.evaluation.codec``), so the demo is also an end-to-end check of the toolkit.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="build the corpus, train the tiny default on the CPU, tokenize/reconstruct held-out speakers, "
        "print metrics next to the shipped pretrained model",
    )
    p.add_argument("--corpus", default="data/corpus", help="corpus folder (built if missing)")
    p.add_argument("--minutes", type=float, default=15.0, help="training time budget (default 15)")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--experiment", default="tiny", help="training preset (default tiny)")
    p.add_argument("--eval-files", type=int, default=20, help="held-out test files to score (default 20)")
    p.add_argument("--pretrained", default="default", help="shipped model to compare with ('' to skip)")
    p.add_argument("--processes", type=int, default=2,
                   help="data-parallel training processes, one CPU thread each (trainer=cpu_ddp; default 2, "
                   "one per core of a 2-core machine); 1 trains in this process on --threads threads")
    p.add_argument("--threads", type=int, default=2, help="threads for a single training process and for scoring")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for training")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sonotok.training.demo import run_demo

    run_demo(args.corpus, args.minutes, args.out, args.experiment, args.eval_files, args.pretrained,
             args.processes, args.threads, args.overrides)
    return 0
