"""Reference fixtures of the checkpoint importers (written by ``make_fixtures.py`` in a separate venv)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"


class Reference:
    """One family's fixture: the checkpoint path, the reference's tensors and its metadata."""

    def __init__(self, family: str, base: Path = FIXTURES):
        from safetensors.torch import load_file

        self.dir = Path(base) / family
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


@pytest.fixture(scope="session")
def mimi_ref() -> Reference:
    return Reference("mimi")


def stable_frames(model, wav, trials: int = 4, rel: float = 1e-6):
    """Frames whose codes do not move when the latent is nudged by ``rel`` of its largest magnitude.

    Floating-point results differ in the last bits between implementations, CPUs and chunkings (oneDNN
    picks kernels by shape); a frame whose nearest code is a tie at that level can legitimately come out
    either way. Such frames are found by perturbing the latent ten times more than rounding does (1e-6 of its largest magnitude); every other
    frame must match exactly.
    """
    import torch

    with torch.no_grad():
        z = model.encoder(model.pad_to_frames(model.prepare(wav)))
        q = model.quantizer.to_frozen()
        base = q.encode(z)
        g = torch.Generator().manual_seed(0)
        stable = torch.ones(base.shape[-1], dtype=torch.bool)
        for _ in range(trials):
            zt = z + rel * z.abs().max() * torch.randn(z.shape, generator=g)
            stable &= (q.encode(zt) == base).all(dim=1)[0]
    return stable


@pytest.fixture
def assert_codes_match():
    """``check(codes, ref, model, wav)``: equal on every frame that is not a float near-tie; at least 90 % of
    the frames are stable. Returns the number of frames that differ (0 on the machine that wrote the fixtures,
    a few near-ties on another CPU: 4 of the EnCodec fixture's frames on an Intel Xeon).
    ``check.assert_few_moved()`` then bounds the near-ties that moved over every call: at most 2 % of the frames."""

    def check(codes, ref, model, wav, what: str = ""):
        codes, ref = torch.as_tensor(codes), torch.as_tensor(ref)
        if codes.dim() == 2:
            codes, ref = codes[None], ref.reshape(1, *ref.shape[-2:])
        assert codes.shape == ref.shape, f"{what}: shape {tuple(codes.shape)} != {tuple(ref.shape)}"
        stable = stable_frames(model, wav)[: codes.shape[-1]]
        assert stable.float().mean() >= 0.9, f"{what}: fixture too close to ties ({int((~stable).sum())} frames)"
        differ = (codes != ref).any(dim=1)[0]
        bad = differ & stable
        assert not bad.any(), f"{what}: codes differ on stable frames {bad.nonzero().flatten().tolist()}"
        check.frames += codes.shape[-1]
        check.differ += int(differ.sum())
        return int(differ.sum())

    def assert_few_moved(fraction: float = 0.02):
        assert check.differ <= fraction * check.frames, f"{check.differ} of {check.frames} frames differ"

    check.frames = check.differ = 0
    check.assert_few_moved = assert_few_moved
    return check


@pytest.fixture(scope="session")
def reference_factory():
    """``make(family, base=FIXTURES) -> Reference`` (test modules cannot import this conftest by name)."""
    return Reference
