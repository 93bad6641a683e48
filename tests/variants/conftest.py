import numpy as np
import pytest
import soundfile as sf


@pytest.fixture(scope="session")
def synth24k(tmp_path_factory):
    """Four 1 s harmonic 'voices' at 24 kHz."""
    root = tmp_path_factory.mktemp("synth24k")
    rng = np.random.default_rng(0)
    sr = 24000
    t = np.arange(sr) / sr
    for i in range(4):
        f0 = 110 + 30 * i
        x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 12))
        x = 0.1 * x * (1 + 0.8 * np.sin(2 * np.pi * 3 * t)) + 0.003 * rng.standard_normal(t.size)
        sf.write(root / f"v{i}.wav", x.astype(np.float32), sr)
    return root
