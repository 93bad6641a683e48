"""Lightning tokenization: the prediction writer, rank manifests and their merge; 2 CPU processes (gloo)."""

import json

import pytest

from sonotok.tokenizer import tokenize
from sonotok.tokenizer.distributed import merge_manifests, tokenize_distributed


def _rows(out):
    return {r["rel"]: r for r in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}


def _outputs(out):
    rows = _rows(out)
    return {r: (row["status"], row.get("sha256"), row.get("reason")) for r, row in rows.items()}


@pytest.fixture()
def inputs(audio_dir, tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00")
    return [audio_dir, tmp_path / "bad.wav"]


def test_single_process_predict_matches_tokenize(codec, inputs, tmp_path):
    ref, dist = tmp_path / "ref", tmp_path / "dist"
    tokenize(codec, inputs, ref, batch_size=3, progress=False)
    s = tokenize_distributed(codec, inputs, dist, batch_size=2, accelerator="cpu", devices=1)
    assert (s.written, s.failed) == (6, 1)
    assert _outputs(dist) == _outputs(ref)
    assert not list(dist.glob("manifest.rank*.jsonl"))
    s2 = tokenize_distributed(codec, inputs, dist, batch_size=2, accelerator="cpu", devices=1)
    assert s2.skipped == 6 and s2.written == 0  # resume; the bad file is retried (and fails again)


def test_merge_manifests(tmp_path):
    rows = [
        ("manifest.jsonl", {"rel": "a.wav", "source": "a", "status": "ok", "sha256": "1"}),
        ("manifest.rank0.jsonl", {"rel": "b.wav", "source": "b", "status": "ok", "sha256": "2"}),
        ("manifest.rank1.jsonl", {"rel": "c.wav", "source": "c", "status": "failed", "reason": "empty file"}),
        ("manifest.rank1.jsonl", {"rel": "b.wav", "source": "b", "status": "failed", "reason": "dup"}),
    ]
    for name, row in rows:
        with open(tmp_path / name, "a") as f:
            f.write(json.dumps(row) + "\n")
    with open(tmp_path / "manifest.rank1.jsonl", "a") as f:
        f.write('{"rel": "torn"')  # a line cut by a kill
    merged = merge_manifests(tmp_path)
    assert sorted(merged) == ["a.wav", "b.wav", "c.wav"]
    assert merged["b.wav"]["status"] == "ok"  # a duplicate failure from another rank never hides a success
    assert not list(tmp_path.glob("manifest.rank*"))
    assert sorted(_rows(tmp_path)) == ["a.wav", "b.wav", "c.wav"]


@pytest.mark.slow  # ~70 s here: spawning and initialising two gloo processes on 2 shared cores
def test_two_process_ddp_union_equals_single_process(tiny_model_dir, inputs, tmp_path):
    import sonotok

    codec = sonotok.load(tiny_model_dir)
    ref, dist = tmp_path / "ref", tmp_path / "dist"
    tokenize(codec, inputs, ref, batch_size=4, progress=False)
    s = tokenize_distributed(codec, inputs, dist, batch_size=2, accelerator="cpu", devices=2, strategy="ddp_spawn")
    assert (s.written, s.failed) == (6, 1)
    assert _outputs(dist) == _outputs(ref)
    files = lambda d: sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert files(dist) == files(ref)


def test_cli_distributed_flag(tiny_model_dir, audio_dir, tmp_path):
    from sonotok.cli import main

    out = tmp_path / "c"
    assert main(["tokenize", "-m", str(tiny_model_dir), str(audio_dir), "-o", str(out), "--distributed",
                 "--accelerator", "cpu", "--devices", "1", "--no-progress"]) == 0
    assert len(_rows(out)) == 6 and all(r["status"] == "ok" for r in _rows(out).values())
