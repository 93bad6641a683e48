"""Imported DAC (16 and 44.1 kHz fixtures) against the reference package's own output."""

from __future__ import annotations

import pytest
import torch

from sonotok.cli.import_ import import_checkpoint
from sonotok.errors import ModelLoadError
from sonotok.model_io import load_model
from sonotok.models.imported.dac import StreamingNotSupported


def import_dac(path, out, sample_rate, num_codebooks=None):
    return import_checkpoint(f"dac_{round(sample_rate / 1000)}khz", path, out, num_codebooks=num_codebooks)


@pytest.fixture(scope="module")
def dac_model(dac_ref, tmp_path_factory):
    out = import_checkpoint(dac_ref.meta["family"], dac_ref.checkpoint, tmp_path_factory.mktemp("dac") / "m")
    return load_model(out)


def test_codes_and_audio_match_reference_at_every_length(dac_ref, dac_model, assert_codes_match):
    hop = dac_ref.meta["hop_length"]
    assert dac_model.hop_length == hop and dac_model.sample_rate == dac_ref.meta["sample_rate"]
    assert dac_model.num_codebooks == dac_ref.meta["num_codebooks"]
    assert any(n % hop for n in dac_ref.meta["lengths"])
    for sig in dac_ref.meta["signals"]:
        for n in dac_ref.meta["lengths"]:
            wav = dac_ref[f"input/{sig}"][..., :n]
            ref = dac_ref[f"codes/{sig}/{n}"]
            codes = dac_model.encode(wav)
            assert_codes_match(codes, ref, dac_model, wav, f"{sig} {n}")
            assert torch.equal(codes[:, :2], dac_model.encode(wav, num_codebooks=2))
            assert torch.equal(dac_model.encode(wav, num_codebooks=2), dac_ref[f"codes_k2/{sig}/{n}"])
            audio = dac_model.decode(ref)
            ref_audio = dac_ref[f"audio/{sig}/{n}"]
            assert audio.shape == ref_audio.shape
            assert (audio - ref_audio).abs().max() < 1e-4
    assert_codes_match.assert_few_moved()  # only near-tie frames may move on another CPU, and few
    assert len(torch.unique(dac_ref[f"codes/noise/{dac_ref.meta['lengths'][-1]}"][0, 1])) > 10


def test_fewer_codebooks_at_import(dac_ref, tmp_path):
    m = load_model(import_checkpoint(dac_ref.meta["family"], dac_ref.checkpoint, tmp_path / "m", num_codebooks=2))
    assert m.num_codebooks == 2
    n = dac_ref.meta["lengths"][0]
    assert torch.equal(m.encode(dac_ref["input/speech"][..., :n]), dac_ref[f"codes_k2/speech/{n}"])


def test_streaming_is_refused_clearly(dac_model):
    with pytest.raises(StreamingNotSupported, match="cannot stream: DAC's convolutions are not causal"):
        dac_model.init_state(1)


def test_bad_dac_checkpoints(dac_ref, tmp_path):
    family, sr = dac_ref.meta["family"], dac_ref.meta["sample_rate"]
    out = tmp_path / "out"
    wrong = "dac_24khz"
    with pytest.raises(ModelLoadError, match=rf"for {sr} Hz \(metadata kwargs\), not 24000 Hz: import it as {family}"):
        import_checkpoint(wrong, dac_ref.checkpoint, out)
    ckpt = torch.load(dac_ref.checkpoint, weights_only=True)
    no_meta = {"state_dict": ckpt["state_dict"]}
    torch.save(no_meta, tmp_path / "nometa.pth")
    with pytest.raises(ModelLoadError, match=r"nometa\.pth: not a DAC checkpoint \(expected keys 'state_dict' and 'metadata'"):
        import_dac(tmp_path / "nometa.pth", out, sample_rate=sr)
    extra = dict(ckpt, state_dict=dict(ckpt["state_dict"], **{"decoder.model.9.alpha": torch.ones(1, 4, 1)}))
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(ModelLoadError, match=r"extra\.pth.*keys the architecture does not have 1 \(decoder\.model\.9\.alpha\)"):
        import_dac(tmp_path / "extra.pth", out, sample_rate=sr)
    data = dac_ref.checkpoint.read_bytes()
    (tmp_path / "trunc.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"trunc\.pth: not a readable PyTorch checkpoint"):
        import_dac(tmp_path / "trunc.pth", out, sample_rate=sr)
    with pytest.raises(ModelLoadError, match=r"num_codebooks must be in \[1, 4\], got 5"):
        import_dac(dac_ref.checkpoint, out, sample_rate=sr, num_codebooks=5)
    assert not out.exists()


def test_checkpoints_of_the_other_family_are_refused(dac_ref, encodec_ref, tmp_path):
    with pytest.raises(ModelLoadError, match=r"encodec_tiny\.th: not a DAC checkpoint"):
        import_dac(encodec_ref.checkpoint, tmp_path / "a", sample_rate=dac_ref.meta["sample_rate"])
    with pytest.raises(ModelLoadError, match=rf"{dac_ref.checkpoint.name}: expected an EnCodec state dict.*not tensors: 2 \(metadata, state_dict\)"):
        import_checkpoint("encodec_24khz", dac_ref.checkpoint, tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_offline_torchscript_export_matches_eager_and_reference(dac_ref, dac_model, tmp_path):
    from sonotok.export.offline import export_offline_torchscript

    meta = export_offline_torchscript(dac_model, tmp_path)
    assert meta["streaming"] is False and meta["torchscript_check"]["codes_equal"] == 1.0
    assert meta["torchscript_check"]["offline_max_abs_diff"] < 1e-5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codec.pt", "export.json"]
    codec = torch.jit.load(str(tmp_path / "codec.pt"))
    n = dac_ref.meta["lengths"][1]  # not a whole number of frames
    wav = dac_ref["input/speech"][..., :n]
    assert torch.equal(codec.encode(wav), dac_ref[f"codes/speech/{n}"])
    assert (codec.decode(dac_ref[f"codes/speech/{n}"]) - dac_ref[f"audio/speech/{n}"]).abs().max() < 1e-4
