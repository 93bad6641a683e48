"""``sonotok stream``: real-time streaming encode + decode of a file or of raw PCM from stdin.

Audio is fed in chunks of ``--chunk-ms`` through the streaming encoder and decoder (eager
``Codec.encode_step/decode_step`` with ``--model``, or the TorchScript artifact with ``--artifact``);
the reconstruction and the codes are written, and the per-chunk compute time (mean, p95, max),
the real-time factor and the algorithmic latency are reported.

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
import time
from pathlib import Path
from typing import List

from sonotok.export.runtime import StreamRunner, algorithmic_latency_samples, summarize_times

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


def _read_exact(stream, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        part = stream.read(n - len(buf))
        if not part:
            break
        buf += part
    return buf


def _stdin_chunks(args, chunk: int, channels: int):
    import numpy as np
    import torch

    width = 2 if args.stdin_format == "s16le" else 4
    dtype = np.int16 if args.stdin_format == "s16le" else np.float32
    frame_bytes = width * args.stdin_channels
    stream = sys.stdin.buffer
    while True:
        data = _read_exact(stream, chunk * frame_bytes)
        data = data[: len(data) - len(data) % frame_bytes]
        if not data:
            return
        x = np.frombuffer(data, dtype=dtype).astype(np.float32)
        if dtype == np.int16:
            x = x / 32768.0
        x = torch.from_numpy(x.reshape(-1, args.stdin_channels).T.copy())
        if x.shape[0] != channels:
            x = x.mean(0, keepdim=True).expand(channels, -1)
        yield x[None]


def _file_chunks(path: str, sample_rate: int, channels: int, chunk: int):
    from sonotok.data.audio import load_audio

    wav = load_audio(path, sample_rate=sample_rate, channels="downmix" if channels == 1 else "keep")
    for i in range(0, wav.shape[-1], chunk):
        yield wav[None, :, i : i + chunk]


def run(args: argparse.Namespace) -> int:
    """Run ``sonotok stream``; returns the exit code."""
    import numpy as np
    import torch

    from sonotok.errors import SonotokError

    torch.set_num_threads(max(1, args.threads))
    if args.chunk_ms <= 0:
        print("error: --chunk-ms must be > 0", file=sys.stderr)
        return 2
    try:
        runner = StreamRunner(args.model, args.artifact, args.device, optimize=not args.no_optimize)
    except (SonotokError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    sr, hop = runner.sample_rate, runner.hop
    chunk = max(1, round(args.chunk_ms * sr / 1000))
    if args.input == "-":
        if args.stdin_rate != sr:
            print(f"error: --stdin-rate {args.stdin_rate} differs from the model's {sr} Hz; resample upstream "
                  f"(e.g. sox ... -r {sr})", file=sys.stderr)
            return 2
        chunks = _stdin_chunks(args, chunk, runner.channels)
    else:
        try:
            chunks = _file_chunks(args.input, sr, runner.channels, chunk)
            chunks = iter(list(chunks))  # decode the file before timing
        except SonotokError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    to_stdout = args.out == "-"
    log = sys.stderr if to_stdout else sys.stdout

    def emit(audio):
        if to_stdout:
            pcm = (audio[0].clamp(-1, 1) * 32767).round().short().T.contiguous().cpu().numpy()
            sys.stdout.buffer.write(pcm.tobytes())
            sys.stdout.buffer.flush()

    times: List[float] = []
    codes_all, audio_all = [], []
    total = 0
    # warm-up on silence with a throwaway state (first calls of a scripted module are slow)
    for _ in range(3):
        runner.step(torch.zeros(1, runner.channels, hop))
    runner.reset()
    start = time.perf_counter()
    for x in chunks:
        total += x.shape[-1]
        if args.realtime:
            due = start + total / sr
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        t0 = time.perf_counter()
        codes, audio = runner.step(x)
        if audio.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        codes_all.append(codes.cpu())
        audio_all.append(audio.cpu())
        emit(audio)
    if total == 0:
        print("error: no input audio", file=sys.stderr)
        return 1
    tail = (-total) % hop  # flush the last partial frame with zeros (as offline encode pads)
    if tail:
        codes, audio = runner.step(torch.zeros(1, runner.channels, tail))
        codes_all.append(codes.cpu())
        audio_all.append(audio.cpu())
        emit(audio[..., : audio.shape[-1] - tail])
    codes = torch.cat(codes_all, -1)[0]
    delay = runner.decoder_delay
    if delay > 0:
        # the decoder's output lags the input by `delay` samples: flush it with silent frames so the
        # written file is time-aligned with the input (the extra codes are not part of the output)
        flush = -(-delay // hop) * hop
        _, audio = runner.step(torch.zeros(1, runner.channels, flush))
        audio_all.append(audio.cpu())
        emit(audio[..., : max(0, delay - tail)])
    recon = torch.cat(audio_all, -1)[0, :, delay : delay + total]
    if not to_stdout:
        from sonotok.data.audio import save_audio

        save_audio(args.out, recon, sr)
    codes_out = args.codes_out or (None if to_stdout else str(Path(args.out).with_suffix("")) + ".codes.npy")
    if codes_out:
        np.save(codes_out, codes.numpy().astype(np.int64))
    stats = summarize_times(times)
    audio_s = total / sr
    compute_s = sum(times)
    lat = algorithmic_latency_samples(chunk, hop, runner.decoder_delay)
    report = {
        "backend": runner.kind,
        "model_id": runner.model_id,
        "sample_rate": sr,
        "chunk_samples": chunk,
        "chunk_ms": 1000.0 * chunk / sr,
        "frame_ms": 1000.0 * hop / sr,
        "chunks": len(times),
        "audio_s": audio_s,
        "compute_ms": stats,
        "rtf": compute_s / audio_s,
        "x_realtime": audio_s / compute_s if compute_s > 0 else float("inf"),
        "algorithmic_latency_ms": 1000.0 * lat / sr,
        "model_latency_ms": 1000.0 * (hop + runner.decoder_delay) / sr,
        "latency_plus_p95_compute_ms": 1000.0 * lat / sr + stats["p95_ms"],
        "frames": int(codes.shape[-1]),
        "out": args.out,
        "codes_out": codes_out,
    }
    if args.json:
        print(json.dumps(report), file=log)
    else:
        print(
            f"{report['chunks']} chunks of {report['chunk_ms']:.1f} ms ({report['backend']}), "
            f"{audio_s:.2f} s audio, {codes.shape[0]}x{codes.shape[1]} codes\n"
            f"compute per chunk: mean {stats['mean_ms']:.2f} ms, p95 {stats['p95_ms']:.2f} ms, "
            f"max {stats['max_ms']:.2f} ms\n"
            f"real-time factor {report['rtf']:.3f} ({report['x_realtime']:.1f}x real time)\n"
            f"algorithmic latency {report['algorithmic_latency_ms']:.1f} ms "
            f"(frame {report['frame_ms']:.1f} ms + chunking; model {report['model_latency_ms']:.1f} ms); "
            f"+ p95 compute = {report['latency_plus_p95_compute_ms']:.1f} ms",
            file=log,
        )
    return 0
