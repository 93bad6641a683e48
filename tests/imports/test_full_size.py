"""Full-size comparison: the released configurations of EnCodec 24 kHz, DAC 16 / 44.1 kHz and Mimi, built
by the reference packages with random weights, imported with sonotok (slow, needs the reference venv).

Run::

    SONOTOK_REFERENCE_PYTHON=/work/refvenv/bin/python .venv/bin/python -m pytest -m slow tests/imports/test_full_size.py

``SONOTOK_REFERENCE_PYTHON`` is a Python with ``encodec``, ``descript-audio-codec`` and ``moshi`` installed
(see ``make_fixtures.py``); without it the test is skipped. ``SONOTOK_FULL_FIXTURES=DIR`` reuses files
written earlier by ``make_fixtures.py --full --out DIR`` (about 1.1 GB).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from sonotok.cli.import_ import import_checkpoint
from sonotok.model_io import load_model

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent


def _reference_python() -> str | None:
    py = os.environ.get("SONOTOK_REFERENCE_PYTHON")
    if not py:
        return None
    ok = subprocess.run([py, "-c", "import encodec, dac, moshi.models.loaders"], capture_output=True)
    return py if ok.returncode == 0 else None


@pytest.fixture(scope="module")
def full_dir(tmp_path_factory) -> Path:
    given = os.environ.get("SONOTOK_FULL_FIXTURES")
    if given and (Path(given) / "mimi" / "reference.json").is_file():
        return Path(given)
    py = _reference_python()
    if py is None:
        pytest.skip("reference packages absent: set SONOTOK_REFERENCE_PYTHON to a Python with encodec, "
                    "descript-audio-codec and moshi (see tests/imports/make_fixtures.py)")
    out = tmp_path_factory.mktemp("full")
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    subprocess.run([py, str(HERE / "make_fixtures.py"), "--full", "--out", str(out)], check=True, env=env)
    return out


def _check(model, ref, codes_key, wav, what, assert_codes_match):
    return assert_codes_match(model.encode(wav), ref[codes_key], model, wav, what)


def test_encodec_24khz_full_size(full_dir, tmp_path, assert_codes_match, reference_factory):
    ref = reference_factory("encodec_24khz", full_dir)
    for bw in ref.meta["bandwidths"]:
        model = load_model(import_checkpoint("encodec_24khz", ref.checkpoint, tmp_path / f"m{bw}", bandwidth=bw))
        assert model.num_codebooks == int(bw / 0.75)
        for sig in ref.meta["signals"]:
            for n in ref.meta["lengths"]:
                wav = ref[f"input/{sig}"][..., :n]
                _check(model, ref, f"codes/{bw}/{sig}/{n}", wav, f"{bw} {sig} {n}", assert_codes_match)
                if f"audio/{bw}/{sig}/{n}" in ref:
                    audio = model.decode(ref[f"codes/{bw}/{sig}/{n}"])
                    assert (audio - ref[f"audio/{bw}/{sig}/{n}"]).abs().max() < 1e-4


@pytest.mark.parametrize("family", ["dac_16khz", "dac_44khz"])
def test_dac_full_size(full_dir, tmp_path, family, assert_codes_match, reference_factory):
    ref = reference_factory(family, full_dir)
    model = load_model(import_checkpoint(family, ref.checkpoint, tmp_path / "m"))
    for sig in ref.meta["signals"]:
        for n in ref.meta["lengths"]:
            wav = ref[f"input/{sig}"][..., :n]
            _check(model, ref, f"codes/{sig}/{n}", wav, f"{sig} {n}", assert_codes_match)
            audio = model.decode(ref[f"codes/{sig}/{n}"])
            assert (audio - ref[f"audio/{sig}/{n}"]).abs().max() < 1e-4


def test_mimi_full_size(full_dir, tmp_path, assert_codes_match, reference_factory):
    ref = reference_factory("mimi", full_dir)
    models = {k: load_model(import_checkpoint("mimi", ref.checkpoint, tmp_path / f"m{k}", num_codebooks=k))
              for k in ref.meta["num_codebooks"]}
    for k, model in models.items():
        for sig in ref.meta["signals"]:
            for n in ref.meta["lengths"]:
                wav = ref[f"input/{sig}"][..., :n]
                _check(model, ref, f"codes/{k}/{sig}/{n}", wav, f"k={k} {sig} {n}", assert_codes_match)
    model = models[max(models)]
    for sig in ref.meta["signals"]:
        n = ref.meta["lengths"][-1]
        audio = model.decode(ref[f"codes/{max(models)}/{sig}/{n}"])
        assert (audio - ref[f"audio/{sig}/{n}"]).abs().max() < 1e-4
        wav = ref[f"input/{sig}"]
        with model.streaming(1) as s:
            codes = torch.cat([s.encode(wav[..., i : i + 1920]) for i in range(0, wav.shape[-1], 1920)], -1)
        assert_codes_match(codes, ref[f"stream_codes/{sig}"], model, wav, f"{sig} streamed")
