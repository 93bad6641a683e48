"""Imported EnCodec (24 kHz) against the reference package's own output (fixtures, no download)."""

from __future__ import annotations

import pytest
import torch

from sonotok.cli.import_ import import_checkpoint
from sonotok.errors import ModelLoadError
from sonotok.model_io import load_model


def import_encodec(path, out, bandwidth=6.0):
    return import_checkpoint("encodec_24khz", path, out, bandwidth=bandwidth)


@pytest.fixture(scope="module")
def imported(encodec_ref, tmp_path_factory):
    """One model directory per bandwidth of the fixture, imported and loaded back with ``sonotok.load``."""
    out = {}
    for bw in encodec_ref.meta["bandwidths"]:
        d = import_encodec(encodec_ref.checkpoint, tmp_path_factory.mktemp("enc") / "m", bandwidth=bw)
        out[bw] = load_model(d)
    return out


def test_codes_identical_to_reference_at_every_bandwidth_signal_and_length(encodec_ref, imported, assert_codes_match):
    hop = encodec_ref.meta["hop_length"]
    assert any(n % hop for n in encodec_ref.meta["lengths"]), "fixture must include non-multiples of the hop"
    checked = 0
    for bw, model in imported.items():
        assert model.num_codebooks == int(bw * 1000 // (75 * 10))
        for sig in encodec_ref.meta["signals"]:
            for n in encodec_ref.meta["lengths"]:
                ref = encodec_ref[f"codes/{bw}/{sig}/{n}"]
                wav = encodec_ref[f"input/{sig}"][..., :n]
                codes = model.encode(wav)
                assert_codes_match(codes, ref, model, wav, f"{bw} kbps, {sig}, {n} samples")
                checked += 1
    assert checked == len(imported) * 2 * len(encodec_ref.meta["lengths"])
    assert_codes_match.assert_few_moved()  # only near-tie frames may move on another CPU, and few
    # the fixture is not degenerate: codes use many entries
    assert len(torch.unique(encodec_ref["codes/3.0/noise/9000"][0, 1])) > 10


def test_decoded_audio_within_1e4_of_reference(encodec_ref, imported):
    bw = max(imported)
    for sig in encodec_ref.meta["signals"]:
        for n in encodec_ref.meta["lengths"]:
            ref = encodec_ref[f"audio/{bw}/{sig}/{n}"]
            wav = imported[bw].decode(encodec_ref[f"codes/{bw}/{sig}/{n}"])
            assert wav.shape == ref.shape
            assert (wav - ref).abs().max() < 1e-4


@pytest.mark.parametrize("chunk", [320, 97, 1000])
def test_streamed_codes_and_audio_equal_offline(encodec_ref, imported, chunk, assert_codes_match):
    model = imported[max(imported)]
    for sig in encodec_ref.meta["signals"]:
        wav = encodec_ref[f"input/{sig}"][..., : 320 * 20]
        with model.streaming(1) as s:
            codes = torch.cat([s.encode(wav[..., i : i + chunk]) for i in range(0, wav.shape[-1], chunk)], -1)
        assert_codes_match(codes, model.encode(wav), model, wav, f"{sig} streamed in {chunk}")
        assert_codes_match(codes, encodec_ref[f"codes/{max(imported)}/{sig}/{320 * 20}"], model, wav, sig)
    offline = model.encode(wav)
    audio = model.decode(offline)
    with model.streaming(1) as s:
        streamed = torch.cat([s.decode(offline[..., i : i + 3]) for i in range(0, offline.shape[-1], 3)], -1)
    assert streamed.shape == audio.shape
    assert (streamed - audio).abs().max() < 1e-5


def test_torchscript_artifact_streams_the_reference_codes(encodec_ref, imported, tmp_path, assert_codes_match):
    from sonotok.export.torchscript import export_torchscript

    bw = max(imported)
    export_torchscript(imported[bw], tmp_path)
    enc = torch.jit.load(str(tmp_path / "encoder_stream.pt"))
    dec = torch.jit.load(str(tmp_path / "decoder_stream.pt"))
    n = 320 * 20
    wav = encodec_ref["input/noise"][..., :n]
    es, ds = enc.init_state(1), dec.init_state(1)
    codes, audio = [], []
    for i in range(0, n, 320):
        c, es = enc(wav[..., i : i + 320], es)
        y, ds = dec(c, ds)
        codes.append(c)
        audio.append(y)
    assert_codes_match(torch.cat(codes, -1), encodec_ref[f"codes/{bw}/noise/{n}"], imported[bw], wav, "artifact")
    ref_audio = encodec_ref[f"audio/{bw}/noise/{n}"]
    streamed = torch.cat(audio, -1)
    assert (streamed - ref_audio[..., : streamed.shape[-1]]).abs().max() < 1e-4


def test_bandwidth_beyond_the_checkpoint_is_refused(encodec_ref, tmp_path):
    with pytest.raises(ModelLoadError, match="needs 32 codebooks"):
        import_encodec(encodec_ref.checkpoint, tmp_path / "m", bandwidth=24.0)
    assert not (tmp_path / "m").exists()


def _save(state, path):
    torch.save(state, path)
    return path


def test_bad_checkpoints_name_the_file_and_keys_and_write_nothing(encodec_ref, tmp_path):
    state = torch.load(encodec_ref.checkpoint, weights_only=True)
    out = tmp_path / "out"
    # truncated file
    trunc = tmp_path / "trunc.th"
    trunc.write_bytes(encodec_ref.checkpoint.read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match="trunc.th: not a readable PyTorch checkpoint"):
        import_encodec(trunc, out, bandwidth=1.5)
    # a missing weight
    missing = dict(state)
    del missing["decoder.model.4.block.1.conv.conv.weight_v"]
    with pytest.raises(ModelLoadError, match=r"missing\.th.*missing weights for 1 \(decoder\.model\.layers\.4\.block"):
        import_encodec(_save(missing, tmp_path / "missing.th"), out, bandwidth=1.5)
    # an extra key
    extra = dict(state, **{"encoder.model.99.foo": torch.zeros(1)})
    with pytest.raises(ModelLoadError, match=r"extra\.th.*unexpected keys 1 \(encoder\.model\.99\.foo\)"):
        import_encodec(_save(extra, tmp_path / "extra.th"), out, bandwidth=1.5)
    # a tensor of the wrong shape
    bad = dict(state)
    bad["encoder.model.0.conv.conv.bias"] = torch.zeros(7)
    with pytest.raises(ModelLoadError, match=r"shape\.th.*encoder\.model\.layers\.0\.conv\.bias \[7\]"):
        import_encodec(_save(bad, tmp_path / "shape.th"), out, bandwidth=1.5)
    # another model's checkpoint
    other = {"quantizer.quantizers.0.codebook.weight": torch.zeros(4, 8), "encoder.block.0.weight_v": torch.zeros(1)}
    with pytest.raises(ModelLoadError, match=r"other\.th: not a checkpoint of EnCodec: missing 2 \(encoder\.model\.0"):
        import_encodec(_save(other, tmp_path / "other.th"), out, bandwidth=1.5)
    # not a state dict at all
    with pytest.raises(ModelLoadError, match=r"list\.th: expected an EnCodec state dict"):
        import_encodec(_save([1, 2], tmp_path / "list.th"), out, bandwidth=1.5)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_failed_import_keeps_an_existing_model_directory(encodec_ref, tmp_path):
    good = import_encodec(encodec_ref.checkpoint, tmp_path / "m", bandwidth=1.5)
    before = {p.name: p.read_bytes() for p in good.iterdir()}
    broken = tmp_path / "broken.th"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError):
        import_encodec(broken, tmp_path / "m")
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before


def test_batched_encoding_keeps_the_reference_codes_of_partial_last_frames(encodec_ref, imported, assert_codes_match):
    model = imported[max(imported)]
    bw = max(imported)
    lengths = [n for n in encodec_ref.meta["lengths"] if n % 320]  # partial last frames
    wavs = [encodec_ref["input/speech"][0, :, :n] for n in lengths]
    batched = model.encode_batch(wavs)
    for codes, wav, n in zip(batched, wavs, lengths):
        ref = encodec_ref[f"codes/{bw}/speech/{n}"][0]
        assert codes.shape == ref.shape, f"{n} samples: {tuple(codes.shape)} != {tuple(ref.shape)}"
        assert torch.equal(codes, model.encode(wav[None])[0]), f"{n} samples: batched != one by one"
        assert_codes_match(codes, ref, model, wav[None], f"{n} samples")
    assert_codes_match.assert_few_moved()
