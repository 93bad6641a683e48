"""Runtime for streaming: run an exported (or eager) codec through one streaming session, chunk by chunk.

* :class:`ArtifactCore` gives loaded streaming modules (TorchScript ``encoder_stream.pt`` /
  ``decoder_stream.pt``, or ``torch.export`` programs behind the same calls) the streaming core of a
  :class:`~sonotok.models.codec.Codec`, so the same
  :class:`~sonotok.models.codec.StreamingSession` aligns the decoder's delay for both.
* :class:`StreamRunner` holds one stream, or ``batch`` independent streams advancing together (one state
  with a batch dimension), eager (a codec) or TorchScript (an export directory): ``step(chunk) -> (codes,
  audio)`` then ``flush()``; the audio is the decoded signal (``Codec.decode`` of the codes), in order,
  sample for sample, each stream the same as if it were streamed alone.
* :func:`stream_audio` is the streaming loop of ``sonotok stream``: warm-up, chunking, optional real-time
  pacing, per-chunk timing, the flush at the end, and a report (:class:`StreamResult`).
* :func:`file_chunks` / :func:`pcm_chunks` cut an audio file or raw PCM (stdin) into chunks;
  :func:`optimize_for_cpu` freezes and pre-packs a scripted artifact for CPU inference.
* :func:`time_batched_steps` and :func:`measure_streaming_speed` time the artifact on this machine: the
  single-stream real-time factor, and how many concurrent real-time streams one thread carries when ``B``
  streams are stepped together (``export.json``, ``sonotok eval``, ``bench/streaming.py``);
  :func:`measure_artifact_speed` / :func:`measure_modules_speed` / :func:`measure_codec_speed` run them on
  an export directory / loaded modules / a codec.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import torch
from torch import Tensor

from sonotok.errors import SonotokError
from sonotok.models.codec import StreamingSession


def algorithmic_latency_samples(chunk: int, hop: int, decoder_delay: int = 0) -> int:
    """Worst-case algorithmic latency in samples for chunks of ``chunk`` samples and frames of ``hop``."""
    return hop + decoder_delay + chunk - math.gcd(chunk, hop)


def summarize_times(times_s: List[float]) -> Dict[str, float]:
    """Mean, p95 and max of per-chunk compute times, in ms."""
    if not times_s:
        return {"mean_ms": 0.0, "p95_ms": 0.0, "max_ms": 0.0}
    ms = sorted(1000.0 * t for t in times_s)
    p95 = ms[min(len(ms) - 1, max(0, math.ceil(0.95 * len(ms)) - 1))]
    return {"mean_ms": sum(ms) / len(ms), "p95_ms": p95, "max_ms": ms[-1]}


def _has_method(module, name: str) -> bool:
    try:
        return callable(getattr(module, name))
    except (AttributeError, RuntimeError):
        return False


def optimize_for_cpu(module):
    """``torch.jit.freeze`` + ``torch.jit.optimize_for_inference`` of a streaming artifact (keeps ``init_state``
    and, on a decoder, ``flush``).

    Folds the weights into the graph and pre-packs them for oneDNN: about 1.2-1.3x less compute per
    20 ms frame on CPU (bench/streaming.py), outputs equal within float tolerance.
    """
    methods = [m for m in ("init_state", "flush") if _has_method(module, m)]
    frozen = torch.jit.freeze(module.eval(), preserved_attrs=methods)
    return torch.jit.optimize_for_inference(frozen, other_methods=methods)


def _check_batch(batch) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch={batch!r}: the number of streams must be an integer >= 1")
    return batch


class ArtifactCore:
    """The streaming core of exported modules, as :class:`~sonotok.models.codec.StreamingSession` wants it.

    Args:
        encoder: ``forward(wav [B, C, t], state) -> (codes, state)`` and ``init_state(batch)``.
        decoder: ``forward(codes [B, K, f], state) -> (wav, state)``, ``init_state(batch)`` and, when
            ``decoder_delay > 0``, ``flush(state) -> wav [B, C, decoder_delay]``.
        hop_length, channels, num_codebooks, decoder_delay: from ``export.json``.
    """

    def __init__(self, encoder, decoder, hop_length: int, channels: int, num_codebooks: int,
                 decoder_delay: int = 0):
        self.encoder, self.decoder = encoder, decoder
        self.hop_length, self.channels = int(hop_length), int(channels)
        self.num_codebooks, self.decoder_delay = int(num_codebooks), int(decoder_delay)
        if self.decoder_delay and not _has_method(decoder, "flush"):
            raise ValueError(f"the decoder has a delay of {self.decoder_delay} samples but no flush(state) "
                             "method (exported by an older sonotok): re-export the model with `sonotok export`")

    def init_state(self, batch: int) -> Tuple[List[Tensor], List[Tensor]]:
        return self.encoder.init_state(batch), self.decoder.init_state(batch)

    def encode_step(self, wav: Tensor, state: List[Tensor]):
        return self.encoder(wav, state)

    def decode_step(self, codes: Tensor, state: List[Tensor]):
        return self.decoder(codes, state)

    def decode_flush(self, state: List[Tensor]) -> Tensor:
        return self.decoder.flush(state)


class StreamRunner:
    """``batch`` streams (default one) through a codec, eager (``model``: a model directory, shipped name,
    checkpoint or a loaded Codec) or TorchScript (``artifact``: an export directory).

    ``step(chunk [B, C, t]) -> (codes [B, K, f], audio [B, C, n])`` and, at the end, ``flush()``: the codes
    are those of ``Codec.encode`` and the audio is the decoded signal, in order (the decoder's pre-roll is
    dropped and its tail flushed by one :class:`~sonotok.models.codec.StreamingSession`). The ``B`` streams
    are independent (stream ``b`` gives the codes and audio it gives streamed alone) but advance together:
    every call takes the same number of samples of each, and ``reset(batch)`` starts ``batch`` new ones.
    """

    def __init__(self, model: "str | torch.nn.Module | None" = None, artifact: str | None = None,
                 device: str = "cpu", optimize: bool = True, batch: int = 1):
        self.device = torch.device(device)
        self.batch = _check_batch(batch)
        if artifact is not None:
            art = Path(artifact)
            meta_path = art / "export.json"
            if not meta_path.is_file():
                raise FileNotFoundError(f"{meta_path}: missing (run `sonotok export --model M --out {art}`)")
            meta = json.loads(meta_path.read_text())
            self.enc = torch.jit.load(str(art / "encoder_stream.pt"), map_location=self.device)
            self.dec = torch.jit.load(str(art / "decoder_stream.pt"), map_location=self.device)
            self.optimized = False
            if optimize and self.device.type == "cpu":
                self.enc, self.dec = optimize_for_cpu(self.enc), optimize_for_cpu(self.dec)
                self.optimized = True
            self.sample_rate = int(meta["sample_rate"])
            self.hop = int(meta["hop_length"])
            self.channels = int(meta["channels"])
            self.decoder_delay = int(meta.get("decoder_delay", int(meta["latency_samples"]) - self.hop))
            self.model_id = meta.get("model_id")
            self.kind = "torchscript (frozen, optimized)" if self.optimized else "torchscript"
            try:
                self.core: Any = ArtifactCore(self.enc, self.dec, self.hop, self.channels,
                                              int(meta["num_codebooks"]), self.decoder_delay)
            except ValueError as e:
                raise ValueError(f"{art}: {e}") from None
        else:
            if isinstance(model, torch.nn.Module):
                codec = model.to(self.device).eval()
            else:
                from sonotok.model_io import load_model

                codec = load_model(model, map_location=self.device)
            if not getattr(codec, "causal", True):
                raise SonotokError(f"{getattr(codec, 'name', model)}: {type(codec).__name__} is not causal (its "
                                   "encoder sees the whole input), so it cannot stream; use encode()/decode()")
            self.codec = codec
            self.sample_rate, self.hop, self.channels = codec.sample_rate, codec.hop_length, codec.channels
            self.decoder_delay = int(codec.decoder_delay)
            self.model_id = getattr(codec, "model_id", None)
            self.kind = "eager"
            self.core = codec
        self.reset()

    def reset(self, batch: Optional[int] = None) -> None:
        """Fresh streaming state: the start of ``batch`` new streams (default: as many as before)."""
        if batch is not None:
            self.batch = _check_batch(batch)
        self.session = StreamingSession(self.core, self.batch)

    def step(self, chunk: Tensor) -> Tuple[Tensor, Tensor]:
        """``chunk [B, C, t]`` -> ``(codes [B, K, f], audio [B, C, n])``: the frames completed by the chunk and
        the next samples of the decoded signal, per stream.

        Raises:
            ValueError: ``chunk`` is not ``[batch, channels, t]``.
        """
        if chunk.dim() != 3 or chunk.shape[0] != self.batch or chunk.shape[1] != self.channels:
            raise ValueError(f"chunk of shape {list(chunk.shape)}: expected [batch={self.batch}, "
                             f"channels={self.channels}, samples] (reset(batch) changes the number of streams)")
        with torch.inference_mode():
            codes = self.session.encode(chunk.to(self.device))
            audio = self.session.decode(codes)
        return codes, audio

    def flush(self) -> Tuple[Tensor, Tensor]:
        """End the stream: the last (zero-padded) frame's codes and the rest of the decoded signal."""
        with torch.inference_mode():
            return self.session.flush()


@dataclass
class StreamResult:
    """What :func:`stream_audio` returns: codes ``[K, F]``, audio ``[C, num_samples]`` and timings."""

    codes: Tensor
    audio: Tensor
    num_samples: int
    sample_rate: int
    hop_length: int
    decoder_delay: int
    chunk_samples: int
    times_s: List[float] = field(default_factory=list)
    backend: str = "eager"
    model_id: Optional[str] = None

    def report(self) -> Dict[str, Any]:
        """Per-chunk compute (mean/p95/max), real-time factor and algorithmic latency, as a dict."""
        sr, hop = self.sample_rate, self.hop_length
        stats = summarize_times(self.times_s)
        audio_s = self.num_samples / sr
        compute_s = sum(self.times_s)
        lat = algorithmic_latency_samples(self.chunk_samples, hop, self.decoder_delay)
        return {
            "backend": self.backend,
            "model_id": self.model_id,
            "sample_rate": sr,
            "chunk_samples": self.chunk_samples,
            "chunk_ms": 1000.0 * self.chunk_samples / sr,
            "frame_ms": 1000.0 * hop / sr,
            "chunks": len(self.times_s),
            "audio_s": audio_s,
            "compute_ms": stats,
            "rtf": compute_s / audio_s,
            "x_realtime": audio_s / compute_s if compute_s > 0 else float("inf"),
            "algorithmic_latency_ms": 1000.0 * lat / sr,
            "model_latency_ms": 1000.0 * (hop + self.decoder_delay) / sr,
            "latency_plus_p95_compute_ms": 1000.0 * lat / sr + stats["p95_ms"],
            "frames": int(self.codes.shape[-1]),
        }


def stream_audio(runner: StreamRunner, chunks: Iterable[Tensor], chunk_samples: int, realtime: bool = False,
                 on_audio: Optional[Callable[[Tensor], None]] = None, warmup: int = 3) -> StreamResult:
    """Stream ``chunks`` (``[1, C, t]`` each, at the model's rate) through ``runner``: encode and decode.

    The runner is warmed up on ``warmup`` frames of silence with a throwaway state (the first calls of a
    scripted module are slow), then reset. Each chunk's compute is timed (``realtime`` paces the chunks
    at wall-clock speed, as a live input would). At the end the stream is flushed: the last partial frame is
    zero-padded (as ``Codec.encode`` pads) and the decoder's last ``decoder_delay`` samples are emitted.

    Args:
        runner: a :class:`StreamRunner`.
        chunks: audio chunks (the last may be shorter).
        chunk_samples: the nominal chunk size (for the latency report).
        realtime: sleep until each chunk is due.
        on_audio: called with each piece of decoded audio ``[1, C, n]`` as soon as it exists (the pieces
            concatenate to exactly the input length, time-aligned with the input).
        warmup: warm-up frames.

    Returns:
        :class:`StreamResult`: ``codes [K, ceil(T / hop)]`` (= ``Codec.encode``), ``audio [C, T]``
        (= ``Codec.decode(codes)[..., :T]``), the per-chunk times.

    Raises:
        ValueError: no audio in ``chunks``, or ``runner`` holds more than one stream.
    """
    if runner.batch != 1:
        raise ValueError(f"stream_audio streams one signal; the runner holds {runner.batch} streams "
                         "(call runner.reset(1), or step the batch with runner.step)")
    for _ in range(warmup):
        runner.step(torch.zeros(1, runner.channels, runner.hop))
    runner.reset()
    times: List[float] = []
    codes_all: List[Tensor] = []
    audio_all: List[Tensor] = []
    total = 0
    emitted = 0

    def emit(audio: Tensor) -> None:
        nonlocal emitted
        audio = audio[..., : max(0, total - emitted)]  # the flushed frame's zero padding is not output
        emitted += audio.shape[-1]
        audio = audio.cpu()
        audio_all.append(audio)
        if on_audio is not None and audio.shape[-1]:
            on_audio(audio)

    start = time.perf_counter()
    for x in chunks:
        total += x.shape[-1]
        if realtime:
            wait = start + total / runner.sample_rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        t0 = time.perf_counter()
        codes, audio = runner.step(x)
        if audio.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        codes_all.append(codes.cpu())
        emit(audio)
    if total == 0:
        raise ValueError("no input audio")
    codes, audio = runner.flush()
    codes_all.append(codes.cpu())
    emit(audio)
    return StreamResult(
        codes=torch.cat(codes_all, -1)[0], audio=torch.cat(audio_all, -1)[0], num_samples=total,
        sample_rate=runner.sample_rate, hop_length=runner.hop, decoder_delay=runner.decoder_delay,
        chunk_samples=int(chunk_samples), times_s=times, backend=runner.kind, model_id=runner.model_id,
    )


def file_chunks(path: str, sample_rate: int, channels: int, chunk: int) -> Iterator[Tensor]:
    """An audio file (resampled to ``sample_rate``; downmixed when ``channels == 1``) in ``[1, C, chunk]`` pieces.

    Raises:
        AudioError: the file cannot be read as audio (names it).
    """
    from sonotok.data.audio import load_audio

    wav = load_audio(path, sample_rate=sample_rate, channels="downmix" if channels == 1 else "keep")
    for i in range(0, wav.shape[-1], chunk):
        yield wav[None, :, i : i + chunk]


def _read_exact(stream, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        part = stream.read(n - len(buf))
        if not part:
            break
        buf += part
    return buf


def pcm_chunks(stream, chunk: int, fmt: str = "s16le", in_channels: int = 1, channels: int = 1) -> Iterator[Tensor]:
    """Raw interleaved PCM (``s16le`` or ``f32le``, ``in_channels``) from a binary stream, in ``[1, C, chunk]``
    pieces (downmixed to ``channels``); ends at end of stream (a trailing partial sample frame is dropped)."""
    import numpy as np

    if fmt not in ("s16le", "f32le"):
        raise ValueError(f"unknown PCM format {fmt!r}: expected 's16le' or 'f32le'")
    width = 2 if fmt == "s16le" else 4
    dtype = np.int16 if fmt == "s16le" else np.float32
    frame_bytes = width * in_channels
    while True:
        data = _read_exact(stream, chunk * frame_bytes)
        data = data[: len(data) - len(data) % frame_bytes]
        if not data:
            return
        x = np.frombuffer(data, dtype=dtype).astype(np.float32)
        if dtype == np.int16:
            x = x / 32768.0
        x = torch.from_numpy(x.reshape(-1, in_channels).T.copy())
        if x.shape[0] != channels:
            x = x.mean(0, keepdim=True).expand(channels, -1)
        yield x[None]


def to_pcm16(audio: Tensor) -> bytes:
    """``[1, C, n]`` float audio -> interleaved s16le bytes (clipped to [-1, 1])."""
    return (audio[0].clamp(-1, 1) * 32767).round().short().T.contiguous().cpu().numpy().tobytes()


# ----------------------------------------------------------------------------------- speed on this machine
def cpu_model_name() -> str:
    """This machine's CPU model (``model name`` in ``/proc/cpuinfo``; else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in ("model name", "cpu model", "hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_label(threads: int) -> Dict[str, Any]:
    """Where a speed figure was measured: CPU model, core count, torch threads, torch version, load, date."""
    try:
        load: Optional[float] = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    return {"cpu": cpu_model_name(), "cpu_count": os.cpu_count(), "threads": int(threads),
            "torch": torch.__version__, "load_average_1min": load, "date": time.strftime("%Y-%m-%d %H:%M:%S")}


class _torch_threads:
    """Run a block with ``torch.set_num_threads(n)``, restoring the previous count afterwards."""

    def __init__(self, n: int):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"threads={n!r}: expected an integer >= 1")
        self.n = n

    def __enter__(self):
        self.before = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


def _noise_frames(count: int, batch: int, channels: int, hop: int, seed: int) -> List[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, channels, hop, generator=g) * 0.1 for _ in range(count)]


def _step_stats(times_s: List[float], batch: int, frame_ms: float) -> Dict[str, Any]:
    ms = sorted(1000.0 * t for t in times_s)
    mean, median = statistics.fmean(ms), statistics.median(ms)
    return {
        "batch": batch,
        "steps": len(ms),
        "frame_ms": frame_ms,
        "step_ms": {"mean_ms": mean, "median_ms": median,
                    "p95_ms": ms[min(len(ms) - 1, max(0, math.ceil(0.95 * len(ms)) - 1))], "max_ms": ms[-1]},
        # throughput: streams whose frames one step serves, per frame duration of wall time
        "concurrent_realtime_streams": batch * frame_ms / mean,
        "concurrent_realtime_streams_median": batch * frame_ms / median,
    }


@torch.inference_mode()
def time_batched_steps(encoder, decoder, hop_length: int, sample_rate: int, channels: int, batch: int,
                       steps: int = 20, warmup: int = 3, seed: int = 0,
                       budget_s: Optional[float] = None) -> Dict[str, Any]:
    """Wall time of stepping ``batch`` independent streams together, one frame each per step.

    Each step encodes one frame (``hop_length`` samples of noise) of every stream and decodes the codes,
    through one state with a batch dimension, as a server carrying ``batch`` calls does once per frame.
    ``concurrent_realtime_streams = batch * frame_ms / mean step time``: how many streams this runs in
    real time on the current torch threads (``_median``: from the median step, less sensitive to load).

    Args:
        encoder, decoder: streaming modules (``forward(x, state) -> (y, state)``, ``init_state(batch)``), e.g.
            a loaded ``encoder_stream.pt`` / ``decoder_stream.pt``.
        hop_length, sample_rate, channels: from ``export.json``.
        batch: streams stepped together.
        steps: timed steps (after ``warmup`` untimed ones on the same state).
        budget_s: stop early once the timed steps took this long (at least 2 steps are timed).

    Returns:
        ``{"batch", "steps", "frame_ms", "step_ms": {mean_ms, median_ms, p95_ms, max_ms},
        "concurrent_realtime_streams", "concurrent_realtime_streams_median"}``.
    """
    _check_batch(batch)
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps={steps}, warmup={warmup}: expected steps >= 1 and warmup >= 0")
    frames = _noise_frames(min(steps + warmup, 8), batch, channels, int(hop_length), seed)
    es, ds = encoder.init_state(batch), decoder.init_state(batch)
    times: List[float] = []
    for i in range(warmup + steps):
        x = frames[i % len(frames)]
        t0 = time.perf_counter()
        codes, es = encoder(x, es)
        _, ds = decoder(codes, ds)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            if budget_s is not None and len(times) >= 2 and sum(times) > budget_s:
                break
    return _step_stats(times, batch, 1000.0 * hop_length / sample_rate)


@torch.inference_mode()
def _single_stream(encoder, decoder, hop: int, sample_rate: int, channels: int, seconds: float, warmup: int,
                   seed: int, budget_s: Optional[float]) -> Dict[str, Any]:
    n = max(1, int(round(seconds * sample_rate / hop)))
    frames = _noise_frames(n, 1, channels, hop, seed)
    es, ds = encoder.init_state(1), decoder.init_state(1)
    for x in frames[:warmup]:  # the first calls of a scripted module are slow; a throwaway state
        c, es = encoder(x, es)
        _, ds = decoder(c, ds)
    es, ds = encoder.init_state(1), decoder.init_state(1)
    times: List[float] = []
    for x in frames:
        t0 = time.perf_counter()
        c, es = encoder(x, es)
        _, ds = decoder(c, ds)
        times.append(time.perf_counter() - t0)
        if budget_s is not None and len(times) >= 10 and sum(times) > budget_s:
            break  # a slow model: fewer frames, the same figure
    n = len(times)
    audio_s = n * hop / sample_rate
    compute_s = sum(times)
    return {"audio_s": audio_s, "compute_s": compute_s, "frames": n, "frame_compute_ms": summarize_times(times),
            "rtf": compute_s / audio_s, "x_realtime": audio_s / compute_s if compute_s > 0 else float("inf")}


def measure_streaming_speed(encoder, decoder, hop_length: int, sample_rate: int, channels: int,
                            seconds: float = 2.0, batch: int = 64, batch_steps: int = 8, threads: int = 1,
                            warmup: int = 5, seed: int = 0, budget_s: Optional[float] = 2.0) -> Dict[str, Any]:
    """The streaming artifact's speed on this machine, on ``threads`` torch threads (default 1).

    * single stream: ``seconds`` of noise, one frame per call (encode + decode), after ``warmup`` frames on a
      throwaway state: ``rtf`` = compute time / audio duration (< 1: faster than real time), ``x_realtime`` its
      inverse, per-frame compute (mean / p95 / max);
    * ``batch`` streams stepped together (:func:`time_batched_steps`, ``batch_steps`` steps):
      ``concurrent_realtime_streams`` that one machine's ``threads`` carry at that batch.

    A large model stops early: each part ends once its timed calls took ``budget_s`` (default 2 s; ``None``:
    no limit), after at least 10 frames / 2 steps, so an export stays cheap; ``frames`` / ``batch_steps``
    say how many were timed.

    The figures depend on the machine and its load: ``measured_on`` names the CPU, the threads and the load.

    Returns:
        ``{"measured_on", "threads", "rtf", "x_realtime", "audio_s", "compute_s", "frames",
        "frame_compute_ms", "batch", "batch_step_ms", "concurrent_realtime_streams", "note"}``.
    """
    if seconds <= 0:
        raise ValueError(f"seconds={seconds}: expected > 0")
    hop, sr, ch = int(hop_length), int(sample_rate), int(channels)
    with _torch_threads(threads):
        single = _single_stream(encoder, decoder, hop, sr, ch, seconds, warmup, seed, budget_s)
        batched = time_batched_steps(encoder, decoder, hop, sr, ch, batch, steps=batch_steps,
                                     warmup=min(warmup, 2), seed=seed + 1, budget_s=budget_s)
    return {
        "measured_on": machine_label(threads),
        "threads": int(threads),
        **single,
        "batch": batched["batch"],
        "batch_steps": batched["steps"],
        "batch_step_ms": batched["step_ms"],
        "concurrent_realtime_streams": batched["concurrent_realtime_streams"],
        "concurrent_realtime_streams_median": batched["concurrent_realtime_streams_median"],
        "note": f"measured on this machine ({cpu_model_name()}, {threads} torch thread(s), its load at the time): "
                "streaming artifact, encode + decode of one frame per call on noise; rtf = compute / audio "
                f"duration; concurrent_realtime_streams = {batched['batch']} streams stepped together x frame "
                "duration / mean step time",
    }


def measure_artifact_speed(artifact, optimize: bool = True, **kwargs) -> Dict[str, Any]:
    """:func:`measure_streaming_speed` of an export directory's ``encoder_stream.pt`` / ``decoder_stream.pt``,
    frozen and optimized as ``sonotok stream --artifact`` runs them (``optimize=False``: as saved).

    Raises:
        FileNotFoundError: ``export.json`` or a streaming artifact is missing (names it).
    """
    art = Path(artifact)
    paths = [art / "export.json", art / "encoder_stream.pt", art / "decoder_stream.pt"]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (run `sonotok export --model M --out {art}`)")
    meta = json.loads(paths[0].read_text())
    enc = torch.jit.load(str(paths[1]), map_location="cpu")
    dec = torch.jit.load(str(paths[2]), map_location="cpu")
    return measure_modules_speed(enc, dec, meta["hop_length"], meta["sample_rate"], meta["channels"], optimize,
                                 **kwargs)


def measure_codec_speed(codec, optimize: bool = True, **kwargs) -> Dict[str, Any]:
    """:func:`measure_streaming_speed` of ``codec``'s streaming artifact, scripted in memory (on CPU), frozen
    and optimized as ``sonotok stream --artifact`` runs it; ``codec`` is left untouched.

    Raises:
        SonotokError: ``codec`` has no streaming artifact (not causal, offline only, or no streaming
            encoder / quantizer / decoder).
    """
    from sonotok.export.wrappers import build_export_modules, check_exportable

    name = getattr(codec, "name", type(codec).__name__)
    check_exportable(codec)
    if getattr(codec, "streamable", True) is False:
        raise SonotokError(f"{name} is offline only (streamable = False): there is no streaming artifact to time")
    if not all(hasattr(getattr(codec, part, None), attr) for part, attr in
               (("encoder", "step"), ("quantizer", "to_frozen"), ("decoder", "step"))):
        raise SonotokError(f"{name} ({type(codec).__name__}) has no streaming encoder / quantizer / decoder "
                           "(encoder.step, quantizer.to_frozen, decoder.step): there is no streaming artifact to time")
    was_training = codec.training
    codec.eval()
    try:
        enc, dec, _ = build_export_modules(codec)
    finally:
        codec.train(was_training)
    enc, dec = torch.jit.script(enc.cpu()), torch.jit.script(dec.cpu())
    return measure_modules_speed(enc, dec, codec.hop_length, codec.sample_rate, codec.channels, optimize, **kwargs)


def measure_modules_speed(enc, dec, hop_length: int, sample_rate: int, channels: int, optimize: bool = True,
                          **kwargs) -> Dict[str, Any]:
    """:func:`measure_streaming_speed` of scripted (or loaded) streaming modules, first frozen and optimized
    (:func:`optimize_for_cpu`) unless ``optimize=False``; ``backend`` says which."""
    if optimize:
        enc, dec = optimize_for_cpu(enc), optimize_for_cpu(dec)
    out = measure_streaming_speed(enc, dec, int(hop_length), int(sample_rate), int(channels), **kwargs)
    out["backend"] = "torchscript (frozen, optimized)" if optimize else "torchscript"
    return out
