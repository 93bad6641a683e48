"""Long files stream through the causal encoder in bounded memory and give the whole-file codes.

Peak RSS (``resource.getrusage``) is measured in a fresh subprocess: after a warm-up stream of a short file,
streaming a long file must not raise the peak by more than a few MiB, although the file's float32 audio
alone is several times larger (and whole-file encoding needs hundreds of MiB of activations).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, resource, sys, torch
torch.set_num_threads(1)
import sonotok
from sonotok.tokenizer import encode_file
model, warm, long, compare = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
codec = sonotok.load(model)
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB
encode_file(codec, warm, long_file_seconds=1.0, chunk_seconds=2.0)
r0 = rss()
codes = encode_file(codec, long, long_file_seconds=1.0, chunk_seconds=2.0)
r1 = rss()
out = {"warm_mib": r0, "growth_mib": r1 - r0, "frames": codes.shape[-1]}
if compare:
    from sonotok.data.audio import load_audio
    whole = codec.encode(load_audio(long)[None])[0]
    out["whole_growth_mib"] = rss() - r1
    out["equal"] = bool(torch.equal(whole, codes))
print(json.dumps(out))
"""


def _write_long(path, seconds, sr=16000):
    """Synthetic tone + noise written block by block (never held whole in memory)."""
    rng = np.random.default_rng(0)
    block = sr * 10
    with sf.SoundFile(str(path), "w", sr, 1, "PCM_16") as f:
        for start in range(0, int(seconds * sr), block):
            n = min(block, int(seconds * sr) - start)
            t = (start + np.arange(n)) / sr
            x = 0.3 * np.sin(2 * np.pi * (150 + 50 * np.sin(2 * np.pi * 0.1 * t)) * t) + 0.05 * rng.standard_normal(n)
            f.write(x.astype(np.float32))
    return path


def _run(tiny_model_dir, tmp_path, seconds, compare):
    from tok_helpers import write_wav

    warm = write_wav(tmp_path / "warm.wav", 5.0)
    long = _write_long(tmp_path / "long.wav", seconds)
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_model_dir), str(warm), str(long), str(int(compare))],
                         capture_output=True, text=True, cwd=REPO, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["frames"] == int(seconds * 50)
    audio_mib = seconds * 16000 * 4 / 2**20
    print(f"{seconds:.0f}s file ({audio_mib:.1f} MiB float32): streaming peak-RSS growth {out['growth_mib']:.1f} MiB, "
          f"whole-file growth {out.get('whole_growth_mib', float('nan')):.1f} MiB")
    # bounded: a few MiB at most, whatever the length (codes kept in memory: 8 bytes * 4 * 50 per second)
    assert out["growth_mib"] < 8.0, out
    # (whole-file encoding's growth is printed for contrast only: the allocator makes it noisy)
    return out


def test_long_file_bounded_memory_fast(tiny_model_dir, tmp_path):
    out = _run(tiny_model_dir, tmp_path, 30.0, compare=True)
    assert out["equal"], "streamed codes differ from whole-file codes"


@pytest.mark.slow
def test_ten_minute_file_bounded_memory(tiny_model_dir, tmp_path):
    _run(tiny_model_dir, tmp_path, 600.0, compare=False)
