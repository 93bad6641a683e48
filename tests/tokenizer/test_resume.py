"""A killed run leaves no half-written code file; re-running resumes and ends with identical outputs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from tok_helpers import write_wav

from sonotok.cli import main
from sonotok.tokenizer.formats import load_codes

REPO = Path(__file__).resolve().parents[2]


def _rows(out):
    p = out / "manifest.jsonl"
    rows = {}
    for line in p.read_text().splitlines() if p.exists() else []:
        try:
            r = json.loads(line)
        except json.JSONDecodeError:  # a line torn by the kill
            continue
        rows[r["rel"]] = r
    return rows


def _digests(out):
    return {r: (row["status"], row.get("sha256")) for r, row in _rows(out).items()}


def test_kill_part_way_then_resume(tmp_path, tiny_model_dir):
    src = tmp_path / "in"
    n_files = 24
    for i in range(n_files):
        write_wav(src / f"d{i % 4}" / f"s{i:03d}.wav", 1.0, seed=i)
    out = tmp_path / "codes"
    cmd = [sys.executable, "-m", "sonotok.cli", "tokenize", "-m", str(tiny_model_dir), str(src), "-o", str(out),
           "-b", "1", "--no-progress", "--threads", "1"]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    man = out / "manifest.jsonl"
    while time.time() < deadline and proc.poll() is None:
        if man.exists() and len(man.read_text().splitlines()) >= 3:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {r for r, row in _rows(out).items() if row["status"] == "ok"}
    assert 3 <= len(done_before) < n_files, len(done_before)
    # every code file present after the kill is complete (atomic writes): it loads and has its metadata
    for p in out.rglob("*.npy"):
        codes, meta = load_codes(p)
        assert codes.shape[1] == meta["num_frames"] == 50
    # resume in-process; the finished files are verified (size + sha256) and skipped
    mtimes = {r: (out / _rows(out)[r]["codes"]).stat().st_mtime_ns for r in done_before}
    assert main(["tokenize", "-m", str(tiny_model_dir), str(src), "-o", str(out), "-b", "4", "--no-progress"]) == 0
    assert {r: (out / _rows(out)[r]["codes"]).stat().st_mtime_ns for r in done_before} == mtimes
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")], "partial temp files left"
    # identical to an uninterrupted run
    clean = tmp_path / "clean"
    assert main(["tokenize", "-m", str(tiny_model_dir), str(src), "-o", str(clean), "--no-progress"]) == 0
    assert _digests(out) == _digests(clean) and len(_digests(out)) == n_files
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == sorted(p.relative_to(clean) for p in clean.rglob("*"))


def test_resume_redoes_damaged_or_missing_outputs(tmp_path, tiny_model_dir, audio_dir):
    out = tmp_path / "codes"
    args = ["tokenize", "-m", str(tiny_model_dir), str(audio_dir), "-o", str(out), "--no-progress"]
    assert main(args) == 0
    ref = _digests(out)
    damaged = out / "sub/f1.npy"
    arr = np.load(damaged)
    arr[0, 0] = (arr[0, 0] + 1) % 16
    np.save(damaged, arr)  # same size, different hash
    (out / "f2.npy").unlink()
    (out / ".f4.npy.abc123.tmp").write_bytes(b"half")  # what a kill between mkstemp and rename leaves
    assert main(args) == 0
    assert _digests(out) == ref
    assert not list(out.rglob("*.tmp"))
