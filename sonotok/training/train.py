"""The Hydra training entry point shared by ``python train.py`` and ``sonotok train``.

The config tree lives inside the package (``sonotok/conf``), so training works the same from a clone
and from an installed wheel.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def _instantiate_mapping(node: Optional[DictConfig]) -> List[Any]:
    from hydra.utils import instantiate

    if not node:
        return []
    return [instantiate(v) for v in node.values() if v is not None]


def _checkpoint_step(path: Path) -> Optional[int]:
    """The generator step a checkpoint was written at, or ``None`` when it is unreadable (cut short by a kill)."""
    import torch

    try:
        # mmap: only the pickle is read, not the tensors; a truncated zip has no central directory and fails
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        return int(ckpt["global_step"])
    except Exception as e:  # noqa: BLE001 - any unreadable file is skipped, with the reason
        warnings.warn(f"checkpoint {path} is unreadable and skipped ({type(e).__name__}: {e})", stacklevel=3)
        return None


def resolve_resume(cfg: DictConfig) -> Optional[str]:
    """``resume: auto`` -> the newest readable checkpoint of ``out_dir/checkpoints`` (``last.ckpt`` or one of
    the step checkpoints kept besides it) if any; a path -> that path; null -> none.

    A checkpoint truncated by a kill is skipped with a warning, so the run resumes from the previous one.

    What a resumed run is (tests/training/test_exact_resume.py, tests/test_ema_weights.py):

    * **the same command again** (the process was killed, or the run ended): the run continues from the
      newest checkpoint and, with ``max_steps`` / ``max_epochs`` limits and a step-based schedule, ends
      bit-identical to an uninterrupted run (weights, EMA average, optimizer and scheduler state, export),
      wherever the checkpoint fell (mid-epoch, end of epoch); a finished run (``max_steps`` / ``max_epochs``
      reached, ``max_time`` used up) trains nothing and keeps its ``last.ckpt``. A kill loses the steps since
      the last checkpoint (they are redone, identically);
    * **a larger ``trainer.max_steps`` / ``max_epochs``**: the final step of the first run is in ``last.ckpt``
      (:class:`~sonotok.training.base.ResumableCheckpoint` saves it at the end of the last batch, also between
      two ``every_n_train_steps`` saves) and the continued run is bit-identical to one started with the larger
      limit: the learning-rate schedule runs over ``schedule.total_steps``, not over ``max_steps``;
    * **a larger ``trainer.max_time``**: the Timer's elapsed time is carried over, so the run trains the
      difference. With a step-based schedule the continuation is exact up to where the larger limit stops it
      (``max_time`` stops at a wall-clock-dependent step). With ``schedule.total_minutes=max_time`` the cosine
      horizon grows with ``max_time``: the learning rate jumps to the new horizon's value at the minutes already
      trained (a warm restart, warned of at resume), so the run is neither the first run's schedule nor an
      uninterrupted run's with the larger limit. A time-based cosine follows measured wall time, so it is
      never bit-identical between two runs, resumed or not.
    """
    resume = cfg.get("resume")
    if resume in (None, "", "null", "none"):
        return None
    if resume == "auto":
        ckpt_dir = Path(cfg.out_dir) / "checkpoints"
        if not ckpt_dir.is_dir():
            return None
        best: Optional[Tuple[int, int, float, Path]] = None
        for p in ckpt_dir.glob("*.ckpt"):
            step = _checkpoint_step(p)
            if step is None:
                continue
            key = (step, int(p.name == "last.ckpt"), p.stat().st_mtime, p)
            if best is None or key[:3] > best[:3]:
                best = key
        return str(best[3]) if best is not None else None
    if not Path(resume).is_file():
        raise FileNotFoundError(f"resume checkpoint {resume}: no such file")
    return str(resume)


def zero_new_residuals(codec: Any) -> list[str]:
    """Give the ConvNeXt blocks a grown model gained (``init_grow``) a zero layer scale: each new block
    starts as the identity, so the grown codec starts exactly where ``init_from`` ended. Returns their names.

    Raises:
        ModelLoadError: a new tensor outside a wholly new ConvNeXt block (that growth would change the output).
    """
    from sonotok.errors import ModelLoadError
    from sonotok.modules.convnext import ConvNeXtBlock, ConvNeXtMLP

    new = set(getattr(codec, "new_tensors", []) or [])
    if not new:
        return []
    zeroed, covered = [], set()
    for name, block in codec.named_modules():
        if not isinstance(block, ConvNeXtBlock):
            continue
        keys = {f"{name}.{k}" for k in block.state_dict()}
        if not keys <= new:
            continue
        for sub in block.modules():
            if isinstance(sub, ConvNeXtMLP) and sub.gamma is not None:
                with torch.no_grad():
                    sub.gamma.zero_()
                zeroed.append(name)
        covered |= keys
    if new - covered or not zeroed:
        raise ModelLoadError(f"init_grow: new tensors outside new residual ConvNeXt blocks: {sorted(new - covered)[:4]}")
    return zeroed


def build_codec(cfg: DictConfig) -> Tuple[Any, Dict[str, Any]]:
    """The codec to train and the config node that rebuilds it.

    ``init_from=DIR`` (a model directory, e.g. one written by ``sonotok import``, or a shipped model name):
    the codec is built from ``DIR/config.yaml`` (allow-listed targets only) with ``DIR``'s weights, in place
    of the preset's ``codec`` node; checkpoints and the final model directory then carry ``DIR``'s config.
    ``init_override={quantizer: {group_dropout: 0.5, min_groups: 4}}`` merges into ``DIR``'s config first
    (arguments that leave the weights' shapes alone: dropout, bypass probabilities). With ``init_grow=true``
    the override may also add ConvNeXt blocks (e.g. ``decoder.num_blocks``): they start as the identity.
    Otherwise the ``codec`` node of the composed config.
    """
    from hydra.utils import instantiate

    init_from = cfg.get("init_from")
    if not init_from:
        return instantiate(cfg.codec), OmegaConf.to_container(cfg.codec, resolve=True)
    from sonotok.errors import ModelLoadError
    from sonotok.model_io import (
        CONFIG_NAME,
        load_model,
        rebuild_with_weights,
        resolve_model_path,
        upgrade_targets,
    )

    path = resolve_model_path(init_from)
    if not path.is_dir():
        raise ModelLoadError(f"init_from={init_from}: not a model directory (a directory with {CONFIG_NAME})")
    model_config = upgrade_targets(OmegaConf.to_container(OmegaConf.load(path / CONFIG_NAME), resolve=True))
    override = cfg.get("init_override")
    if override:
        # training-time arguments of DIR's modules (e.g. quantizer.group_dropout for variable bitrate): merged
        # into DIR's config; the weights must still fit it exactly (a shape change is a ModelLoadError)
        model_config = OmegaConf.to_container(OmegaConf.merge(model_config, override), resolve=True)
        codec = rebuild_with_weights(model_config, load_model(path), source=f"init_from={init_from} + init_override",
                                     allow_new=bool(cfg.get("init_grow")))
        zero_new_residuals(codec)
    else:
        codec = load_model(path)
    codec.train()
    sr = getattr(codec, "sample_rate", None)
    data_sr = cfg.get("data", {}).get("sample_rate") if cfg.get("data") is not None else None
    if sr is not None and data_sr is not None and int(data_sr) != int(sr):
        raise ValueError(
            f"init_from={init_from}: the model runs at {sr} Hz but data.sample_rate is {data_sr}; "
            f"add sample_rate={sr} (or data.sample_rate={sr}) to the command line"
        )
    return codec, model_config


def build_module(cfg: DictConfig):
    """Build the LightningModule (codec, discriminator, losses, optimizers) from a composed config."""
    from hydra.utils import get_class, instantiate

    # `module_target` (optional): a CodecLightningModule subclass; `module_kwargs`: its extra arguments
    # (config nodes are instantiated), e.g. the semantic teacher and loss of issue 6.
    module_cls = get_class(cfg.get("module_target") or "sonotok.training.codec_module.CodecLightningModule")
    extra = {k: instantiate(v) if OmegaConf.is_config(v) else v for k, v in (cfg.get("module_kwargs") or {}).items()}
    codec, model_config = build_codec(cfg)
    if cfg.get("compile"):
        # torch.compile the offline forward of encoder and decoder in place: state-dict keys, saving and
        # the eager streaming step() are unchanged (bench/train_speed.py measures the gain)
        codec.encoder.compile()
        codec.decoder.compile()
    schedule = OmegaConf.to_container(cfg.schedule, resolve=True)
    if schedule.get("total_minutes") == "max_time":
        schedule["total_minutes"] = max_time_minutes(cfg.trainer.get("max_time"))
    disc = instantiate(cfg.discriminator) if cfg.get("discriminator") else None
    losses = {k: instantiate(v) for k, v in cfg.loss.modules.items() if v is not None}
    weights = OmegaConf.to_container(cfg.loss.weights, resolve=True)
    return module_cls(
        codec=codec,
        losses=losses,
        weights=weights,
        discriminator=disc,
        optimizer=instantiate(cfg.optim.generator),
        disc_optimizer=instantiate(cfg.optim.discriminator),
        model_config=model_config,
        **schedule,
        **extra,
    )


def max_time_minutes(max_time: Any) -> Optional[float]:
    """Minutes of a Lightning ``trainer.max_time`` (``"DD:HH:MM:SS"`` or a ``{days, hours, minutes,
    seconds}`` mapping); ``None`` when no time limit is set (the schedule then runs over ``total_steps``)."""
    if max_time is None:
        return None
    if isinstance(max_time, str):
        parts = max_time.split(":")
        if len(parts) != 4:
            raise ValueError(f"trainer.max_time {max_time!r}: expected 'DD:HH:MM:SS'")
        d, h, m, sec = (float(p) for p in parts)
        return d * 1440 + h * 60 + m + sec / 60
    if isinstance(max_time, Mapping) or OmegaConf.is_config(max_time):
        t = dict(max_time)
        return (float(t.get("days", 0)) * 1440 + float(t.get("hours", 0)) * 60 + float(t.get("minutes", 0))
                + float(t.get("seconds", 0)) / 60)
    raise ValueError(f"trainer.max_time {max_time!r}: expected 'DD:HH:MM:SS' or a mapping")


def fit_from_config(cfg: DictConfig, build: Callable[[DictConfig], Any]) -> Tuple[Any, Any, Dict[str, Any], float]:
    """Seeds, saves ``train_config.yaml``, builds the module with ``build(cfg)`` and fits it (resuming if asked).

    Shared by codec and separation training.

    Returns:
        ``(module, trainer, summary, minutes)``: the summary holds steps, global step, batches this run,
        the checkpoint resumed from, minutes this run and the output directory.
    """
    import lightning.pytorch as pl
    import torch
    from hydra.utils import instantiate

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(int(cfg.seed), workers=True)
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, Path(cfg.out_dir) / "train_config.yaml", resolve=False)

    module = build(cfg)
    datamodule = instantiate(cfg.data)
    callbacks = _instantiate_mapping(cfg.get("callbacks"))
    loggers = _instantiate_mapping(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    ckpt_path = resolve_resume(cfg)
    if ckpt_path:
        print(f"resuming from {ckpt_path}")
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    minutes = (time.perf_counter() - t0) / 60
    summary: Dict[str, Any] = {
        "steps": int(module.gen_steps),
        "global_step": int(trainer.global_step),
        "batches_this_run": int(module.batches_this_run),
        "resumed_from": ckpt_path,
        "minutes_this_run": minutes,
        "out_dir": str(cfg.out_dir),
    }
    return module, trainer, summary, minutes


def run_training(cfg: DictConfig) -> Dict[str, Any]:
    """Train from a composed config; returns a summary (steps, minutes, paths)."""
    from sonotok.model_io import save_model

    if cfg.get("separator") is not None:  # `--config-name separate`: a separation model (issue 5)
        from sonotok.training.separation_module import run_separation_training

        return run_separation_training(cfg)
    module, trainer, summary, minutes = fit_from_config(cfg, build_module)
    if trainer.is_global_zero and cfg.get("export_dir") and not trainer.fast_dev_run:
        extra = {"train_steps": int(module.gen_steps), "train_minutes_last_run": round(minutes, 2)}
        save_model(module.codec, cfg.export_dir, module.model_config, extra=extra)
        summary["model_dir"] = str(cfg.export_dir)
        print(f"model saved to {cfg.export_dir} (load with sonotok.load)")
    return summary


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    """Hydra entry: ``python train.py experiment=tiny trainer.max_steps=100``."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    run_training(cfg)


def compose_config(overrides: Optional[List[str]] = None, config_name: str = "train") -> DictConfig:
    """Compose the training config without running (for tests, notebooks and benchmarks)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        cfg = compose(config_name=config_name, overrides=list(overrides or []))
    return cfg
