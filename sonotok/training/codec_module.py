"""GAN training of a codec with Lightning (manual optimization).

Generator = the codec; discriminator = any module returning ``(logits, features)`` (see
:mod:`sonotok.discriminators`). Every loss module returns a ``dict[str, Tensor]`` with namespaced keys,
and the total generator loss is ``sum(weights[k] * losses[k])``: the config's ``loss.weights`` are keyed
exactly like the logged metric names (``train/rec/mel``, ``train/adv/gen`` ...).
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any, Callable, Dict, Mapping, Optional

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from sonotok.models.codec import Codec

ADVERSARIAL_KEYS = ("gen", "feat", "disc")


def _lr_lambda(
    warmup_steps: int,
    decay: str,
    total_steps: int,
    min_ratio: float,
    time_fraction: Optional[Callable[[], float]] = None,
) -> Callable[[int], float]:
    """Learning-rate factor per optimizer step: linear warm-up, then cosine or exponential decay.

    The cosine runs over ``total_steps``, or, when ``time_fraction`` is given, over the training time
    (``time_fraction()`` = elapsed / budget), so a run stopped by a wall-clock budget ends fully decayed
    however many steps the machine managed.
    """

    def fn(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if decay == "cosine" and (time_fraction is not None or total_steps > warmup_steps):
            if time_fraction is not None:
                p = min(1.0, max(0.0, time_fraction()))
            else:
                p = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
            return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p))
        if decay.startswith("exp"):
            return max(min_ratio, 0.999996 ** max(0, step - warmup_steps))
        return 1.0

    return fn


class CodecLightningModule(pl.LightningModule):
    """Trains a :class:`~sonotok.models.codec.Codec` with reconstruction, quantizer and GAN losses.

    Args:
        codec: the codec (generator).
        losses: mapping ``name -> loss module``; the names ``gen``, ``feat`` and ``disc`` are the
            adversarial losses (generator, feature matching, discriminator), the rest are reconstruction
            losses called as ``loss(recon, wav) -> dict``.
        weights: ``{metric key: weight}``; keys absent get weight 0 (logged but not optimised).
        discriminator: optional discriminator; ``None`` trains without a GAN.
        optimizer: ``functools.partial`` building the generator optimizer from parameters.
        disc_optimizer: the same for the discriminator.
        warmup_steps: linear learning-rate warm-up (optimizer steps of the generator).
        lr_decay: ``"none"``, ``"cosine"`` or ``"exponential"``.
        total_steps: horizon of the cosine decay.
        total_minutes: horizon of the cosine decay in minutes of training (wall clock between training
            steps, validation included, as Lightning's ``max_time`` counts it; carried over on resume);
            replaces ``total_steps`` when set.
        min_lr_ratio: floor of the decay.
        disc_start_step: the step at which the GAN starts (reconstruction converges first).
        grad_clip: generator gradient-norm clip (``0`` disables).
        disc_grad_clip: discriminator gradient-norm clip.
        log_audio_examples: number of validation files logged as audio and spectrogram images.
        model_config: the resolved config node that builds ``codec`` (stored in checkpoints so a
            checkpoint alone rebuilds the model).
    """

    def __init__(
        self,
        codec: Codec,
        losses: Mapping[str, nn.Module],
        weights: Mapping[str, float],
        discriminator: Optional[nn.Module] = None,
        optimizer: Optional[Callable[..., torch.optim.Optimizer]] = None,
        disc_optimizer: Optional[Callable[..., torch.optim.Optimizer]] = None,
        warmup_steps: int = 0,
        lr_decay: str = "none",
        total_steps: int = 100_000,
        min_lr_ratio: float = 0.1,
        total_minutes: Optional[float] = None,
        disc_start_step: int = 0,
        grad_clip: float = 1.0,
        disc_grad_clip: float = 10.0,
        log_audio_examples: int = 2,
        model_config: Optional[Mapping] = None,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.codec = codec
        self.discriminator = discriminator
        self.rec_losses = nn.ModuleDict({k: v for k, v in losses.items() if k not in ADVERSARIAL_KEYS and v is not None})
        self.adv_losses = nn.ModuleDict({k: v for k, v in losses.items() if k in ADVERSARIAL_KEYS and v is not None})
        if discriminator is not None:
            missing = [k for k in ADVERSARIAL_KEYS if k not in self.adv_losses]
            if missing:
                raise ValueError(f"a discriminator needs the adversarial losses {missing} in `losses`")
        self.weights = {str(k): float(v) for k, v in dict(weights).items()}
        self.optimizer_fn = optimizer or (lambda p: torch.optim.AdamW(p, lr=3e-4, betas=(0.8, 0.99)))
        self.disc_optimizer_fn = disc_optimizer or self.optimizer_fn
        self.warmup_steps = int(warmup_steps)
        self.lr_decay = lr_decay
        self.total_steps = int(total_steps)
        self.min_lr_ratio = float(min_lr_ratio)
        self.total_minutes = float(total_minutes) if total_minutes else None
        self.train_seconds = 0.0  # training wall time; saved in checkpoints (time-based schedule)
        self._last_step_time: Optional[float] = None
        self.disc_start_step = int(disc_start_step)
        self.grad_clip = float(grad_clip)
        self.disc_grad_clip = float(disc_grad_clip)
        self.log_audio_examples = int(log_audio_examples)
        self.model_config = model_config
        # generator steps taken; a buffer so checkpoints restore it exactly
        self.register_buffer("gen_steps", torch.zeros((), dtype=torch.long))
        self._t0: Optional[float] = None
        self.batches_this_run = 0  # not saved: tells a resumed run from a fresh one

    # ----------------------------------------------------------------- optimizers
    def configure_optimizers(self):
        opt_g = self.optimizer_fn(self.codec.parameters())
        fn = _lr_lambda(self.warmup_steps, self.lr_decay, self.total_steps, self.min_lr_ratio, self._time_fraction())
        sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, fn)
        if self.discriminator is None:
            return [opt_g], [sched_g]
        opt_d = self.disc_optimizer_fn(self.discriminator.parameters())
        sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, fn)
        return [opt_g, opt_d], [sched_g, sched_d]

    # ----------------------------------------------------------------- helpers
    def _time_fraction(self) -> Optional[Callable[[], float]]:
        if self.total_minutes is None:
            return None
        return lambda: self.train_seconds / (60.0 * self.total_minutes)

    def _tick(self) -> None:
        """Add the wall time since the previous training step to ``train_seconds``."""
        now = time.perf_counter()
        if self._last_step_time is not None:
            self.train_seconds += now - self._last_step_time
        self._last_step_time = now
        if self.total_minutes is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
            # every rank must take the same learning rate (DDP keeps parameters equal only if the updates are)
            t = torch.tensor(self.train_seconds, dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            self.train_seconds = float(t)

    def weighted_total(self, losses: Dict[str, Tensor]) -> Tensor:
        total = None
        for k, v in losses.items():
            w = self.weights.get(k, 0.0)
            if w:
                total = v * w if total is None else total + v * w
        if total is None:
            raise ValueError(f"no loss has a non-zero weight: losses {sorted(losses)}, weights {self.weights}")
        return total

    def reconstruction_losses(self, recon: Tensor, wav: Tensor) -> Dict[str, Tensor]:
        out: Dict[str, Tensor] = {}
        for m in self.rec_losses.values():
            out.update(m(recon, wav))
        return out

    def gan_active(self) -> bool:
        return self.discriminator is not None and int(self.gen_steps) >= self.disc_start_step

    @staticmethod
    def _batch_audio(batch: Any) -> Tensor:
        if isinstance(batch, (list, tuple)):
            batch = batch[0]
        if isinstance(batch, dict):
            batch = batch["audio"]
        return batch

    # ----------------------------------------------------------------- training
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        if self._t0 is None:
            self._t0 = time.perf_counter()
        self._tick()
        wav = self._batch_audio(batch)
        opts = self.optimizers()
        scheds = self.lr_schedulers()
        opts = opts if isinstance(opts, list) else [opts]
        scheds = scheds if isinstance(scheds, list) else [scheds]
        opt_g = opts[0]

        out = self.codec(wav)
        recon = out["recon"]
        losses = self.reconstruction_losses(recon, wav)
        losses.update(out["losses"])
        logs: Dict[str, Tensor] = {}

        if self.gan_active():
            opt_d = opts[1]
            real_logits, _ = self.discriminator(wav)
            fake_logits, _ = self.discriminator(recon.detach())
            d_losses = self.adv_losses["disc"](real_logits, fake_logits)
            d_loss = sum(d_losses.values())
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            if self.disc_grad_clip > 0:
                self.clip_gradients(opt_d, gradient_clip_val=self.disc_grad_clip, gradient_clip_algorithm="norm")
            opt_d.step()
            scheds[1].step()
            logs.update({k: v.detach() for k, v in d_losses.items()})

            fake_logits, fake_feats = self.discriminator(recon)
            with torch.no_grad():
                _, real_feats = self.discriminator(wav)
            losses.update(self.adv_losses["gen"](fake_logits))
            losses.update(self.adv_losses["feat"](real_feats, fake_feats))

        total = self.weighted_total(losses)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(total)
        if self.grad_clip > 0:
            self.clip_gradients(opt_g, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        opt_g.step()
        scheds[0].step()
        self.gen_steps += 1
        self.batches_this_run += 1

        logs.update({k: v.detach() for k, v in losses.items()})
        logs.update({k: v for k, v in out["metrics"].items()})
        logs["loss"] = total.detach()
        logs["lr"] = torch.tensor(opt_g.param_groups[0]["lr"])
        logs["minutes"] = torch.tensor((time.perf_counter() - self._t0) / 60.0)
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, prog_bar=False, on_step=True, on_epoch=False)
        self.log("step", self.gen_steps.float(), prog_bar=True, on_step=True, on_epoch=False)
        return total.detach()

    # ----------------------------------------------------------------- validation
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        from sonotok.losses.spectral import mel_distance

        wav = self._batch_audio(batch)
        out = self.codec(wav)
        recon = out["recon"]
        losses = self.reconstruction_losses(recon, wav)
        mel = mel_distance(recon, wav, self.codec.sample_rate)
        self.log("val/mel_distance", mel, prog_bar=True, on_epoch=True, sync_dist=True, batch_size=wav.shape[0])
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, on_epoch=True, sync_dist=True, batch_size=wav.shape[0])
        if batch_idx < self.log_audio_examples and self.global_rank == 0:
            self._log_examples(wav[0], recon[0], batch_idx)

    def _log_examples(self, ref: Tensor, est: Tensor, idx: int) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger

        for logger in self.loggers:
            if not isinstance(logger, TensorBoardLogger):
                continue
            exp = logger.experiment
            sr = self.codec.sample_rate
            step = int(self.gen_steps)
            if self.current_epoch == 0 or step == 0:
                exp.add_audio(f"audio/{idx}/original", ref.float().mean(0).clamp(-1, 1).cpu(), step, sample_rate=sr)
            exp.add_audio(f"audio/{idx}/reconstruction", est.float().mean(0).clamp(-1, 1).cpu(), step, sample_rate=sr)
            try:
                from sonotok.training.plots import spectrogram_figure

                exp.add_figure(f"spectrogram/{idx}", spectrogram_figure(ref, est, sr), step)
            except Exception as e:  # noqa: BLE001 - a plotting failure must never stop training
                warnings.warn(f"spectrogram logging failed: {e}", stacklevel=2)

    # ----------------------------------------------------------------- checkpoints
    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        self.train_seconds = float(checkpoint.get("sonotok_train_seconds", 0.0))

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["sonotok_train_seconds"] = self.train_seconds
        if self.model_config is not None:
            from omegaconf import OmegaConf

            checkpoint["sonotok_model_config"] = OmegaConf.to_container(OmegaConf.create(self.model_config), resolve=True)
            checkpoint["sonotok_model_prefix"] = "codec."
