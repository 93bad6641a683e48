"""Streaming and offline speed of sonotok's exported codecs, side by side with EnCodec and Mimi.

Batch 1, ``--threads`` CPU threads (default 2), random weights (speed does not depend on weight values).

* sonotok presets ``experiment=tiny`` (causal, 16 kHz, 20 ms frames) and ``experiment=encodec_like_24k``
  (causal, 24 kHz, 13.3 ms frames) built with ``compose_config`` + ``hydra.utils.instantiate(cfg.codec)``,
  exported with ``export_torchscript`` and run through the TorchScript artifact: per-frame streaming
  compute (encode + decode of one frame) against the frame duration, and offline throughput. The
  artifact is timed as saved ("jit"), after ``torch.jit.freeze`` ("jit+freeze") and after freeze +
  ``torch.jit.optimize_for_inference`` ("jit+freeze+optimize", what ``sonotok stream --artifact`` runs on CPU).
* EnCodec 24 kHz (``encodec`` package, ``encodec_model_24khz(pretrained=False)``, 6 kbps, offline) and
  Mimi (``moshi`` package, ``get_mimi(None, num_codebooks=8)``, offline and streaming with
  ``mimi.streaming(1)`` on 1920-sample frames), run in a separate venv (``.venv-peers``, where the
  packages that pin another torch are installed with ``--no-deps``) through a subprocess of this script
  (``--peer NAME``), which prints JSON on stdout and never imports sonotok.
* The same two published architectures *imported* into sonotok (``--imported``, default both): the peers'
  venv writes a random-weight checkpoint in the released file format (EnCodec ``.th``, Mimi
  ``.safetensors``), ``sonotok import`` reads it, and the model is timed exactly like the presets
  (TorchScript artifact, streaming and offline), so the imported rows and the reference rows come from one run.

Usage::

    python3 -m venv .venv-peers
    .venv-peers/bin/pip install "torch==2.11.*" "torchaudio==2.11.0" numpy einops safetensors sentencepiece \\
        huggingface_hub && .venv-peers/bin/pip install --no-deps encodec moshi
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/streaming.py            # writes bench/results/streaming.{json,md}

Figures vary by up to a third between runs on shared machines: compare only within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# bench/ holds scripts named like standard modules (bench/tokenize.py): keep it off the import path
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

ROOT = Path(__file__).resolve().parent.parent
PRESETS = [("sonotok tiny 16k", "tiny"), ("sonotok encodec_like_24k", "encodec_like_24k")]


def _stats(times_s: List[float]) -> Dict[str, float]:
    ms = sorted(1000.0 * t for t in times_s)
    return {
        "mean_ms": statistics.fmean(ms),
        "median_ms": statistics.median(ms),
        "p95_ms": ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))],
        "max_ms": ms[-1],
    }


def _best_of(fn: Callable[[], None], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _offline(encode: Callable, decode: Callable, wav, seconds: float, repeats: int) -> Dict[str, float]:
    codes = encode(wav)
    decode(codes)
    t_enc = _best_of(lambda: encode(wav), repeats)
    t_dec = _best_of(lambda: decode(codes), repeats)
    return {"encode_x_realtime": seconds / t_enc, "decode_x_realtime": seconds / t_dec,
            "encode_s": t_enc, "decode_s": t_dec}


def _stream(step: Callable, frames: List, frame_ms: float, warmup: int = 5) -> Dict[str, float]:
    for f in frames[:warmup]:
        step(f)
    times = []
    for f in frames:
        t0 = time.perf_counter()
        step(f)
        times.append(time.perf_counter() - t0)
    s = _stats(times)
    s["frame_ms"] = frame_ms
    s["x_realtime"] = frame_ms / s["mean_ms"]
    s["median_x_realtime"] = frame_ms / s["median_ms"]
    s["p95_x_realtime"] = frame_ms / s["p95_ms"]
    s["frames"] = len(frames)
    return s


def _pipelined(enc, dec, frames: List, frame_ms: float, warmup: int = 5) -> Dict[str, float]:
    """Throughput of a two-thread streaming pipeline: one thread encodes frames as they come, the other
    decodes the codes it receives (an encoder and a decoder, as in a call, each with its own core).

    Torch runs one intra-op thread here (``torch.set_num_threads(1)``: per-frame ops are too small to
    split); TorchScript calls release the GIL, so the two threads run in parallel.
    """
    import queue
    import threading

    import torch

    for f in frames[:warmup]:  # warm-up on a throwaway state
        s_e, s_d = enc.init_state(1), dec.init_state(1)
        c, s_e = enc(f, s_e)
        dec(c, s_d)
    q: "queue.Queue" = queue.Queue()

    def enc_worker():
        with torch.inference_mode():
            st = enc.init_state(1)
            for f in frames:
                c, st = enc(f, st)
                q.put(c)
        q.put(None)

    def dec_worker():
        with torch.inference_mode():
            st = dec.init_state(1)
            while True:
                c = q.get()
                if c is None:
                    return
                _, st = dec(c, st)

    threads = [threading.Thread(target=enc_worker), threading.Thread(target=dec_worker)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"frames": len(frames), "wall_s": wall, "ms_per_frame": 1000.0 * wall / len(frames),
            "frame_ms": frame_ms, "x_realtime": frame_ms * len(frames) / (1000.0 * wall)}


# ----------------------------------------------------------------- sonotok
def bench_sonotok(preset: str, seconds: float, repeats: int, threads: int = 2) -> Dict[str, object]:
    import hydra.utils

    from sonotok.training.train import compose_config

    cfg = compose_config([f"experiment={preset}"])
    codec = hydra.utils.instantiate(cfg.codec).eval()
    return bench_codec(codec, preset, seconds, repeats, threads)


def bench_imported(family: str, python: str, seconds: float, repeats: int, threads: int = 2,
                   options: Dict[str, object] | None = None) -> Dict[str, object]:
    """A released-format checkpoint of ``family`` (random weights, written by the reference package in the
    peers' venv), imported with ``sonotok import`` and timed like the presets (its TorchScript artifact)."""
    from sonotok.cli.import_ import import_checkpoint
    from sonotok.model_io import load_model

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / IMPORTED[family][0]
        res = run_peer(python, f"checkpoint_{family}", seconds, repeats, threads, extra=["--checkpoint-out", str(ckpt)])
        if "error" in res:
            return res
        codec = load_model(import_checkpoint(family, ckpt, Path(tmp) / "model", **(options or {})))
    out = bench_codec(codec, f"import {family}", seconds, repeats, threads)
    out["imported"] = {"family": family, "options": options or {}, "reference_checkpoint": res}
    return out


def bench_codec(codec, preset: str, seconds: float, repeats: int, threads: int = 2) -> Dict[str, object]:
    import torch

    from sonotok.export.torchscript import export_torchscript

    sr, hop = codec.sample_rate, codec.hop_length
    n_params = sum(p.numel() for p in codec.parameters())
    out: Dict[str, object] = {
        "preset": preset, "sample_rate": sr, "hop_length": hop, "frame_ms": 1000.0 * hop / sr,
        "latency_ms": codec.latency_ms, "num_codebooks": codec.num_codebooks, "params_M": n_params / 1e6,
        "bitrate_kbps": codec.bitrate() / 1000,
    }
    g = torch.Generator().manual_seed(0)
    wav = torch.randn(1, codec.channels, int(seconds * sr) // hop * hop, generator=g) * 0.1
    frames = list(wav.split(hop, dim=-1))
    with tempfile.TemporaryDirectory() as tmp:
        export_torchscript(codec, tmp, check=False)
        enc = torch.jit.load(f"{tmp}/encoder_stream.pt")
        dec = torch.jit.load(f"{tmp}/decoder_stream.pt")
        off = torch.jit.load(f"{tmp}/codec.pt")
    variants = {"jit": (enc, dec, off)}
    try:
        variants["jit+freeze"] = (
            torch.jit.freeze(enc.eval(), preserved_attrs=["init_state"]),
            torch.jit.freeze(dec.eval(), preserved_attrs=["init_state"]),
            torch.jit.freeze(off.eval(), preserved_attrs=["encode", "decode"]),
        )
        from sonotok.export.runtime import optimize_for_cpu  # what `sonotok stream --artifact` runs on CPU

        variants["jit+freeze+optimize"] = (
            optimize_for_cpu(enc),
            optimize_for_cpu(dec),
            torch.jit.optimize_for_inference(torch.jit.freeze(off.eval(), preserved_attrs=["encode", "decode"]),
                                             other_methods=["encode", "decode"]),
        )
    except Exception as e:  # noqa: BLE001 - report and carry on
        out["freeze_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
    for name, (e, d, o) in variants.items():
        state = {"e": e.init_state(1), "d": d.init_state(1)}

        def step(x, e=e, d=d, state=state):
            c, state["e"] = e(x, state["e"])
            y, state["d"] = d(c, state["d"])
            return y

        with torch.inference_mode():
            out[f"stream_{name}"] = _stream(step, frames, 1000.0 * hop / sr)
            out[f"offline_{name}"] = _offline(o.encode, o.decode, wav, seconds, repeats)
            # encoder and decoder alone (a sender and a receiver, each on its own thread or machine)
            se = {"s": e.init_state(1)}
            codes = []
            for f in frames:
                c, se["s"] = e(f, se["s"])
                codes.append(c)
            se["s"], sd = e.init_state(1), {"s": d.init_state(1)}

            def enc_only(x, e=e, se=se):
                c, se["s"] = e(x, se["s"])
                return c

            def dec_only(c, d=d, sd=sd):
                y, sd["s"] = d(c, sd["s"])
                return y

            out[f"stream_{name}_encode"] = _stream(enc_only, frames, 1000.0 * hop / sr)
            out[f"stream_{name}_decode"] = _stream(dec_only, codes, 1000.0 * hop / sr)
        if threads == 2:
            n_threads = torch.get_num_threads()
            torch.set_num_threads(1)
            out[f"pipeline2_{name}"] = _pipelined(e, d, frames, 1000.0 * hop / sr)
            torch.set_num_threads(n_threads)
    # eager streaming (Codec.encode_step/decode_step, weight norm not folded) for reference
    es, ds = codec.init_state(1)
    st = {"e": es, "d": ds}

    def eager_step(x):
        c, st["e"] = codec.encode_step(x, st["e"])
        y, st["d"] = codec.decode_step(c, st["d"])
        return y

    with torch.inference_mode():
        out["stream_eager"] = _stream(eager_step, frames[: max(20, len(frames) // 4)], 1000.0 * hop / sr)
    return out


# ----------------------------------------------------------------- peers (run inside .venv-peers)
def peer_encodec(seconds: float, repeats: int) -> Dict[str, object]:
    import torch
    from encodec import EncodecModel

    model = EncodecModel.encodec_model_24khz(pretrained=False).eval()
    model.set_target_bandwidth(6.0)
    sr = model.sample_rate
    wav = torch.randn(1, 1, int(seconds * sr)) * 0.1
    with torch.inference_mode():
        res = _offline(model.encode, model.decode, wav, seconds, repeats)
    return {"model": "EnCodec 24 kHz 6 kbps", "sample_rate": sr, "frame_ms": 1000.0 / model.frame_rate,
            "params_M": sum(p.numel() for p in model.parameters()) / 1e6, "offline": res,
            "latency_note": "offline model (1 s chunks with overlap in the reference implementation)"}


def peer_mimi(seconds: float, repeats: int) -> Dict[str, object]:
    import torch
    from moshi.models import loaders

    mimi = loaders.get_mimi(None, device="cpu", num_codebooks=8).eval()
    sr = int(mimi.sample_rate)
    frame = int(sr / mimi.frame_rate)
    wav = torch.randn(1, 1, int(seconds * sr) // frame * frame) * 0.1
    with torch.inference_mode():
        offline = _offline(mimi.encode, mimi.decode, wav, seconds, repeats)
        frames = list(wav.split(frame, dim=-1))
        with mimi.streaming(1):

            def step(x):
                codes = mimi.encode(x)
                return mimi.decode(codes)

            stream = _stream(step, frames, 1000.0 * frame / sr)
    return {"model": "Mimi (8 codebooks)", "sample_rate": sr, "frame_ms": 1000.0 * frame / sr,
            "params_M": sum(p.numel() for p in mimi.parameters()) / 1e6, "offline": offline, "stream": stream}


def checkpoint_encodec_24khz(path: str) -> Dict[str, object]:
    """The released EnCodec 24 kHz architecture with random weights, saved as its ``.th`` state dict."""
    import torch
    from encodec import EncodecModel

    torch.manual_seed(0)
    model = EncodecModel.encodec_model_24khz(pretrained=False)
    for layer in model.quantizer.vq.layers:  # codebooks start at zero (k-means init): give them values
        layer._codebook.embed.normal_(0.0, 0.1)
        layer._codebook.inited.fill_(1.0)
    torch.save(model.state_dict(), path)
    return {"checkpoint": path, "params_M": sum(p.numel() for p in model.parameters()) / 1e6}


def checkpoint_mimi(path: str) -> Dict[str, object]:
    """The released Mimi architecture with random weights, saved as its ``.safetensors``."""
    import torch
    from moshi.models import loaders
    from safetensors.torch import save_file

    torch.manual_seed(0)
    mimi = loaders.get_mimi(None, device="cpu", num_codebooks=8)
    for part in (mimi.quantizer.rvq_first, mimi.quantizer.rvq_rest):
        for layer in part.vq.layers:
            layer._codebook.embedding_sum.normal_(0.0, 0.1)
            layer._codebook._initialized.fill_(1.0)
    save_file({k: v.contiguous() for k, v in mimi.state_dict().items()}, path)
    return {"checkpoint": path, "params_M": sum(p.numel() for p in mimi.parameters()) / 1e6}


# family -> (checkpoint file name, writer run in the peers' venv, import options)
IMPORTED = {
    "encodec_24khz": ("encodec_24khz.th", checkpoint_encodec_24khz, {"bandwidth": 6.0}),
    "mimi": ("mimi.safetensors", checkpoint_mimi, {"num_codebooks": 8}),
}


def run_peer(python: str, name: str, seconds: float, repeats: int, threads: int,
             extra: List[str] | None = None) -> Dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")  # the same policy as this process
    # -P: do not put bench/ on sys.path (bench/tokenize.py would shadow the standard library's tokenize)
    cmd = [python, "-P", str(Path(__file__).resolve()), "--peer", name, "--seconds", str(seconds),
           "--repeats", str(repeats), "--threads", str(threads)] + list(extra or [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(), timeout=1800)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------- report
def table(results: Dict[str, Dict[str, object]]) -> str:
    rows = ["| model | frame | algorithmic latency | stream compute / frame (mean, median, p95) | stream x real time (mean, median) "
            "| offline encode x RT | offline decode x RT |",
            "|---|---|---|---|---|---|---|"]

    def fmt(x, spec=".1f"):
        return "-" if x is None else format(x, spec)

    for label, r in results.items():
        if "error" in r:
            rows.append(f"| {label} | error: {r['error']} | | | | | |")
            continue
        if "preset" in r:
            for v in ("jit", "jit+freeze", "jit+freeze+optimize"):
                s, o = r.get(f"stream_{v}"), r.get(f"offline_{v}")
                if s is None:
                    continue
                rows.append(
                    f"| {label} ({v}) | {r['frame_ms']:.1f} ms | {r['latency_ms']:.1f} ms | "
                    f"{s['mean_ms']:.1f} / {s['median_ms']:.1f} / {s['p95_ms']:.1f} ms | "
                    f"{s['x_realtime']:.1f}x / {s['median_x_realtime']:.1f}x | "
                    f"{o['encode_x_realtime']:.1f}x | {o['decode_x_realtime']:.1f}x |")
            s = r["stream_eager"]
            rows.append(f"| {label} (eager, unfolded) | {r['frame_ms']:.1f} ms | {r['latency_ms']:.1f} ms | "
                        f"{s['mean_ms']:.1f} / {s['median_ms']:.1f} / {s['p95_ms']:.1f} ms | "
                        f"{s['x_realtime']:.1f}x / {s['median_x_realtime']:.1f}x | - | - |")
        else:
            s, o = r.get("stream"), r["offline"]
            rows.append(
                f"| {r['model']} | {r['frame_ms']:.1f} ms | "
                f"{fmt(r['frame_ms']) + ' ms' if s else 'offline'} | "
                f"{'%.1f / %.1f / %.1f ms' % (s['mean_ms'], s['median_ms'], s['p95_ms']) if s else '-'} | "
                f"{'%.1fx / %.1fx' % (s['x_realtime'], s['median_x_realtime']) if s else '-'} | "
                f"{o['encode_x_realtime']:.1f}x | {o['decode_x_realtime']:.1f}x |")
    rows += ["", "Encoder and decoder alone (one stream each, e.g. sender and receiver), per 1-frame call:", "",
             "| model | encode compute / frame (mean, median) | encode x real time | decode compute / frame "
             "(mean, median) | decode x real time |", "|---|---|---|---|---|"]
    for label, r in results.items():
        if "preset" not in r:
            continue
        for v in ("jit", "jit+freeze", "jit+freeze+optimize"):
            e, d = r.get(f"stream_{v}_encode"), r.get(f"stream_{v}_decode")
            if e is None or d is None:
                continue
            rows.append(f"| {label} ({v}) | {e['mean_ms']:.2f} / {e['median_ms']:.2f} ms | {e['x_realtime']:.1f}x | "
                        f"{d['mean_ms']:.2f} / {d['median_ms']:.2f} ms | {d['x_realtime']:.1f}x |")
    pipe = [(label, v, r[f"pipeline2_{v}"]) for label, r in results.items() if "preset" in r
            for v in ("jit", "jit+freeze", "jit+freeze+optimize") if f"pipeline2_{v}" in r]
    if pipe:
        rows += ["", "Two threads as a pipeline (encoder thread -> decoder thread, 1 intra-op thread each), "
                 "steady-state throughput:", "", "| model | wall time / frame | x real time |", "|---|---|---|"]
        rows += [f"| {label} ({v}) | {p['ms_per_frame']:.2f} ms | {p['x_realtime']:.1f}x |" for label, v, p in pipe]
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="audio length (default 10 s)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="offline: best of N")
    p.add_argument("--peers-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    p.add_argument("--skip-peers", action="store_true")
    p.add_argument("--presets", nargs="*", default=[name for _, name in PRESETS])
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "streaming.json"))
    p.add_argument("--imported", nargs="*", default=list(IMPORTED), choices=list(IMPORTED),
                   help="released checkpoints (random weights, written by the peers' packages) imported with "
                   "`sonotok import` and timed like the presets (default: all; needs --peers-python)")
    p.add_argument("--peer", choices=["encodec", "mimi"] + [f"checkpoint_{f}" for f in IMPORTED],
                   help=argparse.SUPPRESS)
    p.add_argument("--checkpoint-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.peer and args.peer.startswith("checkpoint_"):
        print(json.dumps(IMPORTED[args.peer[len("checkpoint_"):]][1](args.checkpoint_out)))
        return 0
    if args.peer:
        fn = {"encodec": peer_encodec, "mimi": peer_mimi}[args.peer]
        print(json.dumps(fn(args.seconds, args.repeats)))
        return 0

    results: Dict[str, Dict[str, object]] = {}
    for label, preset in PRESETS:
        if preset in args.presets:
            print(f"benchmarking {label} ...", file=sys.stderr)
            results[label] = bench_sonotok(preset, args.seconds, args.repeats, args.threads)
    for family in args.imported:
        label = f"sonotok imported {family}"
        print(f"benchmarking {label} ...", file=sys.stderr)
        if not Path(args.peers_python).exists():
            results[label] = {"error": f"{args.peers_python} missing (see the usage in this file)"}
        else:
            results[label] = bench_imported(family, args.peers_python, args.seconds, args.repeats, args.threads,
                                            IMPORTED[family][2])
    if not args.skip_peers:
        for name in ("encodec", "mimi"):
            print(f"benchmarking peer {name} ...", file=sys.stderr)
            if not Path(args.peers_python).exists():
                results[name] = {"error": f"{args.peers_python} missing (see the usage in this file)"}
            else:
                results[name] = run_peer(args.peers_python, name, args.seconds, args.repeats, args.threads)
    md = table(results)
    meta = {"seconds": args.seconds, "threads": args.threads, "batch": 1, "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_average_1_5_15_min_at_end": os.getloadavg(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "note": "random weights; batch 1; x real time = audio duration / compute time; "
                    "stream = encode + decode of one frame per call through the TorchScript artifact"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results, "table_md": md}, indent=2) + "\n")
    out.with_suffix(".md").write_text(
        f"# Streaming benchmark ({meta['date']}, {args.threads} threads, batch 1, {args.seconds:g} s audio)\n\n"
        f"Command: `OMP_WAIT_POLICY={meta['omp_wait_policy']} .venv/bin/python bench/streaming.py "
        f"{' '.join(sys.argv[1:] if argv is None else argv)}` "
        f"(load average at the end {meta['load_average_1_5_15_min_at_end'][0]:.2f})\n\n{md}\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
