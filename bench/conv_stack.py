"""sonotok's SEANet-family conv stacks against the same stacks of plain ``nn.Conv1d`` / ``nn.ConvTranspose1d``.

For each model family (the SEANet default preset, ``experiment=encodec_like_24k``, the imported EnCodec 24 kHz
architecture) the encoder and the decoder are rebuilt as *plain twins*: the same weights (weight norm
folded once), explicit padding (``F.pad``, zeros or reflection as the layer pads) and ``nn.Conv1d`` /
``nn.ConvTranspose1d`` with their bias, ``nn.ELU``, ``nn.LSTM``. The twin's output must equal sonotok's
within 1e-5 (checked before timing). Both run offline in the same process, on 1 thread by default,
interleaved call by call; the table gives the median CPU time of ``--repeats`` calls (process CPU time: on
a shared machine wall time mostly measures the wait for a core) and the ratio ``sonotok / plain`` (below 1:
sonotok is faster), so a loaded machine slows both sides alike. The twin pads only where padding is
needed (a plain stack does not pad a 1x1 convolution). ``GFLOP per s of audio`` counts convolutions and
matrix products of the stack (``FlopCounterMode``): it shows how much work each family's architecture asks
for, independently of how it is run.

``--layers`` adds a per-layer breakdown of each stack (the same interleaving, layer by layer).
``--stream`` profiles a streaming step of the imported EnCodec artifact instead (:func:`stream_step_profile`,
``bench/results/conv_stack_stream.json``).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m bench.conv_stack [--seconds 1,4] [--repeats 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "conv_stack.json"


# ------------------------------------------------------------------------------------------ plain twins
class _PadConv(nn.Module):
    """``F.pad`` (zeros or reflection, left fixed, right to a whole last window) + ``nn.Conv1d``."""

    def __init__(self, conv: nn.Conv1d, left: int, stride: int, kernel: int, mode: str, reflect_extra: bool):
        super().__init__()
        self.conv, self.left, self.stride, self.kernel, self.mode = conv, left, stride, kernel, mode
        self.reflect_extra = reflect_extra

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[-1]
        if self.reflect_extra:  # EnCodec's get_extra_padding_for_conv1d
            extra = (math.ceil((n - self.kernel + self.left) / self.stride + 1) - 1) * self.stride \
                + (self.kernel - self.left) - n
        else:
            extra = (-n) % self.stride
        if self.left or extra:  # a plain stack does not pad a 1x1 convolution
            short = max(self.left, extra) - n + 1 if self.mode == "reflect" else 0
            if short > 0:  # EnCodec's pad1d: reflection needs more samples than the padding
                x = F.pad(F.pad(x, (0, short)), (self.left, extra), mode="reflect")[..., : n + self.left + extra]
            else:
                x = F.pad(x, (self.left, extra), mode=self.mode)
        return self.conv(x)


class _TrimConvTr(nn.Module):
    """``nn.ConvTranspose1d`` (with bias) and the causal trim of its last ``kernel - stride`` samples."""

    def __init__(self, convtr: nn.ConvTranspose1d, tail: int):
        super().__init__()
        self.convtr, self.tail = convtr, tail

    def forward(self, x: Tensor) -> Tensor:
        y = self.convtr(x)
        return y[..., : y.shape[-1] - self.tail] if self.tail else y


class _Residual(nn.Module):
    def __init__(self, block: nn.Module, shortcut: nn.Module):
        super().__init__()
        self.block, self.shortcut = block, shortcut

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.block(x)


class _LSTM(nn.Module):
    def __init__(self, lstm: nn.LSTM, skip: bool):
        super().__init__()
        self.lstm, self.skip = lstm, skip

    def forward(self, x: Tensor) -> Tensor:
        t = x.permute(2, 0, 1)
        y, _ = self.lstm(t)
        return (y + t if self.skip else y).permute(1, 2, 0)


def _plain_conv(src: nn.Module) -> nn.Conv1d:
    c = nn.Conv1d(src.in_channels, src.out_channels, src.kernel_size, src.stride, dilation=src.dilation,
                  groups=src.groups, bias=src.bias is not None)
    with torch.no_grad():
        c.weight.copy_(src.weight)
        if src.bias is not None:
            c.bias.copy_(src.bias)
    return c


def plain_twin(m: nn.Module) -> nn.Module:
    """The same computation as sonotok module ``m`` (offline) built from plain ``torch.nn`` layers."""
    from sonotok.modules.conv import StreamingConv1d, StreamingConvTranspose1d
    from sonotok.modules.lstm import StreamingLSTM
    from sonotok.modules.reflect_conv import AlignedResidual, ReflectPadConv1d
    from sonotok.modules.streaming import (
        Conv,
        ConvTranspose,
        Stateless,
        StreamingResidual,
        StreamingSequential,
    )

    if isinstance(m, ReflectPadConv1d):
        return _PadConv(_plain_conv(m.conv), m.padding, m.stride, m.kernel_size, "reflect", True)
    if isinstance(m, StreamingConv1d):
        return _PadConv(_plain_conv(m.conv), m.padding, m.stride, m.kernel_size, "constant", False)
    if isinstance(m, StreamingConvTranspose1d):
        src = m.convtr
        c = nn.ConvTranspose1d(src.in_channels, src.out_channels, src.kernel_size, src.stride,
                               bias=m.bias is not None)
        with torch.no_grad():
            c.weight.copy_(src.weight)
            if m.bias is not None:
                c.bias.copy_(m.bias)
        return _TrimConvTr(c, m.tail)
    if isinstance(m, Conv):
        return plain_twin(m.conv)
    if isinstance(m, ConvTranspose):
        return plain_twin(m.convtr)
    if isinstance(m, Stateless):
        return copy.deepcopy(m.module)
    if isinstance(m, StreamingSequential):
        return nn.Sequential(*[plain_twin(layer) for layer in m.layers])
    if isinstance(m, (StreamingResidual, AlignedResidual)):
        return _Residual(plain_twin(m.block), plain_twin(m.shortcut))
    if isinstance(m, StreamingLSTM):
        lstm = nn.LSTM(m.dim, m.dim, m.num_layers)
        with torch.no_grad():
            for i in range(m.num_layers):
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(lstm, f"{kind}_l{i}").copy_(getattr(m, kind)[i])
        return _LSTM(lstm, m.skip)
    if hasattr(m, "model") and isinstance(m.model, StreamingSequential):  # SEANet / EnCodec encoder, decoder
        return plain_twin(m.model)
    raise TypeError(f"no plain twin for {type(m).__name__}")


# ------------------------------------------------------------------------------------------ models
def build_family(name: str):
    """``(encoder, decoder, sample_rate)`` of a family, random weights, eval mode."""
    torch.manual_seed(0)
    if name in ("seanet_default", "encodec_like_24k"):
        from hydra.utils import instantiate

        from sonotok.training.train import compose_config

        cfg = compose_config(["quantizer.kmeans_init=false"] + (["experiment=encodec_like_24k"]
                                                                if name == "encodec_like_24k" else []))
        codec = instantiate(cfg.codec)
    elif name == "imported_encodec_24khz":
        from sonotok.models.imported.encodec import EncodecCodec

        codec = EncodecCodec()
        with torch.no_grad():  # weight-norm gains as a trained model has them, not all equal to |v|
            for p in codec.parameters():
                p.mul_(1 + 0.1 * torch.randn_like(p))
    else:
        raise ValueError(f"unknown family {name!r}")
    codec.eval()
    return codec.encoder, codec.decoder, int(codec.sample_rate)


FAMILIES = ["seanet_default", "encodec_like_24k", "imported_encodec_24khz"]


# ------------------------------------------------------------------------------------------ timing
def interleaved(fns: Dict[str, Callable[[], object]], repeats: int, clock: Callable[[], float] = time.process_time
                ) -> Dict[str, float]:
    """Median seconds of each function, called in turn ``repeats`` times (after one warm-up each).

    The default clock is the process's CPU time: on a shared machine wall time mostly measures waiting for a
    core, CPU time the work (both sides still share caches and memory bandwidth with the other jobs).
    """
    for f in fns.values():
        f()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = clock()
            f()
            times[k].append(clock() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def compare(ours: nn.Module, plain: nn.Module, x: Tensor, repeats: int) -> Dict[str, float]:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode():
        diff = float((ours(x) - plain(x)).abs().max())
        if diff > 1e-5:
            raise AssertionError(f"plain twin differs from sonotok by {diff:.3g} (> 1e-5)")
        with FlopCounterMode(display=False) as count:  # convolutions and matrix products (2 per MAC)
            plain(x)
        t = interleaved({"sonotok": lambda: ours(x), "plain": lambda: plain(x)}, repeats)
    return {"sonotok_ms": 1e3 * t["sonotok"], "plain_ms": 1e3 * t["plain"], "ratio": t["sonotok"] / t["plain"],
            "max_abs_diff": diff, "gflop": count.get_total_flops() / 1e9}


def layer_rows(ours: nn.Module, plain: nn.Module, x: Tensor, repeats: int) -> List[Dict[str, object]]:
    layers, twins = list(ours.model.layers), list(plain)
    rows = []
    with torch.inference_mode():
        for i, (a, b) in enumerate(zip(layers, twins)):
            r = compare(a, b, x, repeats)
            rows.append({"layer": i, "kind": type(a).__name__, "in_shape": list(x.shape), **r})
            x = a(x)
    return rows


# ------------------------------------------------------------------------------------------ streaming step
def stream_step_profile(frames: int = 300, warmup: int = 20) -> Dict[str, object]:
    """Where a streaming step of the imported EnCodec 24 kHz artifact goes, in CPU time (1 thread).

    The released architecture (random weights, gains perturbed) is exported with ``export_torchscript`` and
    stepped one 320-sample frame at a time (encode, then decode the frame's codes) as saved, frozen, and
    frozen + optimized (``optimize_for_cpu``), the three interleaved frame by frame. Also measured: how many
    bytes of weights one step reads (every layer below the hop rate runs one frame per step, so each of its
    weights is used once per frame), the read rate of one core on weights that are not in cache (one
    vector-matrix product per 8 MiB matrix, the operation of a one-frame step), and whether a second
    intra-op thread shares such a product (``main_thread_cpu_share``: 1.0 = it stays on the calling thread).
    """
    import tempfile

    from sonotok.export.runtime import optimize_for_cpu
    from sonotok.export.torchscript import export_torchscript
    from sonotok.models.imported.encodec import EncodecCodec
    from sonotok.modules.conv import fold_weight_norm

    torch.manual_seed(0)
    codec = EncodecCodec().eval()
    with torch.no_grad():
        for p in codec.parameters():
            p.mul_(1 + 0.1 * torch.randn_like(p))
    folded = fold_weight_norm(copy.deepcopy(codec))
    weight_bytes = 4 * (sum(p.numel() for p in folded.encoder.parameters())
                        + sum(p.numel() for p in folded.decoder.parameters()))
    codebook_bytes = 4 * codec.num_codebooks * codec.codebook_size * codec.quantizer.dim
    with tempfile.TemporaryDirectory() as tmp:
        export_torchscript(codec, tmp, check=False)
        load = lambda name: torch.jit.load(f"{tmp}/{name}_stream.pt")  # noqa: E731
        variants = {
            "jit": (load("encoder"), load("decoder")),
            "jit+freeze": (torch.jit.freeze(load("encoder").eval(), preserved_attrs=["init_state"]),
                           torch.jit.freeze(load("decoder").eval(), preserved_attrs=["init_state", "flush"])),
            "jit+freeze+optimize": (optimize_for_cpu(load("encoder")), optimize_for_cpu(load("decoder"))),
        }
    hop = codec.hop_length
    g = torch.Generator().manual_seed(0)
    chunks = list((torch.randn(1, 1, hop * (frames + warmup), generator=g) * 0.1).split(hop, dim=-1))
    states = {k: [e.init_state(1), d.init_state(1)] for k, (e, d) in variants.items()}
    cpu: Dict[str, Dict[str, List[float]]] = {k: {"encode": [], "decode": []} for k in variants}
    codes: Dict[str, List[Tensor]] = {k: [] for k in variants}
    with torch.inference_mode():
        for i, x in enumerate(chunks):
            for k, (e, d) in variants.items():
                st = states[k]
                t0 = time.thread_time()
                c, st[0] = e(x, st[0])
                t1 = time.thread_time()
                _, st[1] = d(c, st[1])
                t2 = time.thread_time()
                codes[k].append(c)
                if i >= warmup:
                    cpu[k]["encode"].append(t1 - t0)
                    cpu[k]["decode"].append(t2 - t1)
    first = torch.cat(codes["jit"], dim=-1)
    frame_ms = 1000.0 * hop / codec.sample_rate
    rows = {}
    for k in variants:
        enc_ms = 1e3 * statistics.median(cpu[k]["encode"])
        dec_ms = 1e3 * statistics.median(cpu[k]["decode"])
        rows[k] = {"encode_cpu_ms": enc_ms, "decode_cpu_ms": dec_ms, "step_cpu_ms": enc_ms + dec_ms,
                   "x_realtime_one_thread": frame_ms / (enc_ms + dec_ms),
                   "x_realtime_encoder_decoder_pipeline": frame_ms / max(enc_ms, dec_ms),
                   "codes_equal_to_jit": bool(torch.equal(torch.cat(codes[k], dim=-1), first))}

    # one core's read rate on weights out of cache, and whether 2 intra-op threads share a 1-row product
    mats = [torch.randn(512, 4096) for _ in range(8)]  # 8 MiB each
    row = torch.randn(1, 4096)
    evict = torch.zeros(64 * 1024 * 1024 // 4)

    def cold(n_threads: int) -> Tuple[float, float]:
        before = torch.get_num_threads()
        torch.set_num_threads(n_threads)
        own, total = [], []
        try:
            with torch.inference_mode():
                for i in range(40):
                    evict.add_(0.0)
                    t0, p0 = time.thread_time(), time.process_time()
                    torch.mm(row, mats[i % len(mats)].t())
                    own.append(time.thread_time() - t0)
                    total.append(time.process_time() - p0)
        finally:
            torch.set_num_threads(before)
        return statistics.median(own), statistics.median(total)

    own1, _ = cold(1)
    own2, total2 = cold(2)
    read_gb_s = mats[0].numel() * 4 / own1 / 1e9
    return {"frames": frames, "frame_ms": frame_ms, "variants": rows,
            "weights_read_per_step_mb": (weight_bytes + codebook_bytes) / 1e6,
            "conv_lstm_weights_mb": weight_bytes / 1e6, "codebooks_searched_mb": codebook_bytes / 1e6,
            "cold_read_gb_s_one_core": read_gb_s,
            "memory_floor_ms": (weight_bytes + codebook_bytes) / 1e9 / read_gb_s * 1e3,
            "two_threads_main_thread_cpu_share": own2 / total2 if total2 > 0 else float("nan")}


def stream_table(r: Dict[str, object]) -> str:
    lines = [f"Imported EnCodec 24 kHz artifact, one {r['frame_ms']:.1f} ms frame per step, {r['frames']} steps, "
             "1 thread, median CPU time per step:", "",
             "| artifact | encode (ms) | decode (ms) | step (ms) | x real time, one thread | "
             "x real time, encoder and decoder on two threads (bound) | codes = jit |", "|---|---:|---:|---:|---:|---:|---|"]
    for k, v in r["variants"].items():
        lines.append(f"| {k} | {v['encode_cpu_ms']:.2f} | {v['decode_cpu_ms']:.2f} | {v['step_cpu_ms']:.2f} | "
                     f"{v['x_realtime_one_thread']:.2f} | {v['x_realtime_encoder_decoder_pipeline']:.2f} | "
                     f"{v['codes_equal_to_jit']} |")
    lines += ["", f"Weights read per step: {r['weights_read_per_step_mb']:.1f} MB (convolutions and LSTMs "
              f"{r['conv_lstm_weights_mb']:.1f} MB, searched codebooks {r['codebooks_searched_mb']:.1f} MB); "
              f"one core reads weights out of cache at {r['cold_read_gb_s_one_core']:.1f} GB/s, so reading them "
              f"takes {r['memory_floor_ms']:.2f} ms per step; with 2 intra-op threads the calling thread still "
              f"does {100 * r['two_threads_main_thread_cpu_share']:.0f} % of a one-row product's CPU time."]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", default="1,4", help="comma-separated input lengths in seconds")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--layers", action="store_true", help="per-layer breakdown")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--stream", action="store_true",
                    help="instead: profile a streaming step of the imported EnCodec artifact (stream_step_profile)")
    ap.add_argument("--frames", type=int, default=300, help="--stream: timed steps")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.stream:
        r = stream_step_profile(args.frames)
        table = stream_table(r)
        print(table)
        out = Path(args.out if args.out != str(RESULTS) else RESULTS.with_name("conv_stack_stream.json"))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**r, "table": table, "torch": torch.__version__,
                                   "date": time.strftime("%Y-%m-%d %H:%M"),
                                   "machine": f"{platform.machine()} {os.cpu_count()} CPUs, shared with other jobs",
                                   "load_average_1_5_15_min_at_end": os.getloadavg(),
                                   "command": "OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m bench.conv_stack "
                                              + " ".join(sys.argv[1:] if argv is None else argv)}, indent=2) + "\n")
        return 0
    seconds = [float(v) for v in args.seconds.split(",") if v]
    rows, layers = [], {}
    for fam in [f for f in args.families.split(",") if f]:
        enc, dec, sr = build_family(fam)
        twins = {"encoder": plain_twin(enc).eval(), "decoder": plain_twin(dec).eval()}
        for sec in seconds:
            wav = torch.randn(1, 1, int(sec * sr)) * 0.1
            with torch.inference_mode():
                z = enc(wav)
            for part, ours, x in (("encoder", enc, wav), ("decoder", dec, z)):
                r = compare(ours, twins[part], x, args.repeats)
                rows.append({"family": fam, "part": part, "seconds": sec, **r})
                print(f"{fam} {part} {sec:g} s: sonotok {r['sonotok_ms']:.1f} ms, plain {r['plain_ms']:.1f} ms, "
                      f"ratio {r['ratio']:.3f}", file=sys.stderr)
                if args.layers and sec == seconds[-1]:
                    layers[f"{fam} {part} ({sec:g} s)"] = layer_rows(ours, twins[part], x, args.repeats)
    lines = ["| family | part | audio (s) | GFLOP per s of audio | sonotok (ms CPU) | plain nn.Conv1d (ms CPU) | "
             "sonotok / plain | max abs diff |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['family']} | {r['part']} | {r['seconds']:g} | {r['gflop'] / r['seconds']:.2f} | "
                     f"{r['sonotok_ms']:.1f} | {r['plain_ms']:.1f} | {r['ratio']:.3f} | {r['max_abs_diff']:.1e} |")
    for name, lr in layers.items():
        lines += ["", f"{name}, per layer:", "", "| layer | kind | input | sonotok (ms) | plain (ms) | ratio |",
                  "|---:|---|---|---:|---:|---:|"]
        lines += [f"| {r['layer']} | {r['kind']} | {r['in_shape']} | {r['sonotok_ms']:.2f} | {r['plain_ms']:.2f} | "
                  f"{r['ratio']:.2f} |" for r in lr]
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "rows": rows, "layers": layers, "table": table, "threads": args.threads, "seconds": seconds,
        "repeats": args.repeats, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, shared with other jobs",
        "load_average_1_5_15_min_at_end": os.getloadavg(),
        "command": "OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m bench.conv_stack "
                   + " ".join(sys.argv[1:] if argv is None else argv),
    }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
