"""TorchScript artifacts of a separator: offline (``forward(mix) -> sources``) and, for causal models, streaming.

:func:`export_separator` writes ``separator_offline.pt``, ``separator_streaming.pt`` (:class:`StreamingSeparator`,
the explicit-state step of a causal Conv-TasNet) and ``separator_export.json``; both load with ``torch.jit.load``
alone.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import List, Tuple

import torch
from torch import Tensor, nn

from sonotok.data.atomic import atomic_path, atomic_write_text
from sonotok.models.separation import ConvTasNet


class StreamingSeparator(nn.Module):
    """Scriptable streaming wrapper: ``forward(mix_chunk [B, 1, t], state) -> (sources [B, S, t'], state)``
    and ``init_state(batch)`` (exported), so a caller needs only ``torch`` to stream."""

    def __init__(self, model: ConvTasNet):
        super().__init__()
        if not model.causal:
            raise ValueError("only a causal separator (norm=cln/channel, causal=True) can be exported for streaming")
        self.model = model
        self.sample_rate = model.sample_rate
        self.num_sources = model.num_sources
        self.delay_samples = model.delay_samples
        self.hop_length = model.hop_length

    @torch.jit.export
    def init_state(self, batch: int) -> List[Tensor]:
        return self.model.init_state(batch)

    def forward(self, mix: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        return self.model.step(mix, state)


def export_separator(model: ConvTasNet, out_dir: str, example_seconds: float = 1.0) -> dict:
    """Write TorchScript artifacts of a separator (eval mode, a copy; the model is left untouched).

    Files: ``separator_offline.pt`` (``forward(mix [B, 1, T]) -> [B, S, T]``), for causal models also
    ``separator_streaming.pt`` (:class:`StreamingSeparator`), and ``separator_export.json`` (rates, delay,
    the max abs difference to eager on a random example). Load them with ``torch.jit.load`` alone.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = copy.deepcopy(model).eval().cpu()
    for p in m.parameters():
        p.requires_grad_(False)
    info: dict = {"sample_rate": m.sample_rate, "num_sources": m.num_sources, "hop_length": m.hop_length,
                  "delay_samples": m.delay_samples, "latency_ms": m.latency_ms, "causal": m.causal,
                  "name": m.name, "files": {}}
    x = torch.randn(1, 1, int(example_seconds * m.sample_rate), generator=torch.Generator().manual_seed(0)) * 0.1

    def _save(mod: torch.jit.ScriptModule, name: str) -> None:
        with atomic_path(out / name) as tmp:
            mod.save(tmp)
        info["files"][name.split(".")[0]] = name

    with torch.no_grad():
        ref = m(x)
        offline = torch.jit.script(m)
        info["offline_max_abs_diff"] = float((offline(x) - ref).abs().max())
        _save(offline, "separator_offline.pt")
        if m.causal:
            streaming = torch.jit.script(StreamingSeparator(m))
            state = streaming.init_state(1)
            ys = []
            padded = torch.cat([x, x.new_zeros(1, 1, m.delay_samples)], -1)
            for i in range(0, padded.shape[-1], 160):
                y, state = streaming(padded[..., i : i + 160], state)
                ys.append(y)
            y = torch.cat(ys, -1)[..., m.delay_samples : m.delay_samples + x.shape[-1]]
            info["streaming_max_abs_diff"] = float((y - ref).abs().max())
            _save(streaming, "separator_streaming.pt")
    atomic_write_text(out / "separator_export.json", json.dumps(info, indent=2) + "\n")
    return info
