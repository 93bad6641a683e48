"""Training a separator (Conv-TasNet) with permutation-invariant SI-SNR, and its Hydra entry.

Same conventions as :mod:`sonotok.training.codec_module`: losses return ``dict[str, Tensor]`` with
namespaced keys (``sep/sisnr``), the config's ``loss.weights`` use the same keys, metrics are logged as
``train/<key>`` / ``val/<key>``, a ``gen_steps`` buffer counts optimizer steps exactly across resumes, and
checkpoints carry the model config (``sonotok.load(ckpt)`` rebuilds the separator).

Entry: ``sonotok train --config-name separate separation=convtasnet_tiny`` (or ``python train.py
--config-name separate ...``); ``sonotok/training/train.py`` hands a config with a ``separator`` node
to :func:`run_separation_training`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from sonotok.losses.separation import sisnr_improvement
from sonotok.training.base import TrainingModule


class SeparationLightningModule(TrainingModule):
    """Trains a separator ``mix [B, 1, T] -> sources [B, S, T]``.

    Args:
        separator: the model (e.g. :class:`sonotok.models.separation.ConvTasNet`).
        losses: ``name -> loss module`` called as ``loss(est, ref) -> dict``.
        weights: ``{metric key: weight}`` (e.g. ``{"sep/sisnr": 1.0}``).
        optimizer: ``functools.partial`` building the optimizer from parameters.
        warmup_steps, lr_decay, total_steps, min_lr_ratio, total_minutes: learning-rate schedule (as the
            codec module, :class:`~sonotok.training.base.TrainingModule`).
        grad_clip: gradient-norm clip (the paper uses 5; ``0`` disables).
        log_audio_examples: validation mixtures logged as audio.
        model_config: the resolved config node that builds ``separator`` (stored in checkpoints).
        **unused: the codec schedule keys a shared ``schedule`` node may carry (``disc_start_step``,
            ``disc_grad_clip``); anything else is a ``TypeError`` naming the key.
    """

    model_attr = "separator"
    _CODEC_ONLY = frozenset({"disc_start_step", "disc_grad_clip"})

    def __init__(self, separator: nn.Module, losses: Mapping[str, nn.Module], weights: Mapping[str, float],
                 optimizer: Optional[Callable[..., torch.optim.Optimizer]] = None, warmup_steps: int = 0,
                 lr_decay: str = "none", total_steps: int = 100_000, min_lr_ratio: float = 0.1,
                 grad_clip: float = 5.0, log_audio_examples: int = 2, model_config: Optional[Mapping] = None,
                 total_minutes: Optional[float] = None, **unused: Any):
        unknown = sorted(set(unused) - self._CODEC_ONLY)
        if unknown:
            raise TypeError(f"SeparationLightningModule: unknown schedule keys {unknown}")
        super().__init__(
            weights, warmup_steps=warmup_steps, lr_decay=lr_decay, total_steps=total_steps,
            min_lr_ratio=min_lr_ratio, total_minutes=total_minutes, grad_clip=grad_clip,
            log_audio_examples=log_audio_examples, model_config=model_config,
        )
        self.separator = separator
        self.losses = nn.ModuleDict({k: v for k, v in losses.items() if v is not None})
        self.optimizer_fn = optimizer or (lambda p: torch.optim.Adam(p, lr=1e-3))

    def configure_optimizers(self):
        opt = self.optimizer_fn(self.separator.parameters())
        return [opt], [self.scheduled(opt, self.grad_clip)]

    def compute_losses(self, est: Tensor, ref: Tensor) -> Dict[str, Tensor]:
        out: Dict[str, Tensor] = {}
        for m in self.losses.values():
            out.update(m(est, ref))
        return out

    def training_step(self, batch: Dict[str, Tensor], batch_idx: int) -> Tensor:
        self._tick()
        opt = self.optimizers()
        sched = self.lr_schedulers()
        mix, ref = batch["mix"], batch["sources"]
        with self.optimizing(opt):
            est = self.separator(mix)
            losses = self.compute_losses(est, ref)
            total = self.weighted_total(losses)
            opt.zero_grad(set_to_none=True)
            self.manual_backward(total)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        self.end_step()
        logs = {k: v.detach() for k, v in losses.items()}
        logs["loss"] = total.detach()
        self.log_train(logs, opt.param_groups[0]["lr"])
        return total.detach()

    def validation_step(self, batch: Dict[str, Tensor], batch_idx: int) -> None:
        mix, ref = batch["mix"], batch["sources"]
        est = self.separator(mix)
        losses = self.compute_losses(est, ref)
        sisnri = sisnr_improvement(est, ref, mix).mean()
        bs = mix.shape[0]
        self.log("val/sisnri", sisnri, prog_bar=True, on_epoch=True, sync_dist=True, batch_size=bs)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, on_epoch=True, sync_dist=True, batch_size=bs)
        if batch_idx < self.log_audio_examples and self.global_rank == 0:
            self._log_examples(mix[0], est[0], batch_idx)

    def _log_examples(self, mix: Tensor, est: Tensor, idx: int) -> None:
        sr = int(getattr(self.separator, "sample_rate", 8000))
        self.log_audio(f"audio/{idx}/mix", mix, sr)
        for s in range(est.shape[0]):
            self.log_audio(f"audio/{idx}/source{s + 1}", est[s], sr)


def build_separation_module(cfg: DictConfig) -> SeparationLightningModule:
    """Build the LightningModule from a composed ``separate`` config."""
    from hydra.utils import instantiate

    separator = instantiate(cfg.separator)
    if cfg.get("init_from"):  # start from a trained separator's weights (same shapes, e.g. gLN -> cLN twin)
        from sonotok.model_io import load_separator
        from sonotok.models.separation import copy_parameters

        copy_parameters(separator, load_separator(cfg.init_from))
    losses = {k: instantiate(v) for k, v in cfg.loss.modules.items() if v is not None}
    return SeparationLightningModule(
        separator=separator,
        losses=losses,
        weights=OmegaConf.to_container(cfg.loss.weights, resolve=True),
        optimizer=instantiate(cfg.optim.generator),
        model_config=OmegaConf.to_container(cfg.separator, resolve=True),
        **OmegaConf.to_container(cfg.schedule, resolve=True),
    )


def run_separation_training(cfg: DictConfig) -> Dict[str, Any]:
    """Train a separator from a composed config; returns a summary (steps, minutes, paths)."""
    from sonotok.model_io import save_model
    from sonotok.training.train import fit_from_config

    module, trainer, summary, minutes = fit_from_config(cfg, build_separation_module)
    if trainer.is_global_zero and cfg.get("export_dir") and not trainer.fast_dev_run:
        extra = {"task": "separation", "train_steps": int(module.gen_steps), "train_minutes_last_run": round(minutes, 2)}
        save_model(module.separator, cfg.export_dir, OmegaConf.to_container(cfg.separator, resolve=True), extra=extra)
        summary["model_dir"] = str(cfg.export_dir)
        print(f"separator saved to {cfg.export_dir} (load with sonotok.load)")
    return summary
