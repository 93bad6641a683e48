"""``torch.export`` programs of the same inference modules as the TorchScript artifact.

``export_programs(codec, out_dir)`` writes (``torch.export.save``)::

    encoder_stream.pt2  (wav [B, C, hop], state) -> (codes [B, K, 1], state)      one frame per call
    decoder_stream.pt2  (codes [B, K, 1], state) -> (wav [B, C, hop], state)      one frame per call
    encode.pt2          wav [B, C, n * hop] -> codes [B, K, n]                     n dynamic, n >= 2
    decode.pt2          codes [B, K, n] -> wav [B, C, n * hop]                     n dynamic, n >= 2
    decoder_flush.pt2   (state) -> wav [B, C, decoder_delay]        only when the decoder has a delay

Load with ``torch.export.load(path).module()`` (plain torch). As with the TorchScript artifact, the
streaming decoder's output lags the decoded signal (``decode.pt2``) by ``decoder_delay`` samples: drop the
first ``decoder_delay`` samples of a stream and append ``decoder_flush.pt2`` of the final state.

Why the streaming programs take exactly one frame per call:

* the state of a strided convolution holds the inputs not yet consumed, so its *shape* depends on
  the chunk length modulo the stride; an exported program has one set of state shapes, which holds
  only when every chunk is a whole number of frames;
* ``torch.export`` specializes a dynamic size of 1 (the "0/1 specialization": a program traced with
  ``n`` frames symbolic guards ``n != 1``, and ``backed_size_oblivious`` fails inside the conv
  shape checks), so one program cannot serve both one-frame and multi-frame chunks.

One frame per call is the real-time case (lowest latency), so that is what is exported; callers
buffer audio into ``hop_length`` samples (see ``docs/export.md``). The TorchScript streaming
modules take any chunk size. The offline programs are dynamic over ``n >= 2`` frames (zero-pad
the end to whole frames first; ``codec.pt`` pads for you). Batch size is fixed at export (1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.export import Dim

from sonotok.data.atomic import atomic_path, atomic_write_text
from sonotok.export.torchscript import check_against_eager, codec_metadata
from sonotok.export.wrappers import OfflineCodec, prepare_export


class _Encode(nn.Module):
    def __init__(self, offline: OfflineCodec):
        super().__init__()
        self.offline = offline

    def forward(self, wav: Tensor) -> Tensor:
        return self.offline.quantizer.encode(self.offline.encoder(wav))


class _Decode(nn.Module):
    def __init__(self, offline: OfflineCodec):
        super().__init__()
        self.offline = offline

    def forward(self, codes: Tensor) -> Tensor:
        return self.offline.decode(codes)


class _Flush(nn.Module):
    def __init__(self, dec: nn.Module):
        super().__init__()
        self.dec = dec

    def forward(self, state: List[Tensor]) -> Tensor:
        return self.dec.flush(state).clone()


class _LoadedStream:
    """Adapter giving a loaded streaming program the ``init_state`` (and ``flush``) of the TorchScript modules."""

    def __init__(self, module, shapes: List[List[int]], dtype=torch.float32, flush=None, dtypes=None):
        self.module = module
        self.shapes = shapes
        # per-tensor dtypes when a state holds counters (an imported Mimi's positions are int64)
        self.dtypes = list(dtypes) if dtypes is not None else [dtype] * len(shapes)
        if flush is not None:
            self.flush = flush

    def init_state(self, batch: int) -> List[Tensor]:
        return [torch.zeros([batch] + s[1:], dtype=d) for s, d in zip(self.shapes, self.dtypes)]

    def __call__(self, x, state):
        return self.module(x, state)


def _save(ep, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.export.save(ep, tmp)


@torch.no_grad()
def export_programs(
    codec: nn.Module,
    out_dir,
    batch: int = 1,
    max_frames: int = 1 << 16,
    model_id: Optional[str] = None,
    check: bool = True,
) -> Dict[str, object]:
    """Export the streaming encoder/decoder and offline encode/decode with ``torch.export``.

    Args:
        codec: a causal codec (a folded, frozen copy is exported; the codec is left untouched).
        out_dir: output directory (``export.json`` is created or updated).
        batch: batch size baked into the programs.
        max_frames: upper bound of the dynamic frame dimension.
        model_id: recorded in ``export.json``.
        check: reload the programs and compare them with the eager codec.

    Returns:
        the ``export.json`` content.

    Raises:
        SonotokError: the codec cannot be exported (not causal, e.g. X-Codec); nothing is written.
    """
    out, was_training, enc, dec, offline = prepare_export(codec, out_dir)
    hop, k, ch = codec.hop_length, codec.num_codebooks, codec.channels
    es, ds = enc.init_state(batch), dec.init_state(batch)
    n = Dim("frames", min=2, max=max_frames)
    specs: List[Tuple[str, nn.Module, tuple, object]] = [
        ("encoder_stream", enc, (torch.zeros(batch, ch, hop), es), None),
        ("decoder_stream", dec, (torch.zeros(batch, k, 1, dtype=torch.long), ds), None),
        ("encode", _Encode(offline), (torch.zeros(batch, ch, 2 * hop),), ({2: hop * n},)),
        ("decode", _Decode(offline), (torch.zeros(batch, k, 2, dtype=torch.long),), ({2: n},)),
    ]
    if dec.delay:
        specs.append(("decoder_flush", _Flush(dec), (ds,), None))
    files = {}
    for name, module, args, dyn in specs:
        ep = torch.export.export(module, args, dynamic_shapes=dyn, strict=False)
        files[name] = f"{name}.pt2"
        _save(ep, out / files[name])
    path = out / "export.json"
    meta = json.loads(path.read_text()) if path.exists() else codec_metadata(codec, es, ds, model_id)
    meta["torch_export"] = {
        **files,
        "batch": batch,
        "stream_chunk": "exactly one frame per call: encoder wav [B, C, hop_length], decoder codes [B, K, 1]",
        "decoder_delay": int(dec.delay),
        "offline_frames": "encode/decode: n >= 2 whole frames (zero-pad the end to a multiple of hop_length)",
        "encoder_state_shapes": [list(s.shape) for s in es],
        "decoder_state_shapes": [list(s.shape) for s in ds],
    }
    if check and batch == 1 and next(codec.parameters()).device.type == "cpu":
        loaded = {key: torch.export.load(str(out / f)).module() for key, f in files.items()}
        enc_l = _LoadedStream(loaded["encoder_stream"], [list(s.shape) for s in es], dtypes=[s.dtype for s in es])
        dec_l = _LoadedStream(loaded["decoder_stream"], [list(s.shape) for s in ds], flush=loaded.get("decoder_flush"),
                              dtypes=[s.dtype for s in ds])

        class _Off:
            def encode(self, wav):
                return loaded["encode"](wav)

            def decode(self, codes):
                return loaded["decode"](codes)

        meta["torch_export_check"] = check_against_eager(codec, enc_l, dec_l, _Off())
    atomic_write_text(path, json.dumps(meta, indent=2) + "\n")
    codec.train(was_training)
    return meta
