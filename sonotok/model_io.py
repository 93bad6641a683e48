"""Self-contained model directories: ``config.yaml`` + ``model.safetensors`` + ``meta.json``.

A model directory is all that is needed to rebuild a codec: the config is the resolved Hydra node of
the model (every object with its ``_target_``), the weights are safetensors (no pickled code), and
``meta.json`` records a model id (a hash of the weights) with the stream parameters.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from sonotok.data.atomic import atomic_dir
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


# ------------------------------------------------------------------------------------------ allow-list
# A model directory or checkpoint may come from someone else: its config must not be able to run code.
# Only these targets are built (checked on the whole tree before anything is imported or instantiated):
#   - classes that are ``torch.nn.Module`` subclasses defined in one of these rooms of sonotok;
MODEL_ROOMS = ("models", "modules", "quantizers", "semantic")
#   - the loaders (a model may hold another model directory, e.g. the codec of a latent separator);
ALLOWED_FUNCTIONS = frozenset({
    "sonotok.load", "sonotok.load_separator", "sonotok.model_io.load_model", "sonotok.model_io.load_separator",
})
#   - a short list of torch building blocks.
ALLOWED_TORCH = frozenset(f"torch.nn.{name}" for name in (
    "Identity", "Sequential", "ModuleList", "Linear", "Conv1d", "ConvTranspose1d", "Embedding",
    "LayerNorm", "GroupNorm", "BatchNorm1d", "Dropout", "LSTM", "GRU",
    "ELU", "GELU", "ReLU", "LeakyReLU", "PReLU", "SiLU", "Tanh", "Sigmoid",
))


def _key_path(parent: str, key: Any) -> str:
    return f"{parent}[{key}]" if isinstance(key, int) else (f"{parent}.{key}" if parent else str(key))


def _target_refusal(target: str) -> str | None:
    """Why ``target`` may not be built from a model config (``None``: it may)."""
    if target in ALLOWED_FUNCTIONS or target in ALLOWED_TORCH:
        return None
    parts = target.split(".")
    if len(parts) < 3 or parts[0] != "sonotok" or parts[1] not in MODEL_ROOMS:
        return "not a sonotok model class or an allowed torch module"
    from hydra.utils import get_object

    try:  # imports only a module of sonotok's model rooms (no third-party module is imported here)
        obj = get_object(target)
    except Exception as e:  # noqa: BLE001 - any failure to locate it means it is not one of ours
        return f"cannot be located ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})"
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        return f"resolves to {type(obj).__name__} {getattr(obj, '__qualname__', obj)!r}, not a model class"
    mod = obj.__module__.split(".")
    if mod[0] != "sonotok" or len(mod) < 2 or mod[1] not in MODEL_ROOMS:
        return f"resolves to {obj.__module__}.{obj.__qualname__}, which is not a sonotok model class"
    return None


def check_targets(node: Any, source: str = "config", path: str = "") -> None:
    """Refuse a config (plain containers) that would build anything but allow-listed targets.

    Walks the whole tree (nested nodes, lists, ``_args_``, ``_partial_`` nodes alike) before anything is
    built, so a refused config runs nothing.

    Raises:
        ModelLoadError: naming ``source``, the key path and the target.
    """
    if isinstance(node, Mapping):
        if "_target_" in node:
            key = _key_path(path, "_target_")
            target = node["_target_"]
            if not isinstance(target, str):
                raise ModelLoadError(f"{source}: {key} must be a class path string, got {type(target).__name__}")
            why = _target_refusal(target)
            if why is not None:
                raise ModelLoadError(
                    f"{source}: {key} = {target!r} is not allowed in a model config ({why}); a model config "
                    f"builds only nn.Module classes of sonotok.{{{','.join(MODEL_ROOMS)}}}, the sonotok loaders "
                    f"and a short list of torch.nn modules (sonotok.model_io.ALLOWED_TORCH). Nothing was built."
                )
        for k, v in node.items():
            check_targets(v, source, _key_path(path, k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            check_targets(v, source, _key_path(path, i))
    elif isinstance(node, str) and "${" in node:  # would be re-read as an interpolation when built
        raise ModelLoadError(f"{source}: {path or 'config'} still holds an interpolation after resolving ({node!r})")


def build_from_config(cfg: Any, source: str = "config") -> nn.Module:
    """Build a model from its config (an OmegaConf node or plain containers), legacy paths upgraded.

    Only allow-listed targets are built (:func:`check_targets`), and the result must be an ``nn.Module``.

    Raises:
        ModelLoadError: a refused target (naming the key path), a config that cannot be built, or one that
            builds something that is not a model.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    try:
        plain = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    except Exception as e:  # noqa: BLE001 - interpolation errors of a broken config
        raise ModelLoadError(f"{source}: cannot resolve the config ({type(e).__name__}: {e})") from e
    plain = upgrade_targets(plain)
    check_targets(plain, source)
    try:
        model = instantiate(OmegaConf.create(plain))
    except ModelLoadError:
        raise
    except Exception as e:  # noqa: BLE001 - a constructor's own error: the config does not build
        raise ModelLoadError(f"{source}: cannot build the model from this config ({type(e).__name__}: {e})") from e
    if not isinstance(model, nn.Module):
        hint = " (it has no top-level _target_)" if isinstance(model, Mapping) or OmegaConf.is_config(model) else ""
        raise ModelLoadError(f"{source}: the config builds a {type(model).__name__}, not a model (nn.Module){hint}")
    return model


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

    node = config if OmegaConf.is_config(config) else OmegaConf.create(config)
    cfg = OmegaConf.create(OmegaConf.to_container(node, resolve=True))
    with atomic_dir(out_dir) as tmp:
        OmegaConf.save(cfg, tmp / CONFIG_NAME)
        save_file(_state_dict_for_saving(model), str(tmp / WEIGHTS_NAME))
        digest = hashlib.sha256((tmp / WEIGHTS_NAME).read_bytes()).hexdigest()
        meta = model_meta(model)
        meta["model_id"] = f"{meta.get('name', 'model')}-{digest[:12]}"
        meta["weights_sha256"] = digest
        meta.update(dict(extra or {}))
        (tmp / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    out = Path(out_dir)
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


def _state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the tensors of a state dict (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _load_checkpoint(path: Path) -> nn.Module:
    """Rebuild the model from a Lightning checkpoint written by sonotok's training modules (on the CPU).

    Its ``model_id`` is ``<name>-step<global step>-<hash of the weights>``, so two checkpoints of one run
    (every ``last.ckpt``, for instance) never share an id unless they hold the same weights.
    """
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a load error for the user
        raise ModelLoadError(f"{path}: not a loadable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ModelLoadError(f"{path}: checkpoint has no 'state_dict'")
    cfg = ckpt.get("sonotok_model_config")
    if cfg is None:
        raise ModelLoadError(f"{path}: checkpoint was not written by sonotok (no 'sonotok_model_config')")
    if isinstance(cfg, str):  # a YAML string
        from omegaconf import OmegaConf

        try:
            cfg = OmegaConf.create(cfg)
        except Exception as e:  # noqa: BLE001 - yaml errors
            raise ModelLoadError(f"{path}: unreadable sonotok_model_config ({type(e).__name__}: {e})") from e
    model = build_from_config(cfg, source=f"{path} [sonotok_model_config]")
    prefix = ckpt.get("sonotok_model_prefix", "codec.")
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    _apply_state(model, state, path)
    step = ckpt.get("global_step")
    step_part = f"step{int(step)}-" if isinstance(step, int) else ""
    model.model_id = f"{getattr(model, 'name', 'model')}-{step_part}{_state_digest(state)[:12]}"
    model.meta = {"model_id": model.model_id, "checkpoint": str(path), "global_step": step}
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


def rebuild_with_weights(cfg: Any, model: nn.Module, source: str = "config", allow_new: bool = False) -> nn.Module:
    """Build ``cfg`` (allow-listed targets) and give it ``model``'s weights; they must match exactly.

    Used to change arguments that leave the weights alone (e.g. a quantizer's dropout) of a loaded model.
    ``allow_new``: the rebuilt model may have tensors ``model`` lacks (a grown network); they keep their
    fresh initialisation and their names are in ``rebuilt.new_tensors``. Every tensor of ``model`` must
    still exist with its shape.
    """
    rebuilt = build_from_config(cfg, source=source)
    state = model.state_dict()
    new = sorted(set(rebuilt.state_dict()) - set(state)) if allow_new else []
    if new:
        fresh = rebuilt.state_dict()
        _apply_state(rebuilt, {**state, **{k: fresh[k] for k in new}}, Path(source))
    else:
        _apply_state(rebuilt, state, Path(source))
    rebuilt.new_tensors = new
    for attr in ("model_id", "meta", "model_dir"):
        if hasattr(model, attr):
            setattr(rebuilt, attr, getattr(model, attr))
    return rebuilt


def load_model(path_or_name: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load a model directory, a shipped model name (``"default"``) or a sonotok Lightning checkpoint.

    The config is built only from allow-listed targets (:func:`check_targets`): loading a model directory
    someone else wrote runs none of its code. The model ends up on ``map_location`` in eval mode, whichever
    the source.

    Raises:
        ModelLoadError: naming the file and the problem (missing, corrupt, mismatched weights, a refused
            ``_target_`` with its key path).
    """
    from omegaconf import OmegaConf

    path = resolve_model_path(path_or_name)
    key = str(path.resolve())
    loading = _loading()
    if key in loading:
        raise ModelLoadError(f"{path}: the model config loads itself (a cycle of model directories)")
    loading.add(key)
    try:
        if path.is_file():
            return _load_checkpoint(path).to(map_location).eval()
        cfg_path, w_path = path / CONFIG_NAME, path / WEIGHTS_NAME
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise ModelLoadError(f"{p}: missing (a model directory holds {CONFIG_NAME} and {WEIGHTS_NAME})")
        try:
            cfg = OmegaConf.load(cfg_path)
        except Exception as e:  # noqa: BLE001 - yaml errors and friends
            raise ModelLoadError(f"{cfg_path}: unreadable config ({type(e).__name__}: {e})") from e
        model = build_from_config(cfg, source=str(cfg_path))
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
    finally:
        loading.discard(key)


_LOADING_LOCAL = threading.local()  # per thread: model paths being loaded (a config may hold another model)


def _loading() -> set:
    if not hasattr(_LOADING_LOCAL, "paths"):
        _LOADING_LOCAL.paths = set()
    return _LOADING_LOCAL.paths


# shipped separators by the names load_separator accepts (the plain shipped name works too)
SEPARATOR_NAMES = {"default": "separator-8k", "causal": "separator-8k-causal"}


def load_separator(path_or_name: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """:func:`load_model` for a separation model; a codec (or anything without ``num_sources``) is a
    :class:`ModelLoadError`. ``"default"`` / ``"causal"`` name the shipped separators (``SEPARATOR_NAMES``)."""
    if not Path(path_or_name).exists() and str(path_or_name) in SEPARATOR_NAMES:
        path_or_name = PRETRAINED_DIR / SEPARATOR_NAMES[str(path_or_name)]
    model = load_model(path_or_name, map_location=map_location)
    if not hasattr(model, "num_sources"):
        raise ModelLoadError(f"{path_or_name}: not a separation model (it has no num_sources; is it a codec?)")
    return model
