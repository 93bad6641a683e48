"""The ``sonotok`` command line.

Each subcommand lives in its own module with ``add_parser(subparsers)``; this file only wires them.
``sonotok train ...`` hands the rest of the command line to Hydra unchanged (same as ``python train.py``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import List, Optional

# (module, description) of every subcommand; modules are imported lazily so `--help` stays fast.
SUBCOMMANDS = [
    ("sonotok.cli.train", "train"),
    ("sonotok.cli.corpus", "corpus"),
    ("sonotok.cli.eval", "eval"),
    ("sonotok.cli.demo", "demo"),
    ("sonotok.cli.tokens", "tokenize/decode"),
    ("sonotok.cli.export", "export"),
    ("sonotok.cli.import_", "import"),
    ("sonotok.cli.stream", "stream"),
    ("sonotok.cli.separate", "separate/separation-eval"),
    ("sonotok.cli.prepare", "prepare"),
]

EPILOG = """\
examples:
  sonotok corpus build --out data/corpus          build the offline speech corpus
  sonotok train experiment=tiny trainer.max_time=00:00:10:00
                                                  train a codec from the Hydra config (resumes if re-run)
  sonotok eval --model runs/tiny/model --data data/corpus/test.jsonl
  sonotok tokenize --model default audio/ --out codes/
  sonotok decode --model default codes/*.npy --out wavs/
  sonotok export --model default --out artifacts/
  sonotok import encodec_24khz encodec_24khz-d7cc33bc.th --out models/encodec
                                                  a released EnCodec / DAC / Mimi checkpoint as a model
  sonotok demo                                    corpus + 10-minute CPU training + evaluation

`sonotok train --help` shows the Hydra config groups (encoder, quantizer, decoder, discriminator, loss,
data, trainer, experiment ...) and their options.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sonotok",
        description="sonotok: neural audio codecs and tokenizers - train from config, tokenize audio to "
        "discrete codes and back, stream and export.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from sonotok import __version__

    parser.add_argument("--version", action="version", version=f"sonotok {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module, _ in SUBCOMMANDS:
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":  # Hydra parses the rest itself (overrides, --help, -m ...)
        from sonotok.cli.train import run_train

        return run_train(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
