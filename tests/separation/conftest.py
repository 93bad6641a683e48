import json

import numpy as np
import pytest
import soundfile as sf


def _voice(rng, sr, seconds, f0):
    t = np.arange(int(sr * seconds)) / sr
    env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t)
    x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 6)) * env
    x = x + 0.01 * rng.standard_normal(x.shape)
    return (0.2 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="session")
def fake_corpus(tmp_path_factory):
    """A tiny manifest corpus: train speakers a, b, c; test speakers x, y (harmonic 'voices', 16 kHz)."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    sr = 16000
    splits = {"train": {"a": 110, "b": 170, "c": 230}, "test": {"x": 140, "y": 260}}
    for split, spk in splits.items():
        rows = []
        for s, f0 in spk.items():
            for i in range(3):
                rel = f"wavs/{s}/{i}.wav"
                (root / "wavs" / s).mkdir(parents=True, exist_ok=True)
                dur = [0.4, 0.8, 1.2][i]
                sf.write(root / rel, _voice(rng, sr, dur, f0 * (1 + 0.05 * i)), sr)
                rows.append({"path": rel, "duration": dur, "sample_rate": sr, "speaker": s, "split": split})
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root
