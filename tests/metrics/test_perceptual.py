"""DNSMOS and speaker similarity (sonotok.metrics.perceptual) on real speech, and through the evaluators."""

from pathlib import Path

import numpy as np
import pytest
import torch

SOUNDS = Path("/usr/share/asterisk/sounds")
JUNE, IVR = SOUNDS / "fr_CA_f_June" / "vm-intro.g722", SOUNDS / "ru_RU_f_IvrvoiceRU" / "vm-intro.g722"
JUNE2 = SOUNDS / "fr_CA_f_June" / "vm-options.g722"

pytestmark = pytest.mark.skipif(not all(p.is_file() for p in (JUNE, IVR, JUNE2)),
                                reason="Asterisk sound packages not installed")


def _wav(path):
    from sonotok.data.corpus import _decode_g722

    return torch.from_numpy(_decode_g722(path)).float()


@pytest.fixture(scope="module")
def metrics():
    from sonotok.metrics.perceptual import PerceptualMetrics

    return PerceptualMetrics(threads=1)


def test_scores_follow_quality_and_identity(metrics):
    x = _wav(JUNE)
    g = torch.Generator().manual_seed(0)
    clean = metrics(x, x, 16000)
    noisy = metrics(x, x + 0.03 * torch.randn(x.shape, generator=g), 16000)
    assert set(clean) == set(metrics.keys()) == {"dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "spk_sim"}
    assert clean["spk_sim"] > 0.999  # the same signal: the same embedding
    assert clean["dnsmos_ovrl"] > noisy["dnsmos_ovrl"] + 0.5, (clean, noisy)
    assert clean["dnsmos_bak"] > noisy["dnsmos_bak"] + 0.5
    # another prompt of the same speaker is closer than another speaker
    same = metrics(x, _wav(JUNE2)[: len(x)], 16000)["spk_sim"]
    y = _wav(IVR)
    y = torch.nn.functional.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]
    other = metrics(x, y, 16000)["spk_sim"]
    assert same > other + 0.05, (same, other)


def test_silence_and_other_rates_do_not_crash(metrics):
    x = _wav(JUNE)
    out = metrics(x, torch.zeros_like(x), 16000)
    assert all(np.isnan(v) for v in out.values())
    x8 = torch.from_numpy(__import__("torchaudio").functional.resample(x, 16000, 8000).numpy())
    out8 = metrics(x8, x8, 8000)
    assert out8["spk_sim"] > 0.99 and 1.0 <= out8["dnsmos_ovrl"] <= 5.0


def test_evaluators_carry_the_extra_metrics(metrics, tmp_path):
    import soundfile as sf

    from sonotok.evaluation.classic import evaluate_classic, parse_classic, require_tools

    try:
        require_tools(("opus",))
    except Exception:
        pytest.skip("opus-tools not installed")
    p = tmp_path / "june.wav"
    sf.write(p, _wav(JUNE).numpy(), 16000)
    res = evaluate_classic(parse_classic("opus:12"), [p], 16000, extra_metrics=metrics)
    row = res["files"][0]
    assert {"dnsmos_ovrl", "spk_sim"} <= set(row) and {"dnsmos_ovrl", "spk_sim"} <= set(res["summary"])
    assert row["spk_sim"] > 0.8  # Opus 12 kbps keeps the voice


def test_eval_cli_perceptual_columns(tmp_path, monkeypatch, capsys):
    import argparse
    import json

    import soundfile as sf

    import sonotok
    from sonotok.cli import eval as eval_cli

    class Pcm8(torch.nn.Module):  # one 8-bit linear code per sample: keeps the voice, adds audible noise
        sample_rate, hop_length, frame_rate, num_codebooks, codebook_size = 16000, 1, 16000.0, 1, 256

        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(()))

        def encode(self, wav):
            return ((wav.clamp(-1, 1) + 1) * 127.5).round().long()

        def decode(self, codes):
            return codes.float() / 127.5 - 1

    p = tmp_path / "june.wav"
    sf.write(p, _wav(JUNE).numpy(), 16000)
    monkeypatch.setattr(sonotok, "load", lambda path, map_location="cpu": Pcm8())
    parser = argparse.ArgumentParser(prog="sonotok")
    eval_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "--model", "m", "--data", str(p), "--device", "cpu", "--perceptual",
                              "--no-measure", "--json"])
    assert args.func(args) == 0
    res = json.loads(capsys.readouterr().out)
    row = res["files"][0]
    assert row["spk_sim"] > 0.9  # 8-bit PCM keeps the voice
    assert 1.0 <= res["summary"]["dnsmos_ovrl"] <= 5.0
