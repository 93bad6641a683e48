import numpy as np
import pytest
import soundfile as sf


@pytest.fixture(scope="session")
def synth_folder(tmp_path_factory):
    """Six 1.5 s harmonic 'voices' at 16 kHz (train and valid)."""
    root = tmp_path_factory.mktemp("synth")
    rng = np.random.default_rng(0)
    sr = 16000
    t = np.arange(int(sr * 1.5)) / sr
    for i in range(6):
        f0 = 110 + 25 * i
        x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 16))
        x = 0.1 * x * (1 + 0.8 * np.sin(2 * np.pi * 3 * t)) + 0.003 * rng.standard_normal(t.size)
        sf.write(root / f"v{i}.wav", x.astype(np.float32), sr)
    return root
