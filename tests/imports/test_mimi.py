"""Imported Mimi against moshi's own output: offline codes, decoded audio and moshi's streaming mode."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from sonotok.cli.import_ import import_checkpoint
from sonotok.errors import ModelLoadError
from sonotok.model_io import load_model


@pytest.fixture(scope="module")
def mimi(mimi_ref, tmp_path_factory):
    return {k: load_model(import_checkpoint("mimi", mimi_ref.checkpoint, tmp_path_factory.mktemp("mimi") / "m",
                                            num_codebooks=k))
            for k in mimi_ref.meta["num_codebooks"]}


def test_offline_codes_and_audio_match_moshi(mimi_ref, mimi, assert_codes_match):
    hop = mimi_ref.meta["hop_length"]
    assert any(n % hop for n in mimi_ref.meta["lengths"])
    for k, model in mimi.items():
        assert model.num_codebooks == k and model.hop_length == hop == 1920 and model.frame_rate == 12.5
        for sig in mimi_ref.meta["signals"]:
            for n in mimi_ref.meta["lengths"]:
                ref = mimi_ref[f"codes/{k}/{sig}/{n}"]
                wav = mimi_ref[f"input/{sig}"][..., :n]
                assert_codes_match(model.encode(wav), ref, model, wav, f"k={k} {sig} {n}")
    assert_codes_match.assert_few_moved()  # only near-tie frames may move on another CPU, and few
    k = max(mimi)
    for sig in mimi_ref.meta["signals"]:
        for n in mimi_ref.meta["lengths"]:
            audio = mimi[k].decode(mimi_ref[f"codes/{k}/{sig}/{n}"])
            ref_audio = mimi_ref[f"audio/{sig}/{n}"]
            assert audio.shape == ref_audio.shape and (audio - ref_audio).abs().max() < 1e-4
    assert len(torch.unique(mimi_ref[f"codes/{k}/noise/{mimi_ref.meta['stream_length']}"][0, -1])) > 5


@pytest.mark.parametrize("chunk", [1920, 1000, 4000])
def test_streamed_codes_equal_moshi_streaming_and_offline(mimi_ref, mimi, chunk, assert_codes_match):
    model = mimi[max(mimi)]
    for sig in mimi_ref.meta["signals"]:
        wav = mimi_ref[f"input/{sig}"]
        with model.streaming(1) as s:
            codes = torch.cat([s.encode(wav[..., i : i + chunk]) for i in range(0, wav.shape[-1], chunk)], -1)
        assert_codes_match(codes, mimi_ref[f"stream_codes/{sig}"], model, wav, f"{sig} streamed in {chunk}")
        assert_codes_match(codes, model.encode(wav), model, wav, f"{sig} streamed vs offline")


def test_streamed_decode_matches_moshi_streaming_decode(mimi_ref, mimi):
    model = mimi[max(mimi)]
    codes = mimi_ref["stream_codes/speech"]
    with model.streaming(1) as s:
        audio = torch.cat([s.decode(codes[..., i : i + 1]) for i in range(codes.shape[-1])], -1)
    ref = mimi_ref["stream_audio/speech"]
    assert audio.shape == ref.shape and (audio - ref).abs().max() < 1e-4


def test_torchscript_artifact_streams_moshis_streaming_codes(mimi_ref, mimi, tmp_path, assert_codes_match):
    from sonotok.export.torchscript import export_torchscript

    export_torchscript(mimi[max(mimi)], tmp_path)
    enc = torch.jit.load(str(tmp_path / "encoder_stream.pt"))
    dec = torch.jit.load(str(tmp_path / "decoder_stream.pt"))
    wav = mimi_ref["input/noise"]
    es, ds = enc.init_state(1), dec.init_state(1)
    codes, audio = [], []
    for i in range(0, wav.shape[-1], 1920):
        c, es = enc(wav[..., i : i + 1920], es)
        y, ds = dec(c, ds)
        codes.append(c)
        audio.append(y)
    assert_codes_match(torch.cat(codes, -1), mimi_ref["stream_codes/noise"], mimi[max(mimi)], wav, "artifact")
    assert (torch.cat(audio, -1) - mimi_ref["stream_audio/noise"]).abs().max() < 1e-4


def test_bad_mimi_checkpoints(mimi_ref, encodec_ref, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ModelLoadError, match=r"encodec_tiny\.th: not a readable safetensors file"):
        import_checkpoint("mimi", encodec_ref.checkpoint, out)
    data = mimi_ref.checkpoint.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError, match=r"trunc\.safetensors: not a readable safetensors file"):
        import_checkpoint("mimi", tmp_path / "trunc.safetensors", out)
    state = load_file(str(mimi_ref.checkpoint))
    missing = {k: v for k, v in state.items() if k != "decoder_transformer.transformer.layers.1.linear2.weight"}
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ModelLoadError, match=r"missing\.safetensors.*missing weights for 1 \(decoder\.transformer\.layers\.1\.linear2\.weight\)"):
        import_checkpoint("mimi", tmp_path / "missing.safetensors", out)
    save_file(dict(state, **{"encoder_transformer.transformer.layers.0.gate.weight": torch.zeros(2)}),
              str(tmp_path / "extra.safetensors"))
    with pytest.raises(ModelLoadError, match=r"extra\.safetensors.*unexpected keys 1 \(encoder_transformer\.transformer\.layers\.0\.gate\.weight\)"):
        import_checkpoint("mimi", tmp_path / "extra.safetensors", out)
    save_file({"encoder.block.0.weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ModelLoadError, match=r"other\.safetensors: not a checkpoint of Mimi: missing 5"):
        import_checkpoint("mimi", tmp_path / "other.safetensors", out)
    with pytest.raises(ModelLoadError, match=r"num_codebooks must be in \[2, 8\], got 9"):
        import_checkpoint("mimi", mimi_ref.checkpoint, out, num_codebooks=9)
    assert not out.exists()


def test_torch_export_programs_stream_moshis_streaming_codes(mimi_ref, mimi, tmp_path, assert_codes_match):
    from sonotok.export.torch_export import export_programs

    model = mimi[max(mimi)]
    meta = export_programs(model, tmp_path)
    assert meta["torch_export_check"]["codes_equal"] == 1.0
    enc = torch.export.load(str(tmp_path / "encoder_stream.pt2")).module()
    shapes = meta["torch_export"]["encoder_state_shapes"]
    state = [torch.zeros(s, dtype=t.dtype) for s, t in zip(shapes, model.encoder.init_state(1))]
    wav = mimi_ref["input/speech"]
    codes = []
    for i in range(0, wav.shape[-1], 1920):
        c, state = enc(wav[..., i : i + 1920], state)
        codes.append(c)
    assert_codes_match(torch.cat(codes, -1), mimi_ref["stream_codes/speech"], model, wav, "torch.export stream")
