"""`sonotok tokenize` / `sonotok decode`: layout, manifest, bad inputs, formats, determinism, decode errors."""

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from tok_helpers import synth, write_wav

import sonotok
from sonotok.cli import main
from sonotok.errors import CodesError
from sonotok.tokenizer import encode_file, tokenize
from sonotok.tokenizer.formats import load_codes, load_shard, save_codes, validate_codes


def manifest(out, name="manifest.jsonl"):
    return {r["rel"]: r for r in map(json.loads, (out / name).read_text().splitlines())}


def test_layout_manifest_and_metadata(tmp_path, tiny_model_dir, audio_dir, codec):
    out = tmp_path / "codes"
    rc = main(["tokenize", "--model", str(tiny_model_dir), str(audio_dir), "--out", str(out), "--no-progress"])
    assert rc == 0
    rows = manifest(out)
    assert sorted(rows) == ["f0.wav", "f2.wav", "f4.wav", "sub/f1.wav", "sub/f3.wav", "sub/f5.wav"]
    for rel, row in rows.items():
        assert row["status"] == "ok"
        codes, meta = load_codes(out / row["codes"])
        assert (out / rel).with_suffix(".npy") == out / row["codes"]  # mirrors the input's relative path
        assert codes.dtype == np.int16  # codebook_size 16 fits int16
        info = sf.info(str(audio_dir / rel))
        assert codes.shape == (codec.num_codebooks, -(-info.frames // codec.hop_length))
        for key in ("frame_rate", "num_codebooks", "codebook_size", "model_id", "sample_rate", "source",
                    "source_duration", "num_samples"):
            assert key in meta, key
        assert meta["model_id"] == codec.model_id and meta["frame_rate"] == 50.0
        assert abs(meta["source_duration"] - info.duration) < 1e-9
        np.testing.assert_array_equal(codes, encode_file(codec, audio_dir / rel).numpy())
        assert row["size"] == (out / row["codes"]).stat().st_size and len(row["sha256"]) == 64


def test_num_codebooks_and_jsonl_manifest_input(tmp_path, tiny_model_dir, audio_dir, codec):
    man = tmp_path / "list.jsonl"
    man.write_text("\n".join(json.dumps({"path": os.path.relpath(audio_dir / r, tmp_path)})
                             for r in ["f0.wav", "sub/f1.wav"]) + "\n")
    out = tmp_path / "codes"
    assert main(["tokenize", "-m", str(tiny_model_dir), str(man), "--out", str(out), "-k", "2", "--no-progress"]) == 0
    for row in manifest(out).values():
        codes, meta = load_codes(out / row["codes"])
        assert codes.shape[0] == 2 and meta["num_codebooks"] == 2
        full = encode_file(codec, row["source"]).numpy()
        np.testing.assert_array_equal(codes, full[:2])


def test_deterministic_across_runs_and_batch_sizes(tmp_path, tiny_model_dir, audio_dir):
    digests = []
    for bs in (1, 3, 8, 8):
        out = tmp_path / f"b{bs}_{len(digests)}"
        assert main(["tokenize", "-m", str(tiny_model_dir), str(audio_dir), "-o", str(out), "-b", str(bs),
                     "--no-progress"]) == 0
        digests.append({r: row["sha256"] for r, row in manifest(out).items()})
    assert all(d == digests[0] for d in digests)


def _wav_header_only(path):
    """A RIFF/WAVE header cut in the middle of the fmt chunk (truncated header)."""
    full = path.parent / "full.tmpwav.wav"
    sf.write(str(full), synth(0.1)[0], 16000)
    path.write_bytes(full.read_bytes()[:22])
    full.unlink()


@pytest.fixture()
def bad_folder(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    (root / "empty.wav").write_bytes(b"")
    sf.write(str(root / "zero_length.wav"), np.zeros((0, 1), np.float32), 16000)
    _wav_header_only(root / "truncated_header.wav")
    (root / "random_bytes.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    x = synth(0.3)[0].copy()
    x[100] = np.nan
    sf.write(str(root / "nan.wav"), x, 16000, subtype="FLOAT")
    x = synth(0.3)[0].copy()
    x[7] = np.inf
    sf.write(str(root / "inf.wav"), x, 16000, subtype="FLOAT")
    write_wav(root / "stereo.wav", 0.4, channels=2)
    for sub in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        write_wav(root / "depth" / f"{sub.lower()}.wav", 0.3, subtype=sub)
    for sr in (8000, 11025, 16000, 22050, 32000, 44100, 48000):
        write_wav(root / "rates" / f"sr{sr}.wav", 0.35, sr=sr)
    sf.write(str(root / "ok.flac"), synth(0.3)[0], 16000)
    sf.write(str(root / "ok.ogg"), synth(0.3)[0], 16000)
    # Unreadable paths. Tests run as root, for whom chmod 000 does not block reads, so unreadability is
    # simulated: a broken symlink inside the folder and a directory named like an audio file (via a manifest).
    os.symlink(root / "does_not_exist.wav", root / "broken_link.wav")
    (tmp_path / "dir_named.wav").mkdir()
    (tmp_path / "list.jsonl").write_text(json.dumps({"path": "dir_named.wav"}) + "\n")
    # unsupported format, given explicitly (folder scans only pick audio extensions)
    (tmp_path / "notes.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    return root


EXPECTED_FAILURES = {
    "empty.wav": "empty file",
    "zero_length.wav": "zero-length",
    "truncated_header.wav": "truncated",
    "random_bytes.wav": "not an audio file",
    "nan.wav": "NaN samples",
    "inf.wav": "Inf samples",
    "broken_link.wav": "not found",
    "dir_named.wav": "directory",
    "notes.mp4": "unsupported format",
}


@pytest.mark.parametrize("policy", ["downmix", "reject"])
def test_bad_inputs_are_reported_and_the_run_goes_on(tmp_path, tiny_model_dir, bad_folder, policy, capsys):
    out = tmp_path / "codes"
    rc = main(["tokenize", "-m", str(tiny_model_dir), str(bad_folder), str(tmp_path / "list.jsonl"),
               str(tmp_path / "notes.mp4"), "-o", str(out), "--channels", policy, "--no-progress"])
    assert rc == 1
    rows = manifest(out)
    expected = dict(EXPECTED_FAILURES)
    if policy == "reject":
        expected["stereo.wav"] = "wrong channel count"
    failed = {r: row["reason"] for r, row in rows.items() if row["status"] == "failed"}
    assert set(failed) == set(expected), failed
    for rel, needle in expected.items():
        assert needle in failed[rel], (rel, failed[rel])
        assert "\n" not in failed[rel] and len(failed[rel]) < 300
    ok = {r for r, row in rows.items() if row["status"] == "ok"}
    assert {f"depth/{s}.wav" for s in ("pcm_u8", "pcm_16", "pcm_24", "pcm_32", "float", "double")} <= ok
    assert {f"rates/sr{sr}.wav" for sr in (8000, 11025, 16000, 22050, 32000, 44100, 48000)} <= ok
    assert {"ok.flac", "ok.ogg"} <= ok
    assert ("stereo.wav" in ok) == (policy == "downmix")
    for sr in (8000, 44100):  # resampled to the model rate: frames = ceil(resampled length / hop)
        codes, meta = load_codes(out / f"rates/sr{sr}.npy")
        n = -(-int(0.35 * sr) * 16000 // sr)
        assert codes.shape[1] == -(-n // 320) and meta["num_samples"] == n
    err = capsys.readouterr().err
    assert "failed %d" % len(expected) in err and "FAILED" in err


def test_safetensors_shards_roundtrip_and_resume(tmp_path, tiny_model_dir, audio_dir):
    npy, st = tmp_path / "npy", tmp_path / "st"
    assert main(["tokenize", "-m", str(tiny_model_dir), str(audio_dir), "-o", str(npy), "--no-progress"]) == 0
    args = ["tokenize", "-m", str(tiny_model_dir), str(audio_dir), "-o", str(st), "--format", "safetensors",
            "--shard-size", "4", "--no-progress"]
    assert main(args) == 0
    shards = sorted(st.glob("shard-*.safetensors"))
    assert [p.name for p in shards] == ["shard-00000.safetensors", "shard-00001.safetensors"]
    items = {}
    for p in shards:
        items.update(load_shard(p))
    assert len(items) == 6
    for rel, (codes, meta) in items.items():
        np.testing.assert_array_equal(codes, load_codes((npy / rel).with_suffix(".npy"))[0])
        assert meta["source"].endswith(rel) and meta["num_codebooks"] == 4
    before = {p.name: p.stat().st_mtime_ns for p in shards}
    assert main(args) == 0  # resume: nothing redone
    assert {p.name: p.stat().st_mtime_ns for p in st.glob("shard-*.safetensors")} == before
    # a kill between writing a shard and recording it leaves an orphan shard: removed, its items redone
    rows = [r for r in (st / "manifest.jsonl").read_text().splitlines() if "shard-00001" not in r]
    (st / "manifest.jsonl").write_text("\n".join(rows) + "\n")
    assert main(args) == 0
    assert sorted(p.name for p in st.glob("shard-*.safetensors")) == ["shard-00000.safetensors", "shard-00001.safetensors"]
    assert len(load_shard(st / "shard-00001.safetensors")) == 2
    wavs = tmp_path / "wavs"
    assert main(["decode", "-m", str(tiny_model_dir), str(st), "-o", str(wavs), "--no-progress"]) == 0
    assert sf.info(str(wavs / "sub/f3.wav")).frames == sf.info(str(audio_dir / "sub/f3.wav")).frames


def test_decode_roundtrip(tmp_path, tiny_model_dir, audio_dir, codec):
    out, wavs = tmp_path / "codes", tmp_path / "wavs"
    assert main(["tokenize", "-m", str(tiny_model_dir), str(audio_dir), "-o", str(out), "--no-progress"]) == 0
    assert main(["decode", "-m", str(tiny_model_dir), str(out), "-o", str(wavs), "--no-progress"]) == 0
    for rel in ["f0.wav", "sub/f5.wav"]:
        src = sf.info(str(audio_dir / rel))
        dec, sr = sf.read(str(wavs / rel), dtype="float32")
        assert sr == 16000 and dec.shape[0] == src.frames
        codes = torch.from_numpy(load_codes((out / rel).with_suffix(".npy"))[0].astype(np.int64))
        ref = codec.decode(codes[None])[0, 0, : src.frames].numpy()
        assert np.abs(dec - np.clip(ref, -1, 1)).max() < 2e-4


def _codes_file(tmp_path, name, codec, arr, **over):
    from sonotok.tokenizer.formats import codes_meta

    meta = codes_meta(codec, arr.shape[-1], arr.shape[-1] * 320, "x.wav", 1.0, arr.shape[0])
    meta.update(over)
    p = tmp_path / name
    save_codes(p, arr, meta) if arr.dtype.kind == "i" else (np.save(p, arr), p.with_suffix(".json").write_text(
        json.dumps(meta)))
    return p


def test_decode_rejects_mismatched_code_files(tmp_path, tiny_model_dir, codec):
    good = np.random.default_rng(0).integers(0, 16, (4, 10))
    cases = {
        "wrong_k": (_codes_file(tmp_path, "wrong_k.npy", codec, np.zeros((5, 10), np.int64),
                                codebook_size=16), "codebooks"),
        "range": (_codes_file(tmp_path, "range.npy", codec, good, codebook_size=32), "codebook size"),
        "dtype": (_codes_file(tmp_path, "dtype.npy", codec, good.astype(np.float32)), "dtype"),
        "model": (_codes_file(tmp_path, "model.npy", codec, good, model_id="someone-else-123"), "model id"),
        "nosidecar": (tmp_path / "lonely.npy", "sidecar"),
    }
    np.save(tmp_path / "lonely.npy", good.astype(np.int16))
    # out-of-range indices hidden behind a correct sidecar
    p = _codes_file(tmp_path, "oob.npy", codec, good)
    arr = np.load(p)
    arr[0, 3] = 99
    np.save(p, arr)
    cases["oob"] = (p, "out of range")
    out = tmp_path / "wavs"
    rc = main(["decode", "-m", str(tiny_model_dir), *[str(c[0]) for c in cases.values()], "-o", str(out),
               "--no-progress"])
    assert rc == 1
    rows = manifest(out, "decode_manifest.jsonl")
    for path, needle in cases.values():
        row = rows[path.name]
        assert row["status"] == "failed" and needle in row["reason"], (path.name, row)
    # the Python API raises CodesError with the same messages
    with pytest.raises(CodesError, match="out of range"):
        validate_codes(arr, {"num_codebooks": 4, "codebook_size": 16}, codec, "x")
    with pytest.raises(CodesError, match="different model id"):
        validate_codes(good.astype(np.int16), {"model_id": "other"}, codec, "x")
    # --ignore-model-id decodes a file from another model id
    assert main(["decode", "-m", str(tiny_model_dir), str(cases["model"][0]), "-o", str(tmp_path / "w2"),
                 "--ignore-model-id", "--no-progress"]) == 0


def test_decode_detects_other_model(tmp_path, tiny_model_dir, other_model_dir, audio_dir):
    out = tmp_path / "codes"
    assert main(["tokenize", "-m", str(tiny_model_dir), str(audio_dir / "f0.wav"), "-o", str(out), "--no-progress"]) == 0
    other = sonotok.load(other_model_dir)
    assert other.model_id != sonotok.load(tiny_model_dir).model_id
    assert main(["decode", "-m", str(other_model_dir), str(out / "f0.npy"), "-o", str(tmp_path / "w"),
                 "--no-progress"]) == 1


def test_tokenize_api_summary(tmp_path, codec, audio_dir):
    s = tokenize(codec, [audio_dir], tmp_path / "c", batch_size=4, progress=False)
    assert (s.written, s.failed, s.skipped) == (6, 0, 0)
    assert s.as_dict()["audio_hours"] > 0
    s2 = tokenize(codec, [audio_dir], tmp_path / "c", batch_size=2, progress=False)
    assert (s2.written, s2.skipped) == (0, 6)


def test_progress_bar_reports_rates(tmp_path, tiny_model_dir, audio_dir, capsys):
    assert main(["tokenize", "-m", str(tiny_model_dir), str(audio_dir), "-o", str(tmp_path / "c")]) == 0
    err = capsys.readouterr().err
    assert "files/s" in err and "audio-h/s" in err and "tokenized 6 files" in err


def test_cli_help_lists_both_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "tokenize" in out and "decode" in out


def test_decode_lower_bitrate_codes(tmp_path, tiny_model_dir, audio_dir):
    out, wavs = tmp_path / "c", tmp_path / "w"
    assert main(["tokenize", "-m", str(tiny_model_dir), str(audio_dir / "f0.wav"), "-o", str(out), "-k", "2",
                 "--no-progress"]) == 0
    assert main(["decode", "-m", str(tiny_model_dir), str(out / "f0.npy"), "-o", str(wavs), "--no-progress"]) == 0
    assert sf.info(str(wavs / "f0.wav")).frames == sf.info(str(audio_dir / "f0.wav")).frames
