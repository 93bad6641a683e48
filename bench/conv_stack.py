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
from typing import Callable, Dict, List

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
    from sonotok.modules.streaming import (Conv, ConvTranspose, Stateless, StreamingResidual,
                                           StreamingSequential)

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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", default="1,4", help="comma-separated input lengths in seconds")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--layers", action="store_true", help="per-layer breakdown")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
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
