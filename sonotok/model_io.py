"""Self-contained model directories: ``config.yaml`` + ``model.safetensors`` + ``meta.json``.

A model directory is all that is needed to rebuild a codec: the config is the resolved Hydra node of
the model (every object with its ``_target_``), the weights are safetensors (no pickled code), and
``meta.json`` records a model id (a hash of the weights) with the stream parameters.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from sonotok.errors import ModelLoadError

CONFIG_NAME = "config.yaml"
WEIGHTS_NAME = "model.safetensors"
META_NAME = "meta.json"
PRETRAINED_DIR = Path(__file__).parent / "pretrained"

# Class paths of model directories written before the layout of sonotok 0.2 (``sonotok.codecs`` became
# ``sonotok.models``; the split RVQ moved to the quantizers). Longest prefix first.
LEGACY_TARGETS = (
    ("sonotok.codecs.semantic.SplitResidualVQ", "sonotok.quantizers.split.SplitResidualVQ"),
    ("sonotok.codecs.semantic.", "sonotok.models.semantic."),
    ("sonotok.codecs.separator.", "sonotok.models.separation."),
    ("sonotok.codecs.codec.", "sonotok.models.codec."),
    ("sonotok.codecs.", "sonotok.models."),
    ("sonotok.semantic.ssl.", "sonotok.semantic.ssl_teacher."),
)


def upgrade_targets(node: Any) -> Any:
    """A copy of a config (plain containers) with every legacy ``_target_`` rewritten to its current path."""
    if isinstance(node, Mapping):
        out = {k: upgrade_targets(v) for k, v in node.items()}
        target = out.get("_target_")
        if isinstance(target, str):
            for old, new in LEGACY_TARGETS:
                if target.startswith(old):
                    out["_target_"] = new + target[len(old):]
                    break
        return out
    if isinstance(node, (list, tuple)):
        return [upgrade_targets(v) for v in node]
    return node


def build_from_config(cfg: Any) -> Any:
    """Instantiate a model config (an OmegaConf node or plain containers), legacy paths upgraded."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    return instantiate(OmegaConf.create(upgrade_targets(plain)))


def _state_dict_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def model_meta(model: nn.Module) -> dict[str, Any]:
    """Stream parameters of a codec-like model (whatever of them it has)."""
    meta: dict[str, Any] = {"class": f"{type(model).__module__}.{type(model).__qualname__}"}
    for key in ("sample_rate", "channels", "hop_length", "frame_rate", "num_codebooks", "codebook_size",
                "latency_ms", "num_sources", "name"):
        if hasattr(model, key):
            val = getattr(model, key)
            meta[key] = val if isinstance(val, (int, float, str)) else str(val)
    if hasattr(model, "bitrate") and callable(model.bitrate):
        meta["bitrate"] = float(model.bitrate())
    meta["num_parameters"] = int(sum(p.numel() for p in model.parameters()))
    return meta


def save_model(model: nn.Module, out_dir: str | os.PathLike, config: Mapping | Any, extra: Mapping | None = None) -> Path:
    """Write ``model`` to ``out_dir`` atomically (a temp dir renamed into place).

    Args:
        model: the module (a codec or a separator).
        out_dir: target directory (replaced if it exists).
        config: the Hydra/OmegaConf node (or plain dict) that builds ``model`` with ``instantiate``.
        extra: more fields for ``meta.json`` (training time, data, metrics...).
    """
    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    node = config if OmegaConf.is_config(config) else OmegaConf.create(config)
    cfg = OmegaConf.create(OmegaConf.to_container(node, resolve=True))
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        OmegaConf.save(cfg, tmp / CONFIG_NAME)
        save_file(_state_dict_for_saving(model), str(tmp / WEIGHTS_NAME))
        digest = hashlib.sha256((tmp / WEIGHTS_NAME).read_bytes()).hexdigest()
        meta = model_meta(model)
        meta["model_id"] = f"{meta.get('name', 'model')}-{digest[:12]}"
        meta["weights_sha256"] = digest
        meta.update(dict(extra or {}))
        (tmp / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def resolve_model_path(path_or_name: str | os.PathLike) -> Path:
    """A model directory for a path, or for the name of a model shipped in the package."""
    p = Path(path_or_name)
    if p.exists():
        return p
    shipped = PRETRAINED_DIR / str(path_or_name)
    if shipped.is_dir():
        return shipped
    names = sorted(d.name for d in PRETRAINED_DIR.iterdir() if d.is_dir()) if PRETRAINED_DIR.is_dir() else []
    raise ModelLoadError(
        f"{path_or_name}: no such model directory or checkpoint, and not a shipped model name "
        f"(shipped: {', '.join(names) or 'none'})"
    )


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelLoadError(f"{path}: not a readable safetensors file ({e})") from e


def _load_checkpoint(path: Path, map_location: str | torch.device) -> nn.Module:
    """Rebuild the codec from a Lightning checkpoint written by sonotok's training module."""
    from omegaconf import OmegaConf

    try:
        ckpt = torch.load(str(path), map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a load error for the user
        raise ModelLoadError(f"{path}: not a loadable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ModelLoadError(f"{path}: checkpoint has no 'state_dict'")
    cfg_yaml = ckpt.get("sonotok_model_config")
    if cfg_yaml is None:
        raise ModelLoadError(f"{path}: checkpoint was not written by sonotok (no 'sonotok_model_config')")
    model = build_from_config(OmegaConf.create(cfg_yaml))
    prefix = ckpt.get("sonotok_model_prefix", "codec.")
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    _apply_state(model, state, path)
    return model


def _apply_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ModelLoadError(
            f"{path}: weights do not match the config (missing {len(missing)}: {missing[:3]}, "
            f"unexpected {len(unexpected)}: {unexpected[:3]})"
        )
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise ModelLoadError(f"{path}: tensor {k} has shape {list(v.shape)}, config expects {list(own[k].shape)}")
    model.load_state_dict(state)


def load_model(path_or_name: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load a model directory, a shipped model name (``"default"``) or a sonotok Lightning checkpoint.

    Raises:
        ModelLoadError: naming the file and the problem (missing, corrupt, mismatched weights).
    """
    from hydra.errors import InstantiationException
    from omegaconf import OmegaConf

    path = resolve_model_path(path_or_name)
    if path.is_file():
        model = _load_checkpoint(path, map_location)
        model.model_id = f"{getattr(model, 'name', 'model')}-{path.stem}"
        return model.eval()
    cfg_path, w_path = path / CONFIG_NAME, path / WEIGHTS_NAME
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise ModelLoadError(f"{p}: missing (a model directory holds {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        cfg = OmegaConf.load(cfg_path)
        model = build_from_config(cfg)
    except (InstantiationException, ValueError, TypeError, OSError) as e:
        raise ModelLoadError(f"{cfg_path}: cannot build the model from this config ({e})") from e
    except Exception as e:  # yaml errors and friends
        raise ModelLoadError(f"{cfg_path}: unreadable config ({type(e).__name__}: {e})") from e
    _apply_state(model, _load_state(w_path), w_path)
    meta = {}
    if (path / META_NAME).is_file():
        try:
            meta = json.loads((path / META_NAME).read_text())
        except json.JSONDecodeError as e:
            raise ModelLoadError(f"{path / META_NAME}: invalid JSON ({e})") from e
    model.model_id = meta.get("model_id", path.name)
    model.meta = meta
    model.model_dir = str(path)
    return model.to(map_location).eval()


def load_separator(path_or_name: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """:func:`load_model` for a separation model; a codec (or anything without ``num_sources``) is a
    :class:`ModelLoadError`."""
    model = load_model(path_or_name, map_location=map_location)
    if not hasattr(model, "num_sources"):
        raise ModelLoadError(f"{path_or_name}: not a separation model (it has no num_sources; is it a codec?)")
    return model
