"""Streaming and offline speed of sonotok's exported codecs, side by side with EnCodec and Mimi.

Batch 1, ``--threads`` CPU threads (default 2), random weights (speed does not depend on weight values),
plus one batched row for the shipped default.

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
* Batched streaming (``--batched-*``): the shipped default (``sonotok.load("default")``), its TorchScript
  artifact (as saved, and frozen + optimized), ``B`` independent streams (``--batched-batches``, default
  1 16 64 256) stepped together, one 20 ms frame each per step (encode + decode, one state with a batch
  dimension), on 2 threads and on 1 thread (``--batched-threads``): wall time per step and the concurrent
  real-time streams the machine carries, ``B * frame duration / mean step time``, best ``B`` reported
  (:func:`sonotok.export.runtime.time_batched_steps`, the function ``export.json``'s figure comes from).

Usage::

    python3 -m venv .venv-peers
    .venv-peers/bin/pip install "torch==2.11.*" "torchaudio==2.11.0" numpy einops safetensors sentencepiece \\
        huggingface_hub && .venv-peers/bin/pip install --no-deps encodec moshi
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/streaming.py            # writes bench/results/streaming.{json,md}
    # only the batched row (the other rows of streaming.json / streaming.md are kept as they are):
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/streaming.py --batched-only
    # a short check of the batched row (written elsewhere):
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/streaming.py --batched-only --batched-steps 5 \
        --out /tmp/streaming.json

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


# ----------------------------------------------------------------- batched streaming (shipped default)
BATCHED_VARIANTS = ("jit", "jit+freeze+optimize")


def bench_batched(model: str, batches: List[int], threads_list: List[int], steps: int,
                  warmup: int = 3) -> Dict[str, object]:
    """``B`` streams of ``model``'s TorchScript artifact stepped together, for each ``B`` and thread count.

    Per thread count and artifact variant: one row per ``B`` (step time, concurrent real-time streams) and
    the best ``B``; ``best`` is the best over variants and ``B`` for each thread count.
    """
    import torch

    import sonotok
    from sonotok.export.runtime import cpu_model_name, optimize_for_cpu, time_batched_steps
    from sonotok.export.torchscript import export_torchscript
    from sonotok.models.cost import codec_cost

    codec = sonotok.load(model, map_location="cpu").eval()
    sr, hop, ch = codec.sample_rate, codec.hop_length, codec.channels
    cost = codec_cost(codec, seconds=1.0)
    with tempfile.TemporaryDirectory() as tmp:
        export_torchscript(codec, tmp, check=False)
        enc = torch.jit.load(f"{tmp}/encoder_stream.pt")
        dec = torch.jit.load(f"{tmp}/decoder_stream.pt")
    variants = {"jit": (enc, dec), "jit+freeze+optimize": (optimize_for_cpu(enc), optimize_for_cpu(dec))}
    out: Dict[str, object] = {
        "model": model, "model_id": getattr(codec, "model_id", None), "sample_rate": sr, "hop_length": hop,
        "frame_ms": 1000.0 * hop / sr, "params_M": cost["parameters"] / 1e6,
        "total_mflops_per_s": cost["total_mflops_per_s"], "cpu": cpu_model_name(), "batches": list(batches),
        "steps": steps, "warmup": warmup, "threads": {}, "best": {},
    }
    before = torch.get_num_threads()
    try:
        for n in threads_list:
            torch.set_num_threads(n)
            per_variant: Dict[str, object] = {}
            for name, (e, d) in variants.items():
                rows = []
                for b in batches:
                    print(f"  batched: {n} thread(s), {name}, B={b} ...", file=sys.stderr)
                    rows.append(time_batched_steps(e, d, hop, sr, ch, b, steps=steps, warmup=warmup))
                best = max(rows, key=lambda r: r["concurrent_realtime_streams"])
                per_variant[name] = {"rows": rows, "best_batch": best["batch"],
                                     "concurrent_realtime_streams": best["concurrent_realtime_streams"]}
            out["threads"][str(n)] = per_variant
            v = max(per_variant, key=lambda k: per_variant[k]["concurrent_realtime_streams"])
            out["best"][str(n)] = {"variant": v, "batch": per_variant[v]["best_batch"],
                                   "concurrent_realtime_streams": per_variant[v]["concurrent_realtime_streams"]}
    finally:
        torch.set_num_threads(before)
    return out


def batched_table(r: Dict[str, object]) -> str:
    """The markdown rows of a :func:`bench_batched` result."""
    if "error" in r:
        return f"error: {r['error']}"
    rows = ["| threads | artifact | B | step time (mean / median / p95) | per stream per frame | "
            "concurrent real-time streams (mean, median) |", "|---|---|---|---|---|---|"]
    for n, per_variant in r["threads"].items():
        for v, res in per_variant.items():
            for row in res["rows"]:
                st = row["step_ms"]
                best = " **(best B)**" if row["batch"] == res["best_batch"] else ""
                rows.append(f"| {n} | {v} | {row['batch']} | {st['mean_ms']:.2f} / {st['median_ms']:.2f} / "
                            f"{st['p95_ms']:.2f} ms | {st['mean_ms'] / row['batch']:.3f} ms | "
                            f"{row['concurrent_realtime_streams']:.0f} / {row['concurrent_realtime_streams_median']:.0f}"
                            f"{best} |")
    best = "; ".join(f"{n} thread{'s' if n != '1' else ''}: **{b['concurrent_realtime_streams']:.0f}** streams "
                     f"({b['variant']}, B={b['batch']})" for n, b in r["best"].items())
    return "\n".join(rows + ["", f"Concurrent real-time streams one machine carries: {best}."])


BATCHED_MARKER = "\n## Batched streaming"


def batched_section(b: Dict[str, object]) -> str:
    meta, r = b["meta"], b["result"]
    head = (f"{BATCHED_MARKER}: concurrent real-time streams ({meta['date']}, {meta['cpu']}, "
            f"load average at the end {meta['load_average_1_5_15_min_at_end'][0]:.2f})\n\n"
            f"Command: `{meta['command']}`\n\n")
    load, cores = meta["load_average_1_5_15_min_at_end"][0], meta.get("cpu_count") or 1
    if load > 0.5 * cores:
        head += (f"**The machine was loaded (load average {load:.1f} on {cores} cores): these figures are low; "
                 "rerun on a quiet machine.**\n\n")
    if "error" in r:
        return head + batched_table(r) + "\n"
    return (head + f"The shipped `{r['model']}` ({r['model_id']}, {r['params_M']:.2f} M parameters, "
            f"{r['total_mflops_per_s']:.0f} MFLOP/s, {r['frame_ms']:.0f} ms frames), TorchScript artifact: B "
            f"independent streams stepped together, each step one frame of every stream (encode + decode, one "
            f"state with a batch dimension), {r['steps']} timed steps after {r['warmup']} warm-up steps. "
            f"Concurrent real-time streams = B x {r['frame_ms']:.0f} ms / step time.\n\n" + batched_table(r) + "\n")


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
    p.add_argument("--batched-model", default="default", help="model of the batched row (default: the shipped default)")
    p.add_argument("--batched-batches", type=int, nargs="+", default=[1, 16, 64, 256],
                   help="streams stepped together (default 1 16 64 256)")
    p.add_argument("--batched-threads", type=int, nargs="+", default=[2, 1], help="torch threads (default 2 1)")
    p.add_argument("--batched-steps", type=int, default=30, help="timed steps per batch size (default 30)")
    p.add_argument("--no-batched", action="store_true", help="skip the batched row")
    p.add_argument("--batched-only", action="store_true",
                   help="run only the batched row and replace it in --out, keeping the other rows there")
    args = p.parse_args(argv)
    command = (f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')} .venv/bin/python bench/streaming.py "
               + " ".join(sys.argv[1:] if argv is None else argv))

    import torch

    torch.set_num_threads(args.threads)
    if args.peer and args.peer.startswith("checkpoint_"):
        print(json.dumps(IMPORTED[args.peer[len("checkpoint_"):]][1](args.checkpoint_out)))
        return 0
    if args.peer:
        fn = {"encodec": peer_encodec, "mimi": peer_mimi}[args.peer]
        print(json.dumps(fn(args.seconds, args.repeats)))
        return 0

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    batched = None
    if not args.no_batched or args.batched_only:
        print(f"benchmarking batched streaming of {args.batched_model} ...", file=sys.stderr)
        try:
            res = bench_batched(args.batched_model, args.batched_batches, args.batched_threads, args.batched_steps)
        except Exception as e:  # noqa: BLE001 - report and carry on
            res = {"error": f"{type(e).__name__}: {e}"}
        batched = {"meta": {"command": command, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                            "cpu": res.get("cpu", "?"), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                            "load_average_1_5_15_min_at_end": os.getloadavg(),
                            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")},
                   "result": res, "table_md": batched_table(res)}
        print(batched["table_md"])
    if args.batched_only:  # keep every other row of the existing files
        data = json.loads(out.read_text()) if out.exists() else {}
        data["batched"] = batched
        out.write_text(json.dumps(data, indent=2) + "\n")
        md_path = out.with_suffix(".md")
        old_md = md_path.read_text() if md_path.exists() else "# Streaming benchmark\n"
        old_md = old_md.split(BATCHED_MARKER)[0].rstrip("\n") + "\n"
        md_path.write_text(old_md + batched_section(batched))
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
    data: Dict[str, object] = {"meta": meta, "results": results, "table_md": md}
    if batched is not None:
        data["batched"] = batched
    out.write_text(json.dumps(data, indent=2) + "\n")
    out.with_suffix(".md").write_text(
        f"# Streaming benchmark ({meta['date']}, {args.threads} threads, batch 1, {args.seconds:g} s audio)\n\n"
        f"Command: `{command}` "
        f"(load average at the end {meta['load_average_1_5_15_min_at_end'][0]:.2f})\n\n{md}\n"
        + (batched_section(batched) if batched is not None else ""))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
