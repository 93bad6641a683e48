"""Fixtures of the tokenize tests (helpers live in tok_helpers.py)."""

import pytest
from tok_helpers import build_codec, build_tiny, synth, write_wav  # noqa: F401

from sonotok.model_io import save_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    codec, cfg = build_tiny()
    return save_model(codec, tmp_path_factory.mktemp("model") / "tiny", cfg)


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory):
    codec, cfg = build_tiny(seed=1)
    return save_model(codec, tmp_path_factory.mktemp("model2") / "tiny", cfg)


@pytest.fixture()
def codec(tiny_model_dir):
    import sonotok

    return sonotok.load(tiny_model_dir)


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory):
    """Six short mono files of different lengths (nested folders), 16 kHz."""
    root = tmp_path_factory.mktemp("audio")
    for i, sec in enumerate([0.31, 0.5, 0.77, 1.0, 0.123, 0.6]):
        write_wav(root / ("sub" if i % 2 else "") / f"f{i}.wav", sec, seed=i)
    return root
