"""The separation training-mixture recipe options (issue 16): speaker weighting, tiny-speaker filter,
utterance trimming, minimum overlap of the sources; determinism; training-only in the datamodule."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sonotok.data.mixtures import (
    MixtureDataModule,
    MixtureDataset,
    MixtureError,
    activity,
    fixed_test_set,
    overlap_fraction,
    speech_span,
)

SR = 16000


def _tone(seconds, f0, lead=0.0, trail=0.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 5))
    x = 0.2 * x / np.abs(x).max()
    return np.concatenate([np.zeros(int(SR * lead)), x, np.zeros(int(SR * trail))]).astype(np.float32)


def _corpus(root: Path, spec: dict) -> Path:
    """``spec``: speaker -> list of (voiced seconds, leading silence, trailing silence) clips."""
    rows = []
    for k, (spk, clips) in enumerate(spec.items()):
        (root / spk).mkdir(parents=True, exist_ok=True)
        for i, (sec, lead, trail) in enumerate(clips):
            rel = f"{spk}/{i}.wav"
            x = _tone(sec, 110 + 37 * k + 5 * i, lead, trail, seed=k * 100 + i)
            sf.write(root / rel, x, SR)
            rows.append({"path": rel, "duration": len(x) / SR, "speaker": spk})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "train.jsonl"


@pytest.fixture(scope="module")
def unbalanced(tmp_path_factory):
    """One speaker with 8 s of audio, three with 0.6 s."""
    spec = {"big": [(1.0, 0.0, 0.0)] * 8, **{f"small{i}": [(0.6, 0.0, 0.0)] for i in range(3)}}
    return _corpus(tmp_path_factory.mktemp("unbalanced"), spec)


@pytest.fixture(scope="module")
def padded(tmp_path_factory):
    """Every clip 0.4 s of voice between 0.5 s of leading and 0.5 s of trailing silence; speaker 'sparse'
    holds 0.1 s of voice in 1.9 s of silence."""
    spec = {s: [(0.4, 0.5, 0.5), (0.5, 0.5, 0.5)] for s in ("a", "b", "c")}
    spec["sparse"] = [(0.1, 0.9, 0.9)]
    return _corpus(tmp_path_factory.mktemp("padded"), spec)


def _share(ds, speaker, n=400):
    return np.mean([speaker in ds.describe(i)["speakers"] for i in range(n)])


def test_speaker_weighting_follows_the_amount_of_audio(unbalanced):
    uniform = MixtureDataset(unbalanced, 2, 8000, 1.0, length=10)
    by_duration = MixtureDataset(unbalanced, 2, 8000, 1.0, length=10, speaker_weighting="duration")
    by_sqrt = MixtureDataset(unbalanced, 2, 8000, 1.0, length=10, speaker_weighting="sqrt")
    assert by_duration.speaker_seconds["big"] == pytest.approx(8.0)
    u, s, d = _share(uniform, "big"), _share(by_sqrt, "big"), _share(by_duration, "big")
    assert 0.4 < u < 0.6  # 2 of 4 ids
    assert u < s < d and d > 0.9
    # still two different speakers every time
    assert all(len(set(by_duration.describe(i)["speakers"])) == 2 for i in range(100))


def test_weighting_needs_durations(tmp_path, unbalanced):
    rows = [json.loads(line) for line in unbalanced.read_text().splitlines()]
    for r in rows:
        if r["speaker"] == "small0":
            r.pop("duration")
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for r in {r["path"].split("/")[0] for r in rows}:
        (tmp_path / r).symlink_to(unbalanced.parent / r)
    MixtureDataset(tmp_path / "train.jsonl", 2, 8000, 1.0)  # uniform draws do not need them
    with pytest.raises(MixtureError, match="needs a positive 'duration' for every speaker; no audio listed for small0"):
        MixtureDataset(tmp_path / "train.jsonl", 2, 8000, 1.0, speaker_weighting="sqrt")


def test_min_speaker_seconds_drops_tiny_speakers_and_names_the_problem(unbalanced):
    ds = MixtureDataset(unbalanced, 1, 8000, 1.0, length=10, min_speaker_seconds=5.0)
    assert ds.speakers == ["big"]
    with pytest.raises(MixtureError, match="min_speaker_seconds=5.0 leaves 1 of 4 speakers"):
        MixtureDataset(unbalanced, 2, 8000, 1.0, min_speaker_seconds=5.0)


@pytest.mark.parametrize("kw, msg", [
    ({"speaker_weighting": "loud"}, "speaker_weighting must be one of uniform, sqrt, duration"),
    ({"min_overlap": 1.5}, "min_overlap is a fraction"),
    ({"trim_db": -3}, "trim_db must be a positive"),
    ({"speed_range": (0.1, 3.0)}, "speed_range must be"),
    ({"speed_range": (1.1, 0.9)}, "speed_range must be"),
    ({"eq_db": -1}, "eq_db must be >= 0"),
])
def test_bad_recipe_options_are_clear_errors(unbalanced, kw, msg):
    with pytest.raises(MixtureError, match=msg):
        MixtureDataset(unbalanced, 2, 8000, 1.0, **kw)


def test_speech_span_and_trimmed_tracks(padded):
    a, b = speech_span(str((padded.parent / "a/0.wav").resolve()), 8000, 30.0)
    assert a == pytest.approx(0.48, abs=0.03) and b == pytest.approx(0.92, abs=0.03)
    plain = MixtureDataset(padded, 2, 8000, 2.0, length=20, seed=1, min_speaker_seconds=2.0)
    trimmed = MixtureDataset(padded, 2, 8000, 2.0, length=20, seed=1, min_speaker_seconds=2.0, trim_db=30.0)
    assert "sparse" not in plain.speakers
    act_plain = np.mean([float(activity(plain[(i, 0)]["sources"], 8000).float().mean()) for i in range(20)])
    act_trim = np.mean([float(activity(trimmed[(i, 0)]["sources"], 8000).float().mean()) for i in range(20)])
    # untrimmed: ~30% voiced (0.45 s voice per 1.45 s clip); trimmed: only the drawn pauses (<= 0.3 s) are silent
    assert act_plain < 0.45 and act_trim > 0.65
    for i in range(20):
        for src in trimmed.describe(i, 0)["sources"]:
            assert all(pc["offset"] >= 0.45 for pc in src["pieces"])  # the leading 0.5 s silence is skipped


def test_tracks_concatenate_utterances_of_one_speaker(padded):
    ds = MixtureDataset(padded, 2, 8000, 3.0, length=30, seed=2, trim_db=30.0)
    own = {s: {r["abspath"] for r in rows} for s, rows in ds.rows.items()}
    joined = 0
    for i in range(30):
        for src in ds.describe(i, 0)["sources"]:
            assert {pc["path"] for pc in src["pieces"]} <= own[src["speaker"]]
            joined += len(src["pieces"]) > 1
            places = [pc["place"] for pc in src["pieces"]]
            assert places == sorted(places) and places[0] == 0.0
    assert joined > 30  # 3 s tracks of <= 0.5 s utterances are made of several


def test_min_overlap_redraws_until_both_sources_are_active(padded):
    loose = MixtureDataset(padded, 2, 8000, 2.0, length=40, seed=3, trim_db=30.0)
    strict = MixtureDataset(padded, 2, 8000, 2.0, length=40, seed=3, trim_db=30.0, min_overlap=0.4)
    ov_loose = [overlap_fraction(loose[(i, 0)]["sources"], 8000) for i in range(40)]
    ov_strict = [overlap_fraction(strict[(i, 0)]["sources"], 8000) for i in range(40)]
    assert min(ov_loose) < 0.4  # 'sparse' (0.1 s of voice) makes some draws barely overlap
    assert min(ov_strict) >= 0.4
    # no redraw was needed where the first draw passed: those items are the loose ones
    same = [torch.equal(loose[(i, 0)]["mix"], strict[(i, 0)]["mix"]) for i in range(40)]
    assert all(s for s, o in zip(same, ov_loose) if o >= 0.4) and not all(same)


@pytest.fixture(scope="module")
def sines(tmp_path_factory):
    """Two 'speakers' holding one pure sine each (300 Hz and 500 Hz), 3 s long."""
    root = tmp_path_factory.mktemp("sines")
    rows = []
    for spk, f in (("p", 300.0), ("q", 500.0)):
        (root / spk).mkdir()
        t = np.arange(3 * SR) / SR
        sf.write(root / spk / "0.wav", (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32), SR)
        rows.append({"path": f"{spk}/0.wav", "duration": 3.0, "speaker": spk})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "train.jsonl"


def _peak_hz(x, sr=8000):
    spec = torch.fft.rfft(x * torch.hann_window(x.numel())).abs()
    return float(torch.fft.rfftfreq(x.numel(), 1 / sr)[spec.argmax()])


def test_speed_perturbation_shifts_pitch_and_keeps_the_length(sines):
    plain = MixtureDataset(sines, 2, 8000, 2.0, length=4, seed=0)
    fast = MixtureDataset(sines, 2, 8000, 2.0, length=4, seed=0, speed_range=(1.2, 1.2))
    for i in range(4):
        spk = fast.describe(i, 0)["speakers"]
        a, b = plain[(i, 0)]["sources"], fast[(i, 0)]["sources"]
        assert b.shape == a.shape == (2, 16000)
        assert all(src["speed"] == 1.2 for src in fast.describe(i, 0)["sources"])
        for k, name in enumerate(spk):
            f = {"p": 300.0, "q": 500.0}[name]
            assert _peak_hz(a[k]) == pytest.approx(f, abs=2)
            assert _peak_hz(b[k]) == pytest.approx(1.2 * f, abs=3)
        assert float(b.abs().sum(-1).min()) > 0  # the track still fills the segment
    ranged = MixtureDataset(sines, 2, 8000, 2.0, length=40, seed=0, speed_range=(0.9, 1.1))
    speeds = [src["speed"] for i in range(40) for src in ranged.describe(i, 0)["sources"] if "speed" in src]
    assert min(speeds) >= 0.9 and max(speeds) <= 1.1 and len(set(speeds)) > 5


@pytest.fixture(scope="module")
def noises(tmp_path_factory):
    """Three 'speakers' of white noise (broadband, so both shelves act), 2 s each."""
    root = tmp_path_factory.mktemp("noises")
    rows = []
    for k, spk in enumerate("uvw"):
        (root / spk).mkdir()
        x = 0.1 * np.random.default_rng(k).standard_normal(2 * SR)
        sf.write(root / spk / "0.wav", x.astype(np.float32), SR)
        rows.append({"path": f"{spk}/0.wav", "duration": 2.0, "speaker": spk})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "train.jsonl"


def test_random_shelving_eq_changes_the_spectral_balance(noises):
    plain = MixtureDataset(noises, 2, 8000, 1.0, length=30, seed=4)
    eq = MixtureDataset(noises, 2, 8000, 1.0, length=30, seed=4, eq_db=9.0)
    assert all("eq_db" not in src for src in plain.describe(0, 0)["sources"])

    def balance(x):  # energy above 1.5 kHz over energy below 400 Hz, dB, per source
        spec = torch.fft.rfft(x).abs().pow(2)
        f = torch.fft.rfftfreq(x.shape[-1], 1 / 8000)
        return (10 * torch.log10(spec[..., f > 1500].sum(-1) / spec[..., f < 400].sum(-1))).tolist()

    shift = []
    for i in range(30):
        gains = [src["eq_db"] for src in eq.describe(i, 0)["sources"]]
        assert all(-9.0 <= g <= 9.0 for pair in gains for g in pair)
        d = np.array(balance(eq[(i, 0)]["sources"])) - np.array(balance(plain[(i, 0)]["sources"]))
        shift += [(hi - lo, dd) for (lo, hi), dd in zip(gains, d)]
    x, y = np.array(shift).T
    assert np.corrcoef(x, y)[0, 1] > 0.9  # the measured tilt follows the drawn shelf gains


def test_recipe_options_are_deterministic_by_seed(padded):
    kw = dict(length=10, trim_db=30.0, min_overlap=0.5, speaker_weighting="sqrt", speed_range=(0.9, 1.1), eq_db=6.0)
    a, b = MixtureDataset(padded, 2, 8000, 2.0, seed=5, **kw), MixtureDataset(padded, 2, 8000, 2.0, seed=5, **kw)
    c = MixtureDataset(padded, 2, 8000, 2.0, seed=6, **kw)
    for i in range(5):
        assert torch.equal(a[(i, 1)]["mix"], b[(i, 1)]["mix"])
    assert not all(torch.equal(a[(i, 1)]["mix"], c[(i, 1)]["mix"]) for i in range(5))
    fixed = MixtureDataset(padded, 2, 8000, 2.0, seed=5, fixed=True, **kw)
    assert torch.equal(fixed[(3, 0)]["mix"], fixed[(3, 9)]["mix"])


def test_datamodule_applies_the_recipe_to_training_mixtures_only(padded):
    dm = MixtureDataModule(str(padded), str(padded), segment_seconds=2.0, valid_size=4, valid_segment_seconds=2.0,
                           trim_db=30.0, min_overlap=0.4, speaker_weighting="sqrt", min_speaker_seconds=0.5)
    dm.setup("fit")
    tr, va = dm.train_dataset, dm.valid_dataset
    assert (tr.trim_db, tr.min_overlap, tr.speaker_weighting, tr.min_speaker_seconds) == (30.0, 0.4, "sqrt", 0.5)
    assert (va.trim_db, va.min_overlap, va.speaker_weighting, va.min_speaker_seconds) == (None, 0.0, "uniform", 0.0)
    ref = fixed_test_set(padded, 4, 2, 8000, 2.0, seed=1)
    assert [va.describe(i) for i in range(4)] == [ref.describe(i) for i in range(4)]


def test_separation_configs_carry_the_fixed_recipe():
    from hydra.utils import instantiate

    from sonotok.training.train import compose_config

    for preset in ("convtasnet_small_8k", "convtasnet_small_causal_8k"):
        cfg = compose_config([f"separation={preset}"], config_name="separate")
        d = cfg.data
        assert list(d.speed_range) == [0.9, 1.1] and d.eq_db == 6.0
        assert d.speaker_weighting == "uniform" and d.trim_db is None and d.min_overlap == 0.0
        dm = instantiate(d, train="unused.jsonl", valid=None)
        assert dm.train_kwargs["speed_range"] == (0.9, 1.1) and dm.train_kwargs["eq_db"] == 6.0
    # presets that do not opt in keep the shipped recipe
    tiny = compose_config(["separation=convtasnet_tiny"], config_name="separate").data
    assert tiny.speed_range is None and tiny.eq_db == 0.0 and tiny.min_overlap == 0.0
    # the codec's data node has none of these keys
    codec = compose_config([], config_name="train")
    assert "min_overlap" not in codec.data and "speaker_weighting" not in codec.data
