"""The shipped pretrained default loads by name and reconstructs real held-out speech."""

from pathlib import Path

import pytest
import torch

import sonotok
from sonotok.model_io import PRETRAINED_DIR

SOUNDS = Path("/usr/share/asterisk/sounds")
# prompts of the held-out speakers (never in the training split)
HELD_OUT = [SOUNDS / "fr_CA_f_June" / "vm-intro.g722", SOUNDS / "ru_RU_f_IvrvoiceRU" / "vm-intro.g722"]

pytestmark = pytest.mark.skipif(not (PRETRAINED_DIR / "default" / "model.safetensors").is_file(),
                                reason="no shipped pretrained model in this build")


def test_default_loads_by_name_with_its_card():
    codec = sonotok.load("default")
    assert codec.sample_rate == 16000 and codec.channels == 1
    assert codec.bitrate() <= 4000
    assert codec.meta["model_id"] == codec.model_id
    assert codec.meta.get("train_steps", 0) > 0
    x = torch.randn(1, 1, 8000) * 0.05
    codes = codec.encode(x)
    assert codes.shape == (1, codec.num_codebooks, 25)
    assert codec.decode(codes).shape == (1, 1, 8000)


@pytest.mark.skipif(not all(p.is_file() for p in HELD_OUT), reason="Asterisk sound packages not installed")
@pytest.mark.parametrize("path", HELD_OUT, ids=lambda p: p.parent.name)
def test_default_reconstructs_held_out_speech(path):
    from sonotok.data.corpus import _decode_g722
    from sonotok.metrics.quality import stoi

    wav = torch.from_numpy(_decode_g722(path)).float()[None, None]
    codec = sonotok.load("default")
    recon = codec.decode(codec.encode(wav))[..., : wav.shape[-1]]
    score = float(stoi(wav[0, 0], recon[0, 0], 16000))
    # a floor far above an untrained or broken model (about 0.4), below the measured 0.89 / 0.88
    assert score > 0.84, f"STOI {score:.3f} on {path.name}"
    level_in = 20 * torch.log10(wav.pow(2).mean().sqrt())
    level_out = 20 * torch.log10(recon.pow(2).mean().sqrt())
    assert abs(float(level_out - level_in)) < 4.0, "reconstruction loudness off by more than 4 dB"


@pytest.mark.skipif(not all(p.is_file() for p in HELD_OUT), reason="Asterisk sound packages not installed")
@pytest.mark.parametrize("path", HELD_OUT, ids=lambda p: p.parent.name)
def test_default_at_half_the_bitrate(path):
    """One model, two rates: the first 4 of 8 FSQ groups (1.99 kbps) still reconstruct the speech."""
    from sonotok.data.corpus import _decode_g722
    from sonotok.metrics.quality import stoi

    wav = torch.from_numpy(_decode_g722(path)).float()[None, None]
    codec = sonotok.load("default")
    assert codec.bitrate(4) <= 2000
    codes = codec.encode(wav, num_codebooks=4)
    assert codes.shape[1] == 4
    recon = codec.decode(codes)[..., : wav.shape[-1]]
    full = codec.decode(codec.encode(wav))[..., : wav.shape[-1]]
    half_score = float(stoi(wav[0, 0], recon[0, 0], 16000))
    full_score = float(stoi(wav[0, 0], full[0, 0], 16000))
    assert half_score > 0.80, f"STOI {half_score:.3f} at 4 codebooks on {path.name}"
    assert half_score < full_score, "dropping half the codes should cost something"
