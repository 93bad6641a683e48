"""The Lightning floor in pyproject.toml is the first release whose DDP sampler wrapper forwards ``set_epoch``
to the sampler it wraps (fabric CHANGELOG 2.6.1: "Fixed `DistributedSamplerWrapper` not forwarding `set_epoch`
to the underlying sampler", PR #21454). The data pipeline relies on it: ``EpochSampler`` yields
``(index, epoch)`` and the crops depend on the epoch, so without the forwarding every DDP epoch repeats
epoch 0's order and crops."""

import re
from pathlib import Path

from lightning.fabric.utilities.data import _set_sampler_epoch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from torch.utils.data import DataLoader

from sonotok.data.dataset import EpochSampler

FLOOR = (2, 6, 1)


def test_set_epoch_reaches_the_epoch_sampler_under_the_ddp_wrapper():
    inner = EpochSampler(10, shuffle=True, seed=0)
    wrapped = DistributedSamplerWrapper(inner, num_replicas=2, rank=0, shuffle=False)
    loader = DataLoader(list(range(10)), sampler=wrapped)
    first = list(wrapped)
    _set_sampler_epoch(loader, 3)  # what the fit loop calls at the start of each epoch
    assert inner.epoch == 3
    later = list(wrapped)
    assert {e for _, e in first} == {0} and {e for _, e in later} == {3}
    assert [i for i, _ in later] != [i for i, _ in first], "a new epoch must reshuffle"


def test_pyproject_floor_is_that_release():
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    m = re.search(r'"lightning>=([0-9.]+)', text)
    assert m, "pyproject.toml must pin a lightning floor"
    assert tuple(int(x) for x in m.group(1).split(".")) >= FLOOR
