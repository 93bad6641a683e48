"""``sonotok import``: turn a released EnCodec, DAC or Mimi checkpoint into a sonotok model directory.

Example::

    sonotok import encodec_24khz ~/.cache/torch/hub/checkpoints/encodec_24khz-d7cc33bc.th --out models/encodec --bandwidth 6
    sonotok import dac_44khz weights_44khz_8kbps_0.0.1.pth --out models/dac44
    sonotok import mimi tokenizer-e351c8d8-checkpoint125.safetensors --out models/mimi --num-codebooks 8
    sonotok tokenize --model models/encodec audio/ --out codes/

Nothing is downloaded: the checkpoint is the user's file, read without running pickled code
(``torch.load(weights_only=True)`` or safetensors). The directory is written atomically; a checkpoint
that does not fit (another model's, truncated, missing or extra keys) fails with the file and the keys
named, and leaves ``--out`` as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run", "import_checkpoint", "FAMILIES"]

# encodec_48khz is accepted only to refuse it with the reason (its codes do not fit sonotok's; docs/imports.md)
FAMILIES = ("encodec_24khz", "encodec_48khz", "dac_16khz", "dac_24khz", "dac_44khz", "mimi")


def import_checkpoint(family: str, path: str | os.PathLike, out: str | os.PathLike, **options: Any) -> Path:
    """Import ``path`` as ``family`` and write the model directory ``out`` (atomically, replacing it).

    Args:
        family: one of :data:`FAMILIES`.
        path: the released checkpoint.
        out: the model directory to write.
        **options: ``bandwidth`` (EnCodec, kbps) or ``num_codebooks`` (DAC, Mimi).

    Raises:
        ModelLoadError: the checkpoint does not fit the family (file and keys named); nothing is written.
    """
    from sonotok.errors import ModelLoadError
    from sonotok.model_io import save_model
    from sonotok.models.imported import IMPORTERS

    if family not in IMPORTERS:
        raise ModelLoadError(f"{path}: unknown model family {family!r} (known: {', '.join(sorted(IMPORTERS))})")
    result = IMPORTERS[family](path, **{k: v for k, v in options.items() if v is not None})
    return save_model(result.model, out, result.config, extra=result.meta)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``import`` subcommand."""
    p = subparsers.add_parser(
        "import",
        help="import a released EnCodec / DAC / Mimi checkpoint as a sonotok model directory",
        description="Read a released checkpoint (EnCodec .th, DAC .pth, Mimi .safetensors) into sonotok's "
        "modules and write config.yaml + model.safetensors + meta.json, usable by sonotok.load, tokenize, "
        "decode, eval, export, stream and train.py init_from=DIR. Nothing is downloaded.",
    )
    p.add_argument("family", choices=FAMILIES,
                   help="which released model the file is (encodec_48khz is refused with the reason: its "
                   "segment-wise codes with per-segment gains do not fit sonotok's codes)")
    p.add_argument("path", help="the checkpoint file")
    p.add_argument("--out", required=True, help="model directory to write (replaced atomically)")
    p.add_argument("--bandwidth", type=float, default=None,
                   help="EnCodec: kbps to keep (1.5, 3, 6, 12 or 24; default 6)")
    p.add_argument("--num-codebooks", type=int, default=None,
                   help="DAC / Mimi: codebooks to keep (DAC default all; Mimi 8..32, default 8)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``sonotok import``; returns the exit code."""
    from sonotok.errors import SonotokError

    if args.bandwidth is not None and not args.family.startswith("encodec"):
        print(f"error: --bandwidth applies to EnCodec; use --num-codebooks for {args.family}", file=sys.stderr)
        return 2
    if args.num_codebooks is not None and args.family.startswith("encodec"):
        print("error: --num-codebooks does not apply to EnCodec; use --bandwidth", file=sys.stderr)
        return 2
    try:
        out = import_checkpoint(args.family, args.path, args.out, bandwidth=args.bandwidth,
                                num_codebooks=args.num_codebooks)
    except SonotokError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    meta = json.loads((out / "meta.json").read_text())
    keys = ("model_id", "sample_rate", "hop_length", "frame_rate", "num_codebooks", "codebook_size", "bitrate")
    print(json.dumps({k: meta[k] for k in keys if k in meta}))
    print(f"wrote {out}/ (config.yaml, model.safetensors, meta.json)")
    return 0
