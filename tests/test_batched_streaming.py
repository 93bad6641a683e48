"""Batched streaming (B independent streams, one state with a batch dimension) and the measured speed that
``export.json`` and ``sonotok eval`` report (single-thread real-time factor, concurrent real-time streams)."""

import argparse
import json
import time

import pytest
import soundfile as sf
import torch

import sonotok
from sonotok.export.runtime import (
    ArtifactCore,
    StreamRunner,
    cpu_model_name,
    measure_codec_speed,
    measure_streaming_speed,
    stream_audio,
    time_batched_steps,
)
from sonotok.export.torchscript import export_torchscript
from sonotok.models.codec import Codec, StreamingSession
from sonotok.modules.seanet import SEANetDecoder, SEANetEncoder
from sonotok.modules.stft_convnext import STFTConvNeXtEncoder, VocosDecoder
from sonotok.quantizers import FSQ
from sonotok.quantizers.rvq import ResidualVQ


def seanet_codec():
    """Causal conv codec, hop 8, no decoder delay."""
    torch.manual_seed(0)
    return Codec(SEANetEncoder(1, 16, 4, (2, 4), (1, 3)), ResidualVQ(16, 2, 32, kmeans_init=False),
                 SEANetDecoder(1, 16, 4, (2, 4), (1, 3)), name="seanet-tiny").eval()


def stft_codec():
    """The shipped default's architecture (STFT/ConvNeXt encoder, FSQ, Vocos decoder with a delay), tiny."""
    torch.manual_seed(0)
    enc = STFTConvNeXtEncoder(dimension=8, width=16, n_fft=64, stft_hop=16, stride=2, num_blocks=1,
                              num_post_blocks=1, mlp_ratio=2.0)
    dec = VocosDecoder(dimension=8, width=16, n_fft=64, stft_hop=16, stride=2, num_pre_blocks=1, num_blocks=1,
                       mlp_ratio=2.0)
    return Codec(enc, FSQ(dim=8, levels=[5, 5], num_codebooks=4), dec, sample_rate=16000,
                 decoder_delay=dec.delay, name="stft-tiny").eval()


def stream(core, wav, chunk):
    """Stream ``wav [B, C, T]`` through one session of ``core`` (batch B): all codes, all audio."""
    codes, audio = [], []
    with torch.inference_mode(), StreamingSession(core, wav.shape[0]) as s:
        for i in range(0, wav.shape[-1], chunk):
            c = s.encode(wav[..., i : i + chunk])
            codes.append(c)
            audio.append(s.decode(c))
        c, y = s.flush()
    return torch.cat(codes + [c], -1), torch.cat(audio + [y], -1)


def loaded_core(art, codec):
    enc = torch.jit.load(str(art / "encoder_stream.pt"))
    dec = torch.jit.load(str(art / "decoder_stream.pt"))
    return ArtifactCore(enc, dec, codec.hop_length, codec.channels, codec.num_codebooks, int(codec.decoder_delay))


@pytest.mark.parametrize("make", [seanet_codec, stft_codec], ids=["seanet", "stft_vocos"])
def test_batched_artifact_streams_equal_each_stream_alone_and_offline(make, tmp_path):
    codec = make()
    export_torchscript(codec, tmp_path, check=False)
    core = loaded_core(tmp_path, codec)
    offline = torch.jit.load(str(tmp_path / "codec.pt"))
    hop, batch = codec.hop_length, 4
    g = torch.Generator().manual_seed(1)
    wav = torch.randn(batch, 1, 11 * hop + 5, generator=g) * 0.3
    wav[2] = 0.0  # a silent stream next to loud ones: no state leaks between streams
    wav[3] *= 3.0
    ref_codes = codec.encode(wav)
    ref_audio = codec.decode(ref_codes)
    assert torch.equal(offline.encode(wav), ref_codes)
    for chunk in (hop, 7, 3 * hop + 1):
        codes, audio = stream(core, wav, chunk)
        assert torch.equal(codes, ref_codes), chunk
        assert audio.shape == ref_audio.shape
        torch.testing.assert_close(audio, ref_audio, atol=1e-5, rtol=1e-4)
        assert not torch.equal(codes[0], codes[1])  # the streams really differ
        for b in range(batch):
            alone_codes, alone_audio = stream(core, wav[b : b + 1], chunk)
            assert torch.equal(alone_codes, codes[b : b + 1]), (chunk, b)
            # float kernels may pick another blocking for another batch size: equal to float tolerance
            torch.testing.assert_close(alone_audio, audio[b : b + 1], atol=1e-6, rtol=1e-5)


def test_batched_eager_session_matches_the_artifact():
    codec = stft_codec()
    wav = torch.randn(3, 1, 9 * codec.hop_length, generator=torch.Generator().manual_seed(2)) * 0.2
    codes, audio = stream(codec, wav, codec.hop_length)
    assert torch.equal(codes, codec.encode(wav))
    torch.testing.assert_close(audio, codec.decode(codes), atol=1e-5, rtol=1e-4)


def test_stream_runner_batch_and_reset(tmp_path):
    codec = stft_codec()
    export_torchscript(codec, tmp_path, check=False)
    hop = codec.hop_length
    wav = torch.randn(3, 1, 6 * hop + 9, generator=torch.Generator().manual_seed(3)) * 0.2
    ref_codes = codec.encode(wav)
    for runner in (StreamRunner(artifact=str(tmp_path), batch=3), StreamRunner(codec, batch=3)):
        assert runner.batch == 3
        out = [runner.step(wav[..., i : i + 13]) for i in range(0, wav.shape[-1], 13)] + [runner.flush()]
        codes = torch.cat([c for c, _ in out], -1)
        audio = torch.cat([a for _, a in out], -1)
        assert torch.equal(codes, ref_codes)
        torch.testing.assert_close(audio, codec.decode(ref_codes), atol=1e-5, rtol=1e-4)
        runner.reset(1)  # one new stream
        assert runner.batch == 1
        c, _ = runner.step(wav[1:2, :, : 2 * hop])
        assert torch.equal(c, ref_codes[1:2, :, :2])
        with pytest.raises(ValueError, match=r"expected \[batch=1, channels=1"):
            runner.step(wav[:, :, :hop])
        runner.reset(2)
        with pytest.raises(ValueError, match="stream_audio streams one signal; the runner holds 2"):
            stream_audio(runner, [wav[:1, :, :hop]], hop)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="number of streams must be an integer >= 1"):
            StreamRunner(codec, batch=bad)


def test_shipped_default_streams_in_batches(tmp_path):
    codec = sonotok.load("default")
    meta = export_torchscript(codec, tmp_path)  # its check streams two signals at once
    assert meta["torchscript_check"]["batch"] == 2.0 and meta["torchscript_check"]["codes_equal"] == 1.0
    assert meta["torchscript_check"]["stream_max_abs_diff"] < 1e-4
    core = loaded_core(tmp_path, codec)
    wav = torch.randn(3, 1, 8 * codec.hop_length + 100, generator=torch.Generator().manual_seed(4)) * 0.1
    codes, audio = stream(core, wav, codec.hop_length)
    assert torch.equal(codes, codec.encode(wav))
    for b in range(3):
        alone_codes, alone_audio = stream(core, wav[b : b + 1], codec.hop_length)
        assert torch.equal(alone_codes, codes[b : b + 1])
        torch.testing.assert_close(alone_audio, audio[b : b + 1], atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------------ measured speed
class SlowStep:
    """A fake streaming module that sleeps ``seconds`` per call and passes its input through."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def init_state(self, batch: int):
        return [torch.zeros(batch, 1)]

    def __call__(self, x, state):
        if self.seconds:
            time.sleep(self.seconds)
        return x, state


def test_measured_rtf_follows_the_compute_time():
    hop, sr = 160, 16000  # 10 ms frames
    kw = dict(hop_length=hop, sample_rate=sr, channels=1, seconds=0.2, batch=4, batch_steps=3, warmup=1)
    t0 = time.perf_counter()
    slow = measure_streaming_speed(SlowStep(0.004), SlowStep(0.0), **kw)
    elapsed = time.perf_counter() - t0
    fast = measure_streaming_speed(SlowStep(0.0), SlowStep(0.0), **kw)
    assert slow["frames"] == 20 and slow["audio_s"] == pytest.approx(0.2)
    assert slow["rtf"] == pytest.approx(slow["compute_s"] / slow["audio_s"])
    assert slow["x_realtime"] == pytest.approx(1 / slow["rtf"])
    assert slow["rtf"] >= 0.4  # 4 ms of sleep per 10 ms frame
    assert slow["compute_s"] < elapsed
    assert fast["rtf"] < slow["rtf"] / 4
    # 4 streams per step of >= 4 ms, 10 ms frames: at most 10 real-time streams
    assert 0 < slow["concurrent_realtime_streams"] <= 10.0
    assert slow["concurrent_realtime_streams"] == pytest.approx(
        4 * 10.0 / slow["batch_step_ms"]["mean_ms"])
    assert fast["concurrent_realtime_streams"] > 4 * slow["concurrent_realtime_streams"]
    assert slow["threads"] == 1 and slow["measured_on"]["threads"] == 1
    assert slow["measured_on"]["cpu"] == cpu_model_name() and cpu_model_name()
    assert torch.get_num_threads() >= 1


def test_a_slow_model_stops_at_the_time_budget():
    kw = dict(hop_length=160, sample_rate=16000, channels=1, seconds=1.0, batch=2, batch_steps=50, warmup=0)
    m = measure_streaming_speed(SlowStep(0.003), SlowStep(0.0), budget_s=0.05, **kw)
    assert 10 <= m["frames"] < 100 and m["audio_s"] == pytest.approx(m["frames"] * 0.01)
    assert m["rtf"] == pytest.approx(m["compute_s"] / m["audio_s"]) and m["rtf"] >= 0.3
    assert 2 <= m["batch_steps"] < 50
    full = measure_streaming_speed(SlowStep(0.0), SlowStep(0.0), budget_s=None, **kw)
    assert full["frames"] == 100 and full["batch_steps"] == 50


def test_time_batched_steps_rejects_bad_arguments():
    with pytest.raises(ValueError, match="number of streams"):
        time_batched_steps(SlowStep(0), SlowStep(0), 160, 16000, 1, batch=0)
    with pytest.raises(ValueError, match="steps=0"):
        time_batched_steps(SlowStep(0), SlowStep(0), 160, 16000, 1, batch=2, steps=0)
    with pytest.raises(ValueError, match="threads=0"):
        measure_streaming_speed(SlowStep(0), SlowStep(0), 160, 16000, 1, threads=0)


def test_export_json_reports_the_measured_speed(tmp_path, monkeypatch):
    from sonotok.cli import main

    codec = stft_codec()
    monkeypatch.setattr(sonotok, "load", lambda path, map_location="cpu": codec)
    model_dir = tmp_path / "model"
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    assert main(["export", "--model", str(model_dir), "--out", str(tmp_path / "art"), "--no-torch-export"]) == 0
    elapsed = time.perf_counter() - t0
    assert torch.get_num_threads() == threads  # measured on 1 thread, then restored
    meta = json.loads((tmp_path / "art" / "export.json").read_text())
    m = meta["cost"]["measured"]
    assert isinstance(m["rtf"], float) and 0 < m["rtf"]
    assert m["rtf"] == pytest.approx(m["compute_s"] / m["audio_s"])
    assert 0 < m["compute_s"] < elapsed
    assert m["frame_compute_ms"]["mean_ms"] * m["frames"] / 1000 == pytest.approx(m["compute_s"], rel=1e-6)
    assert m["audio_s"] == pytest.approx(m["frames"] * codec.hop_length / codec.sample_rate)
    assert m["batch"] == 64 and isinstance(m["concurrent_realtime_streams"], float)
    assert m["concurrent_realtime_streams"] == pytest.approx(
        64 * meta["frame_ms"] / m["batch_step_ms"]["mean_ms"])
    assert m["threads"] == 1 and isinstance(m["measured_on"]["cpu"], str) and m["measured_on"]["cpu"]
    assert m["backend"] == "torchscript (frozen, optimized)" and "measured on this machine" in m["note"]
    assert meta["torchscript_check"]["batch"] == 2.0 and meta["torchscript_check"]["codes_equal"] == 1.0
    assert main(["export", "--model", str(model_dir), "--out", str(tmp_path / "art2"), "--no-torch-export",
                 "--no-measure"]) == 0
    assert "measured" not in json.loads((tmp_path / "art2" / "export.json").read_text())["cost"]


def test_eval_cost_section_has_the_measured_speed(tmp_path, monkeypatch, capsys):
    from sonotok.cli import eval as eval_cli

    codec = stft_codec()
    monkeypatch.setattr(sonotok, "load", lambda path, map_location="cpu": codec)
    wav = torch.randn(16000, generator=torch.Generator().manual_seed(5)) * 0.1
    sf.write(tmp_path / "a.wav", wav.numpy(), 16000)
    parser = argparse.ArgumentParser(prog="sonotok")
    eval_cli.add_parser(parser.add_subparsers(dest="command"))
    common = ["eval", "--model", "m", "--data", str(tmp_path / "a.wav"), "--device", "cpu"]
    args = parser.parse_args(common + ["--json"])
    assert args.func(args) == 0
    m = json.loads(capsys.readouterr().out)["cost"]["measured"]
    assert m["rtf"] > 0 and m["concurrent_realtime_streams"] > 0 and m["batch"] == 64 and m["threads"] == 1
    args = parser.parse_args(common)
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "streaming artifact measured on this machine" in out and "concurrent real-time streams at batch 64" in out
    args = parser.parse_args(common + ["--json", "--no-measure"])
    assert args.func(args) == 0
    assert "measured" not in json.loads(capsys.readouterr().out)["cost"]


def test_measure_codec_speed_refuses_a_model_without_a_streaming_artifact():
    class Offline(torch.nn.Module):
        name = "offline-only"

        def encode(self, wav):
            return wav

    with pytest.raises(sonotok.SonotokError, match="offline-only .* no streaming encoder"):
        measure_codec_speed(Offline())
    codec = stft_codec()
    codec.streamable = False
    with pytest.raises(sonotok.SonotokError, match="offline only"):
        measure_codec_speed(codec)
