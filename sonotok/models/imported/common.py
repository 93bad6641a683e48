"""Shared pieces of the checkpoint importers: safe reading, key checks, atomic model directories.

Every importer reads the user's file without running pickled code (``torch.load(weights_only=True)``
or safetensors), maps the reference's parameter names onto a sonotok model, and refuses anything that
does not fit with a :class:`~sonotok.errors.ModelLoadError` naming the file and the keys. The model
directory is written by the caller with :func:`sonotok.model_io.save_model` (a temporary directory renamed into
place), so a failed import leaves nothing in ``--out``; the importers here only build the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Mapping, Optional

import torch
from torch import Tensor, nn

from sonotok.errors import ModelLoadError


def _keys_text(keys: Iterable[str], limit: int = 6) -> str:
    keys = sorted(keys)
    head = ", ".join(keys[:limit])
    return f"{len(keys)} ({head}{', ...' if len(keys) > limit else ''})"


def read_torch_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)``; any failure is a :class:`ModelLoadError` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"{p}: no such checkpoint file")
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zip, foreign pickle, ... are all load errors
        raise ModelLoadError(f"{p}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e


def read_safetensors(path: str | os.PathLike) -> Dict[str, Tensor]:
    """All tensors of a safetensors file; failures are :class:`ModelLoadError` naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"{p}: no such checkpoint file")
    try:
        return load_file(str(p))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelLoadError(f"{p}: not a readable safetensors file ({e})") from e


def as_state_dict(path: str | os.PathLike, obj: Any, what: str) -> Dict[str, Tensor]:
    """Check that ``obj`` is a flat ``{name: tensor}`` mapping."""
    if not isinstance(obj, Mapping) or not obj:
        raise ModelLoadError(f"{path}: expected {what} (a mapping of parameter names to tensors), "
                             f"got {type(obj).__name__}{' (empty)' if isinstance(obj, Mapping) else ''}")
    not_tensors = [str(k) for k, v in obj.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise ModelLoadError(f"{path}: expected {what} (a mapping of parameter names to tensors); "
                             f"entries that are not tensors: {_keys_text(not_tensors)}")
    return dict(obj)


def require_keys(path: str | os.PathLike, state: Mapping[str, Tensor], keys: Iterable[str], model: str) -> None:
    """Fail early when keys that identify ``model`` are absent (wrong model's checkpoint)."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise ModelLoadError(
            f"{path}: not a checkpoint of {model}: missing {_keys_text(missing)}; "
            f"the file has {_keys_text(state.keys())}"
        )


def load_mapped_state(
    path: str | os.PathLike,
    model: nn.Module,
    state: Mapping[str, Tensor],
    rename: Callable[[str], Optional[str]],
    ignored: Callable[[str], bool] = lambda k: False,
    extra_state: Optional[Mapping[str, Tensor]] = None,
) -> None:
    """Rename the reference's keys onto ``model`` and load them, refusing any mismatch.

    Args:
        path: the checkpoint (for messages).
        model: the sonotok model (its ``state_dict`` names are the targets).
        state: the reference's tensors.
        rename: reference key -> sonotok key, or ``None`` when the key is not a plain rename.
        ignored: reference keys that are legitimately dropped (training statistics, unused codebooks).
        extra_state: sonotok tensors computed by the importer (e.g. stacked codebooks).

    Raises:
        ModelLoadError: unexpected keys (not renamed, not ignored), missing sonotok keys, or shapes
            that differ, each listed with the file name.
    """
    own = model.state_dict()
    mapped: Dict[str, Tensor] = {}
    unexpected = []
    for k, v in state.items():
        new = rename(k)
        if new is None:
            if not ignored(k):
                unexpected.append(k)
            continue
        mapped[new] = v
    mapped.update(dict(extra_state or {}))
    unknown_targets = sorted(set(mapped) - set(own))
    missing = sorted(set(own) - set(mapped))
    if unexpected or unknown_targets or missing:
        parts = []
        if unexpected:
            parts.append(f"unexpected keys {_keys_text(unexpected)}")
        if unknown_targets:
            parts.append(f"keys the architecture does not have {_keys_text(unknown_targets)}")
        if missing:
            parts.append(f"missing weights for {_keys_text(missing)}")
        raise ModelLoadError(f"{path}: checkpoint does not match the architecture: " + "; ".join(parts))
    bad = [f"{k} {list(mapped[k].shape)} (expected {list(own[k].shape)})"
           for k in sorted(mapped) if mapped[k].shape != own[k].shape]
    if bad:
        raise ModelLoadError(f"{path}: tensor shapes do not match the architecture: " + "; ".join(bad[:6]))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in mapped.items()})


@dataclass
class Imported:
    """What an importer returns: the model with the checkpoint's weights, the Hydra config that rebuilds
    it (``_target_`` + plain values) and fields for ``meta.json``. Writing the model directory is the
    caller's (``sonotok import`` uses :func:`sonotok.model_io.save_model`, which is atomic)."""

    model: nn.Module
    config: Dict[str, Any]
    meta: Dict[str, Any] = field(default_factory=dict)


def imported(model: nn.Module, config: Mapping[str, Any], source: str | os.PathLike, family: str,
             extra: Optional[Mapping[str, Any]] = None) -> Imported:
    meta = {"imported_from": str(Path(source).resolve()), "imported_family": family}
    meta.update(dict(extra or {}))
    return Imported(model.eval(), dict(config), meta)
