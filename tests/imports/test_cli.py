"""``sonotok import`` on the fixture checkpoints: the directory works with load / tokenize / export."""

from __future__ import annotations

import json

import numpy as np
import torch

from sonotok.cli import main
from sonotok.model_io import load_model


def test_import_writes_a_model_directory_every_command_accepts(encodec_ref, tmp_path, capsys, assert_codes_match):
    out = tmp_path / "encodec"
    assert main(["import", "encodec_24khz", str(encodec_ref.checkpoint), "--out", str(out), "--bandwidth", "3"]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and json.loads(printed.splitlines()[0])["num_codebooks"] == 4
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "meta.json", "model.safetensors"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["imported_family"] == "encodec" and meta["bandwidth_kbps"] == 3.0
    assert "sonotok.models.imported.encodec.EncodecCodec" in (out / "config.yaml").read_text()

    import soundfile as sf

    wav = encodec_ref["input/speech"][0, 0, :9000].numpy()  # 28.1 frames: the last one partial
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    sf.write(audio_dir / "a.wav", wav, 24000, subtype="FLOAT")
    codes_dir = tmp_path / "codes"
    assert main(["tokenize", "--model", str(out), str(audio_dir), "--out", str(codes_dir)]) == 0
    codes = np.load(next(codes_dir.rglob("*.npy")))
    ref = encodec_ref["codes/3.0/speech/9000"]
    # the reference's codes on every frame that is not a float near-tie on this CPU (tests/imports/conftest.py)
    assert assert_codes_match(codes, ref, load_model(out), torch.from_numpy(wav)[None, None], "CLI tokenize") <= 1

    art = tmp_path / "artifacts"
    capsys.readouterr()
    assert main(["export", "--model", str(out), "--out", str(art)]) == 0
    assert "has no torch.export programs (its stream start is data-dependent)" in capsys.readouterr().err
    assert (art / "encoder_stream.pt").is_file() and not list(art.glob("*.pt2"))


def test_import_errors_are_one_line_and_leave_nothing(encodec_ref, tmp_path, capsys):
    bad = tmp_path / "bad.th"
    bad.write_bytes(b"\x00" * 100)
    out = tmp_path / "m"
    assert main(["import", "encodec_24khz", str(bad), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.th: not a readable PyTorch checkpoint" in err
    assert main(["import", "dac_44khz", str(bad), "--out", str(out), "--bandwidth", "6"]) == 2
    assert "use --num-codebooks" in capsys.readouterr().err
    assert not out.exists()


def test_stream_command_streams_imported_mimi_from_its_artifact_and_refuses_dac(mimi_ref, reference_factory,
                                                                                 tmp_path, capsys):
    import soundfile as sf

    dac_ref = reference_factory("dac_16khz")
    model = tmp_path / "mimi"
    assert main(["import", "mimi", str(mimi_ref.checkpoint), "--out", str(model)]) == 0
    art = tmp_path / "art"
    assert main(["export", "--model", str(model), "--out", str(art), "--no-torch-export"]) == 0
    wav = mimi_ref["input/speech"][0, 0].numpy()
    sf.write(tmp_path / "in.wav", wav, 24000, subtype="FLOAT")
    capsys.readouterr()
    assert main(["stream", "--artifact", str(art), str(tmp_path / "in.wav"), "--out", str(tmp_path / "out.wav"),
                 "--chunk-ms", "80", "--codes-out", str(tmp_path / "codes.npy")]) == 0
    codes = np.load(tmp_path / "codes.npy")
    assert np.array_equal(codes, mimi_ref["stream_codes/speech"][0].numpy())

    dac = tmp_path / "dac"
    assert main(["import", dac_ref.meta["family"], str(dac_ref.checkpoint), "--out", str(dac)]) == 0
    sf.write(tmp_path / "in_dac.wav", dac_ref["input/speech"][0, 0].numpy(), dac_ref.meta["sample_rate"],
             subtype="FLOAT")
    capsys.readouterr()
    rc = main(["stream", "--model", str(dac), str(tmp_path / "in_dac.wav"), "--out", str(tmp_path / "o.wav")])
    assert rc != 0
    assert "cannot stream" in capsys.readouterr().err


def test_export_command_writes_the_offline_codec_of_an_imported_dac(reference_factory, tmp_path, capsys):

    ref = reference_factory("dac_44khz")
    model = tmp_path / "dac"
    assert main(["import", "dac_44khz", str(ref.checkpoint), "--out", str(model)]) == 0
    art = tmp_path / "art"
    capsys.readouterr()
    assert main(["export", "--model", str(model), "--out", str(art)]) == 0
    assert "is not causal, so there is no streaming encoder/decoder" in capsys.readouterr().out
    assert sorted(p.name for p in art.iterdir()) == ["codec.pt", "export.json"]
    n = ref.meta["lengths"][0]
    codes = torch.jit.load(str(art / "codec.pt")).encode(ref["input/noise"][..., :n])
    assert torch.equal(codes, ref[f"codes/noise/{n}"])


def test_encodec_48khz_is_refused_with_the_reason_and_writes_nothing(tmp_path, capsys):
    ckpt = tmp_path / "encodec_48khz-7e698e3e.th"
    # the 48 kHz model's layout (time_group_norm): plain conv weights, a GroupNorm after each
    torch.save({"encoder.model.0.conv.conv.weight": torch.zeros(32, 2, 7),
                "encoder.model.0.conv.conv.bias": torch.zeros(32),
                "encoder.model.0.conv.norm.weight": torch.ones(32),
                "encoder.model.0.conv.norm.bias": torch.zeros(32),
                "quantizer.vq.layers.0._codebook.embed": torch.zeros(1024, 128)}, ckpt)
    out = tmp_path / "m"
    assert main(["import", "encodec_48khz", str(ckpt), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "EnCodec 48 kHz cannot be imported" in err
    assert "per-segment [K, 150] blocks" in err and "docs/imports.md" in err
    # the same file given as the 24 kHz model: named as what it is, not as missing weight-norm keys
    assert main(["import", "encodec_24khz", str(ckpt), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "this is an EnCodec 48 kHz checkpoint (time_group_norm layers)" in err and "weight_v" not in err
    assert not out.exists()
