"""``sonotok stream``: real-time streaming encode + decode of a file or of raw PCM from stdin.

Audio is fed in chunks of ``--chunk-ms`` through the streaming encoder and decoder (eager ``Codec`` with
``--model``, or the TorchScript artifact with ``--artifact``) by :func:`sonotok.export.runtime.stream_audio`;
the reconstruction and the codes are written, and the per-chunk compute time (mean, p95, max),
the real-time factor and the algorithmic latency are reported. The reconstruction is the decoded signal
(``Codec.decode`` of the codes, cropped to the input length), time-aligned with the input, on stdout as in a
file: the decoder's pre-roll is never emitted and its last ``decoder_delay`` samples come from its flush.

Examples::

    sonotok stream --model runs/tiny/model speech.wav --out recon.wav --chunk-ms 20
    sonotok stream --artifact artifacts/tiny speech.wav --out recon.wav --chunk-ms 20 --codes-out codes.npy
    sox speech.wav -t raw -r 16000 -e signed -b 16 -c 1 - | \\
        sonotok stream --artifact artifacts/tiny - --out - --chunk-ms 20 > recon.s16le

Algorithmic latency (worst case over samples) with chunks of ``c`` samples and frames of ``h``:
``h + decoder_delay + c - gcd(c, h)`` samples: a frame's code is emitted with the chunk holding
its last sample (zero look-ahead), and chunks that do not line up with frames wait for the next one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``stream`` subcommand."""
    p = subparsers.add_parser(
        "stream",
        help="stream audio through the codec in real-time sized chunks; report compute time and latency",
        description="Feed INPUT (an audio file, or '-' for raw PCM on stdin) in chunks of --chunk-ms "
        "through the streaming encoder and decoder; write the reconstruction and the codes; report "
        "per-chunk compute (mean/p95/max), real-time factor and algorithmic latency.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="model directory, shipped model name or .ckpt (eager streaming)")
    src.add_argument("--artifact", help="directory written by `sonotok export` (TorchScript streaming)")
    p.add_argument("input", help="audio file, or '-' for raw PCM on stdin (see --stdin-*)")
    p.add_argument("--out", required=True, help="reconstruction: audio file, or '-' for raw s16le PCM on stdout")
    p.add_argument("--chunk-ms", type=float, default=20.0, help="chunk duration in ms (default 20)")
    p.add_argument("--codes-out", default=None, help="write codes [K, F] int64 here (.npy; default OUT.codes.npy)")
    p.add_argument("--stdin-format", default="s16le", choices=["s16le", "f32le"], help="raw PCM format on stdin")
    p.add_argument("--stdin-rate", type=int, default=16000, help="sample rate of stdin PCM (must equal the model's)")
    p.add_argument("--stdin-channels", type=int, default=1, help="channels of stdin PCM (downmixed)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op CPU threads (default 1: per-frame ops are too small to split; bench/streaming.py)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-optimize", action="store_true",
                   help="run the artifact as saved (default on CPU: torch.jit.freeze + optimize_for_inference)")
    p.add_argument("--realtime", action="store_true", help="pace chunks at wall-clock speed (as a live input would)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``sonotok stream``; returns the exit code."""
    import numpy as np
    import torch

    from sonotok.errors import SonotokError
    from sonotok.export.runtime import StreamRunner, file_chunks, pcm_chunks, stream_audio, to_pcm16

    torch.set_num_threads(max(1, args.threads))
    if args.chunk_ms <= 0:
        print("error: --chunk-ms must be > 0", file=sys.stderr)
        return 2
    try:
        runner = StreamRunner(args.model, args.artifact, args.device, optimize=not args.no_optimize)
    except (SonotokError, FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    sr = runner.sample_rate
    chunk = max(1, round(args.chunk_ms * sr / 1000))
    if args.input == "-":
        if args.stdin_rate != sr:
            print(f"error: --stdin-rate {args.stdin_rate} differs from the model's {sr} Hz; resample upstream "
                  f"(e.g. sox ... -r {sr})", file=sys.stderr)
            return 2
        chunks = pcm_chunks(sys.stdin.buffer, chunk, args.stdin_format, args.stdin_channels, runner.channels)
    else:
        try:
            chunks = iter(list(file_chunks(args.input, sr, runner.channels, chunk)))  # decode the file before timing
        except SonotokError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    to_stdout = args.out == "-"
    log = sys.stderr if to_stdout else sys.stdout

    def emit(audio):
        sys.stdout.buffer.write(to_pcm16(audio))
        sys.stdout.buffer.flush()

    try:
        result = stream_audio(runner, chunks, chunk, realtime=args.realtime, on_audio=emit if to_stdout else None)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    codes = result.codes
    if not to_stdout:
        from sonotok.data.audio import save_audio

        save_audio(args.out, result.audio, sr)
    codes_out = args.codes_out or (None if to_stdout else str(Path(args.out).with_suffix("")) + ".codes.npy")
    if codes_out:
        np.save(codes_out, codes.numpy().astype(np.int64))
    report = {**result.report(), "out": args.out, "codes_out": codes_out}
    stats = report["compute_ms"]
    if args.json:
        print(json.dumps(report), file=log)
    else:
        print(
            f"{report['chunks']} chunks of {report['chunk_ms']:.1f} ms ({report['backend']}), "
            f"{report['audio_s']:.2f} s audio, {codes.shape[0]}x{codes.shape[1]} codes\n"
            f"compute per chunk: mean {stats['mean_ms']:.2f} ms, p95 {stats['p95_ms']:.2f} ms, "
            f"max {stats['max_ms']:.2f} ms\n"
            f"real-time factor {report['rtf']:.3f} ({report['x_realtime']:.1f}x real time)\n"
            f"algorithmic latency {report['algorithmic_latency_ms']:.1f} ms "
            f"(frame {report['frame_ms']:.1f} ms + chunking; model {report['model_latency_ms']:.1f} ms); "
            f"+ p95 compute = {report['latency_plus_p95_compute_ms']:.1f} ms",
            file=log,
        )
    return 0
