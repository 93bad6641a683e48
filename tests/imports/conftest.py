"""Reference fixtures of the checkpoint importers (written by ``make_fixtures.py`` in a separate venv)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


class Reference:
    """One family's fixture: the checkpoint path, the reference's tensors and its metadata."""

    def __init__(self, family: str):
        from safetensors.torch import load_file

        self.dir = FIXTURES / family
        self.meta = json.loads((self.dir / "reference.json").read_text())
        self.checkpoint = self.dir / self.meta["checkpoint"]
        self.tensors = load_file(str(self.dir / "reference.safetensors"))

    def __getitem__(self, key: str):
        return self.tensors[key]

    def __contains__(self, key: str) -> bool:
        return key in self.tensors


@pytest.fixture(scope="session")
def encodec_ref() -> Reference:
    return Reference("encodec_24khz")


@pytest.fixture(scope="session", params=["dac_16khz", "dac_44khz"])
def dac_ref(request) -> Reference:
    return Reference(request.param)
