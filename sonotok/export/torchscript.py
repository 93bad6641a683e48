"""TorchScript export of a codec: streaming encoder/decoder (state in, state out) and offline codec.

``export_torchscript(codec, out_dir)`` writes::

    encoder_stream.pt   forward(wav [B, C, t], state) -> (codes [B, K, f], state); init_state(batch)
    decoder_stream.pt   forward(codes [B, K, f], state) -> (wav [B, C, f * hop], state); init_state(batch);
                        flush(state) -> wav [B, C, decoder_delay]
    codec.pt            encode(wav [B, C, T]) -> codes [B, K, ceil(T / hop)]; decode(codes) -> wav
    export.json         sample_rate, hop_length, frame_rate, num_codebooks, codebook_size, decoder_delay,
                        latency_ms, state shapes, model_id, files, check results, cost (parameters,
                        MFLOP/s, latency; with ``measure=True`` also ``cost.measured``: the streaming
                        artifact's single-thread real-time factor and concurrent real-time streams at
                        batch 64, measured on this machine, its CPU named)

The streaming modules take a batch of ``B`` independent streams: ``init_state(B)`` gives states with a
batch dimension and stream ``b`` of a batched call gives the codes and audio it gives streamed alone (the
check streams two at once).

The streaming decoder's output lags the decoded signal (``codec.pt``'s ``decode``, = ``Codec.decode``) by
``decoder_delay`` samples: drop the first ``decoder_delay`` samples of a stream and append ``flush(state)``
at its end, and the stream is the decoded signal sample for sample (``sonotok.export.runtime`` does it).
Format version 2 added ``flush`` and ``decoder_delay``.

The artifacts load with ``torch.jit.load`` alone (no sonotok import), on CPU or CUDA
(``map_location``). See ``docs/export.md`` for a plain-Python example.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

import torch
from torch import nn

from sonotok.data.atomic import atomic_path, atomic_write_text
from sonotok.export.runtime import ArtifactCore, measure_modules_speed
from sonotok.export.wrappers import prepare_export, state_shapes
from sonotok.models.codec import StreamingSession
from sonotok.models.cost import codec_cost

FORMAT_VERSION = 2


def codec_metadata(codec: nn.Module, enc_state=None, dec_state=None, model_id: Optional[str] = None) -> Dict[str, object]:
    """The ``export.json`` fields describing the model (shared by TorchScript, torch.export and the offline-only
    export); the streaming fields (delay, latency, state shapes) when the streaming states are given."""
    meta: Dict[str, object] = {
        "format_version": FORMAT_VERSION,
        "model_id": model_id or getattr(codec, "model_id", None) or getattr(codec, "name", "codec"),
        "name": getattr(codec, "name", "codec"),
        "sample_rate": int(codec.sample_rate),
        "channels": int(codec.channels),
        "hop_length": int(codec.hop_length),
        "frame_rate": float(codec.frame_rate),
        "frame_ms": 1000.0 * codec.hop_length / codec.sample_rate,
        "num_codebooks": int(codec.num_codebooks),
        "codebook_size": int(codec.codebook_size),
        "bitrate_bps": float(codec.bitrate()),
    }
    meta["cost"] = codec_cost(codec)  # parameters, MFLOP/s of encoder and decoder, latency
    if enc_state is not None:
        meta.update({
            "decoder_delay": int(codec.decoder_delay),
            "latency_samples": int(codec.latency_samples),
            "latency_ms": float(codec.latency_ms),
            "encoder_state_shapes_batch1": state_shapes(enc_state),
            "decoder_state_shapes_batch1": state_shapes(dec_state),
        })
    meta["torch_version"] = torch.__version__
    return meta


@torch.no_grad()
def check_against_eager(codec: nn.Module, enc, dec, offline, seconds: float = 0.5, seed: int = 0,
                        batch: int = 1) -> Dict[str, float]:
    """Compare exported (scripted or loaded) modules with the eager codec on random audio.

    Streams one frame per call through a :class:`~sonotok.models.codec.StreamingSession` over the exported
    modules (pre-roll dropped, tail flushed, as every caller does), ``batch`` different signals at once
    (one state with a batch dimension). Returns ``batch``, ``codes_equal`` (1.0/0.0),
    ``offline_max_abs_diff`` (exported offline decode vs ``Codec.decode``) and ``stream_max_abs_diff``
    (the whole streamed signal, its last ``decoder_delay`` samples included, vs ``Codec.decode``; ``inf``
    when the lengths differ).
    """
    g = torch.Generator().manual_seed(seed)
    hop = codec.hop_length
    frames = max(2, int(seconds * codec.sample_rate) // hop)
    wav = torch.randn(batch, codec.channels, frames * hop, generator=g) * 0.1
    device = next(codec.parameters()).device
    wav = wav.to(device)
    ref_codes = codec.encode(wav)
    ref_audio = codec.decode(ref_codes)
    off_codes = offline.encode(wav)
    off_audio = offline.decode(off_codes)
    core = ArtifactCore(enc, dec, hop, codec.channels, codec.num_codebooks, int(codec.decoder_delay))
    codes, audio = [], []
    with StreamingSession(core, batch) as session:
        for i in range(0, wav.shape[-1], hop):
            c = session.encode(wav[..., i : i + hop])
            codes.append(c)
            audio.append(session.decode(c))
        c, y = session.flush()
        codes.append(c)
        audio.append(y)
    s_codes, s_audio = torch.cat(codes, -1), torch.cat(audio, -1)
    same = s_audio.shape == ref_audio.shape
    return {
        "batch": float(batch),
        "codes_equal": float(torch.equal(off_codes, ref_codes) and torch.equal(s_codes, ref_codes)),
        "offline_max_abs_diff": float((off_audio - ref_audio).abs().max()),
        "stream_max_abs_diff": float((s_audio - ref_audio).abs().max()) if same else float("inf"),
    }


def _write_json(path: Path, data: Dict[str, object]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def export_torchscript(
    codec: nn.Module, out_dir, model_id: Optional[str] = None, check: bool = True, measure: bool = False
) -> Dict[str, object]:
    """Script and save the streaming encoder/decoder and the offline codec; write ``export.json``.

    Args:
        codec: a causal :class:`~sonotok.models.Codec` (left untouched: a folded, frozen copy is exported).
        out_dir: output directory (created).
        model_id: recorded in ``export.json`` (default ``codec.model_id`` or its name).
        check: reload the saved files and compare them with the eager codec, two streams at once (results
            in ``export.json``).
        measure: time the saved streaming artifact on this machine (frozen and optimized, as
            ``sonotok stream --artifact`` runs it; about two seconds): ``cost.measured`` in ``export.json``
            (:func:`sonotok.export.runtime.measure_streaming_speed`: 1 thread, single-stream real-time factor,
            concurrent real-time streams at batch 64, the CPU's model name).

    Returns:
        the ``export.json`` content.

    Raises:
        SonotokError: the codec cannot be exported (not causal, e.g. X-Codec); nothing is written.
    """
    out, was_training, enc, dec, offline = prepare_export(codec, out_dir)
    files = {"encoder_stream": "encoder_stream.pt", "decoder_stream": "decoder_stream.pt", "codec": "codec.pt"}
    for key, module in (("encoder_stream", enc), ("decoder_stream", dec), ("codec", offline)):
        scripted = torch.jit.script(module)
        with atomic_path(out / files[key]) as tmp:
            scripted.save(tmp)
    meta = codec_metadata(codec, enc.init_state(1), dec.init_state(1), model_id)
    meta["torchscript"] = files
    loaded = [torch.jit.load(str(out / files[k]), map_location="cpu") for k in files] if check or measure else []
    if check:
        cpu_codec = codec if next(codec.parameters()).device.type == "cpu" else None
        if cpu_codec is not None:
            meta["torchscript_check"] = check_against_eager(cpu_codec, *loaded, batch=2)
    if measure:
        # the saved files, on CPU, as `sonotok stream --artifact` runs them
        meta["cost"]["measured"] = measure_modules_speed(loaded[0], loaded[1], codec.hop_length, codec.sample_rate,
                                                         codec.channels)
    path = out / "export.json"
    if path.exists():  # keep torch.export entries written earlier
        old = json.loads(path.read_text())
        for k in ("torch_export", "torch_export_check"):
            if k in old:
                meta[k] = old[k]
    _write_json(path, meta)
    codec.train(was_training)
    return meta
