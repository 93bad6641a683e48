"""``sonotok export``: write the TorchScript (and torch.export) artifacts of a trained codec.

Example::

    sonotok export --model runs/tiny/model --out artifacts/tiny
    python -c "import torch; enc = torch.jit.load('artifacts/tiny/encoder_stream.pt')"
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``export`` subcommand."""
    p = subparsers.add_parser(
        "export",
        help="export a codec to TorchScript (streaming encoder/decoder + offline codec) and torch.export",
        description="Write encoder_stream.pt, decoder_stream.pt (state in, state out), codec.pt "
        "(offline encode/decode), torch.export programs (*.pt2) and export.json. The artifacts load "
        "with plain torch (torch.jit.load / torch.export.load), on CPU or CUDA. See docs/export.md.",
    )
    p.add_argument("--model", required=True, help="model directory, shipped model name or .ckpt")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--no-torch-export", action="store_true", help="skip the torch.export programs (*.pt2)")
    p.add_argument("--no-check", action="store_true", help="skip reloading the artifacts and comparing with eager")
    p.add_argument("--no-measure", action="store_true",
                   help="skip timing the streaming artifact on this machine (1 thread: real-time factor and "
                   "concurrent real-time streams at batch 64, about two seconds; cost.measured in export.json)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``sonotok export``; returns the exit code."""
    import sonotok
    from sonotok.errors import SonotokError
    from sonotok.export.torch_export import export_programs
    from sonotok.export.torchscript import export_torchscript
    from sonotok.export.wrappers import check_exportable

    try:
        codec = sonotok.load(args.model, map_location="cpu")
        if getattr(codec, "streamable", True) is False:  # self-contained but not causal (DAC): offline only
            return _export_offline(codec, args)
        check_exportable(codec)  # before anything is written
    except SonotokError as e:
        print(f"error: {args.model}: {e}", file=sys.stderr)
        return 1
    meta = export_torchscript(codec, args.out, check=not args.no_check, measure=not args.no_measure)
    no_programs = getattr(codec, "torch_export", True) is False  # e.g. an imported EnCodec (reflected start)
    if no_programs and not args.no_torch_export:
        print(f"note: {getattr(codec, 'name', 'this model')} has no torch.export programs (its stream start is "
              "data-dependent); the TorchScript artifact streams it", file=sys.stderr)
    if not args.no_torch_export and not no_programs:
        meta = export_programs(codec, args.out, check=not args.no_check)
    for key in ("torchscript_check", "torch_export_check"):
        chk = meta.get(key)
        if chk and not chk["codes_equal"]:
            print(f"error: {key}: exported codes differ from eager: {chk}", file=sys.stderr)
            return 1
    summary = {k: meta[k] for k in ("model_id", "sample_rate", "hop_length", "frame_rate", "num_codebooks",
                                    "codebook_size", "latency_ms")}
    print(json.dumps(summary))
    measured = meta["cost"].get("measured")
    if measured:
        print(format_measured(measured))
    print(f"wrote {args.out}/ (encoder_stream.pt, decoder_stream.pt, codec.pt"
          + ("" if args.no_torch_export or no_programs else ", *.pt2") + ", export.json)")
    return 0


def format_measured(m: dict) -> str:
    """One line for a ``cost.measured`` entry (:func:`sonotok.export.runtime.measure_streaming_speed`)."""
    on = m["measured_on"]
    return (f"streaming artifact measured on this machine ({on['cpu']}, {m['threads']} thread): real-time factor "
            f"{m['rtf']:.3f} ({m['x_realtime']:.1f}x real time, {m['frame_compute_ms']['mean_ms']:.2f} ms per "
            f"{1000.0 * m['audio_s'] / m['frames']:.0f} ms frame); {m['concurrent_realtime_streams']:.0f} concurrent "
            f"real-time streams at batch {m['batch']}"
            + (f" (load average {on['load_average_1min']:.2f})" if on.get("load_average_1min") is not None else ""))


def _export_offline(codec, args: argparse.Namespace) -> int:
    """A model that cannot stream (``streamable = False``, e.g. an imported DAC): ``codec.pt`` only."""
    from sonotok.export.offline import export_offline_torchscript

    meta = export_offline_torchscript(codec, args.out, check=not args.no_check)
    chk = meta.get("torchscript_check")
    if chk and not chk["codes_equal"]:
        print(f"error: torchscript_check: exported codes differ from eager: {chk}", file=sys.stderr)
        return 1
    print(json.dumps({k: meta[k] for k in ("model_id", "sample_rate", "hop_length", "frame_rate", "num_codebooks",
                                           "codebook_size", "streaming")}))
    print(f"wrote {args.out}/ (codec.pt, export.json): {getattr(codec, 'name', 'this model')} is not causal, so "
          "there is no streaming encoder/decoder and no torch.export program")
    return 0
