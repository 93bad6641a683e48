"""A DataLoader that Lightning resumes mid-epoch at the batch where the checkpoint was written.

Lightning saves ``state_dict()`` of every training loader that has one with each checkpoint and hands it
back with ``load_state_dict()`` before the resumed epoch starts. Here the state is the number of batches
this pass has yielded; the resumed pass skips that many batches **in the sampler** (indices only, no audio
is read), so the rest of the epoch is the same batches in the same order as in an uninterrupted run (the
samplers are deterministic per ``(seed, epoch)`` and the crops per ``(seed, epoch, index)``). Under DDP the
skip applies to the rank's own share (after Lightning's distributed sampler), as each rank saw the same
number of batches.
"""

from __future__ import annotations

import itertools
from typing import Any, Dict, Iterator

from torch.utils.data import DataLoader

__all__ = ["ResumableDataLoader"]


class _ResumeAt:
    """The loader's index sampler, minus the batches to skip on its next pass (then a pass-through)."""

    def __init__(self, base: Any, loader: "ResumableDataLoader"):
        self.base = base
        self.loader = loader

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self) -> Iterator[Any]:
        # a generator: the skip is taken when the first indices are drawn, not when iter() is called (the
        # multi-process loader calls iter() twice and draws from the second iterator only)
        skip, self.loader._skip = self.loader._skip, 0
        yield from itertools.islice(iter(self.base), skip, None)

    def __getattr__(self, name: str) -> Any:  # sampler, batch_size, drop_last ... of the base
        return getattr(self.base, name)


class ResumableDataLoader(DataLoader):
    """:class:`torch.utils.data.DataLoader` with ``state_dict`` / ``load_state_dict`` (batches of the pass)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._yielded = 0
        self._skip = 0

    @property
    def _index_sampler(self) -> Any:
        return _ResumeAt(super()._index_sampler, self)

    def __iter__(self) -> Iterator[Any]:
        start = self._skip
        it = super().__iter__()  # the index sampler consumes the skip when the iterator starts it
        self._yielded = start
        for batch in it:
            self._yielded += 1
            yield batch

    def state_dict(self) -> Dict[str, int]:
        return {"batches": int(self._yielded)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        n = int(state.get("batches", 0))
        # a checkpoint written after the last batch of an epoch resumes at the start of the next one
        self._skip = n if 0 < n < len(self) else 0
