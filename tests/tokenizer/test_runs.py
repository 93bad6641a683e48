"""One run per output folder (lock), deterministic encoding and code variants, resume by path and stamp."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tok_helpers import write_wav

from sonotok.cli import main
from sonotok.tokenizer import tokenize
from sonotok.tokenizer.determinism import deterministic_encoding, encoding_variant
from sonotok.tokenizer.manifest import LOCK_NAME, RunLock, RunLockedError

REPO = Path(__file__).resolve().parents[2]


def _rows(out):
    return {r["rel"]: r for r in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}


# ------------------------------------------------------------------------------------------ the lock
def _start_run(model_dir, src, out, *extra):
    cmd = [sys.executable, "-m", "sonotok.cli", "tokenize", "-m", str(model_dir), str(src), "-o", str(out),
           "-b", "1", "--no-progress", "--threads", "1", *extra]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_lock(out, proc, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        if (out / LOCK_NAME).exists() and (out / "manifest.jsonl").exists():
            return
        time.sleep(0.01)
    raise AssertionError(f"the first run never held the folder (rc {proc.poll()})")


def test_a_second_run_on_the_same_out_refuses_then_waits(tmp_path, tiny_model_dir, capsys):
    src = tmp_path / "in"
    n = 16
    for i in range(n):
        write_wav(src / f"s{i:02d}.wav", 1.0, seed=i)
    out = tmp_path / "codes"
    first = _start_run(tiny_model_dir, src, out)
    _wait_for_lock(out, first)
    # started while the first one works: refused at once, with the owner named, and nothing written
    before = (out / "manifest.jsonl").read_text()
    rc = main(["tokenize", "-m", str(tiny_model_dir), str(src), "-o", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"pid {first.pid}" in err and "another sonotok tokenize run" in err and str(out) in err
    assert (out / "manifest.jsonl").read_text().startswith(before.rsplit("\n", 1)[0])
    # one more, told to wait: it runs once the first is done, and finds everything finished
    second = _start_run(tiny_model_dir, src, out, "--wait", "300", "--summary-json")
    assert first.wait(300) == 0, first.stderr.read()
    out2, err2 = second.communicate(timeout=300)
    assert second.returncode == 0, err2
    assert json.loads(out2.strip().splitlines()[-1])["skipped"] == n
    lines = (out / "manifest.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]  # every line whole: no interleaved writers
    assert len(rows) == n and {r["status"] for r in rows} == {"ok"}
    assert not (out / LOCK_NAME).exists()


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path, codec, audio_dir):
    out = tmp_path / "codes"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from sonotok.tokenizer.manifest import RunLock; "
        "RunLock(sys.argv[2]).acquire(); print('locked', flush=True); time.sleep(600)"), str(REPO), str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            tokenize(codec, [audio_dir], out, progress=False)
        with pytest.raises(RunLockedError):
            RunLock(out, timeout=0.3).acquire()  # waits, then gives up
    finally:
        holder.kill()
        holder.wait()
    assert (out / LOCK_NAME).exists()  # the dead owner's file is still there, with its pid
    s = tokenize(codec, [audio_dir], out, progress=False)
    assert s.written == 6 and not (out / LOCK_NAME).exists()


# ------------------------------------------------------------------------------------------ determinism
def test_deterministic_encoding_is_scoped_and_restored():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark,
              torch.backends.cudnn.deterministic, torch.are_deterministic_algorithms_enabled(),
              torch.get_float32_matmul_precision(), os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    try:
        with pytest.raises(RuntimeError, match="inside"):
            with deterministic_encoding():
                assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
                assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
                assert torch.are_deterministic_algorithms_enabled()
                assert torch.get_float32_matmul_precision() == "highest"
                raise RuntimeError("inside")
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cudnn.benchmark
        assert torch.get_float32_matmul_precision() == "high"
        assert not torch.are_deterministic_algorithms_enabled()
        assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == before[-1]
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before[0], before[1]
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[2], before[3]
        torch.use_deterministic_algorithms(before[4])
        torch.set_float32_matmul_precision(before[5])


def test_tokenize_encodes_deterministically_and_records_the_variant(tmp_path, codec, audio_dir, monkeypatch):
    seen = []
    encode = codec.encode

    def spy(*a, **kw):
        seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
                     torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark))
        return encode(*a, **kw)

    monkeypatch.setattr(codec, "encode", spy)
    torch.backends.cudnn.allow_tf32 = True  # torch's default: TF32 convolutions on
    out = tmp_path / "codes"
    assert tokenize(codec, [audio_dir], out, batch_size=2, progress=False).written == 6
    assert seen and set(seen) == {(False, False, True, False)}
    assert torch.backends.cudnn.allow_tf32 and not torch.are_deterministic_algorithms_enabled()  # restored
    for row in _rows(out).values():
        assert (row["device"], row["precision"]) == ("cpu", "float32")
    assert encoding_variant(codec) == {"device": "cpu", "precision": "float32"}


def test_resume_with_another_variant_reencodes_instead_of_mixing(tmp_path, codec, audio_dir):
    out = tmp_path / "codes"
    tokenize(codec, [audio_dir], out, progress=False)
    man = out / "manifest.jsonl"
    rows = [json.loads(x) for x in man.read_text().splitlines()]
    for r in rows[:4]:  # as if these had been encoded on a GPU
        r["device"] = "cuda/Some GPU"
    man.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = tokenize(codec, [audio_dir], out, progress=False)
    assert (s.written, s.skipped, s.reencoded) == (4, 2, 4)
    assert {r["device"] for r in _rows(out).values()} == {"cpu"}
    from sonotok.tokenizer import format_summary

    assert "re-encoded 4 finished files made on another device or precision" in format_summary(s)


# ------------------------------------------------------------------------------------------ resume (T4)
def test_resume_matches_another_spelling_of_the_same_source(tmp_path, codec, audio_dir, monkeypatch):
    out = tmp_path / "codes"
    assert tokenize(codec, [audio_dir], out, progress=False).written == 6
    link = tmp_path / "link"
    link.symlink_to(audio_dir, target_is_directory=True)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    for spelling in (Path("link"), Path("sub") / ".." / "link", Path(os.path.relpath(audio_dir, tmp_path))):
        s = tokenize(codec, [spelling], out, progress=False)
        assert (s.skipped, s.written) == (6, 0), spelling


def test_resume_does_not_rehash_unchanged_outputs(tmp_path, codec, audio_dir, monkeypatch):
    import numpy as np

    import sonotok.tokenizer.manifest as manifest

    out = tmp_path / "codes"
    tokenize(codec, [audio_dir], out, progress=False)
    calls = []
    digest = manifest.file_digest
    monkeypatch.setattr(manifest, "file_digest", lambda p: calls.append(p) or digest(p))
    assert tokenize(codec, [audio_dir], out, progress=False).skipped == 6
    assert calls == []  # size + modification time as recorded: nothing re-read
    assert tokenize(codec, [audio_dir], out, progress=False, verify="sha256").skipped == 6
    assert len(calls) == 6
    # a file damaged in place with its time put back passes the stamp but not the sha256 check
    p = out / "f0.npy"
    st = p.stat()
    arr = np.load(p)
    arr[0, 0] = (arr[0, 0] + 1) % 16
    np.save(p, arr)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert tokenize(codec, [audio_dir], out, progress=False).skipped == 6
    s = tokenize(codec, [audio_dir], out, progress=False, verify="sha256")
    assert (s.skipped, s.written) == (5, 1)
    # touched but intact: re-hashed once, found intact, skipped
    os.utime(out / "f2.npy")
    calls.clear()
    assert tokenize(codec, [audio_dir], out, progress=False).skipped == 6 and len(calls) == 1
