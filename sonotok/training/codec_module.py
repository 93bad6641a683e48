"""GAN training of a codec with Lightning (manual optimization).

Generator = the codec; discriminator = any module returning ``(logits, features)`` (see
:mod:`sonotok.discriminators`). Every loss module returns a ``dict[str, Tensor]`` with namespaced keys,
and the total generator loss is ``sum(weights[k] * losses[k])``: the config's ``loss.weights`` are keyed
exactly like the logged metric names (``train/rec/mel``, ``train/adv/gen`` ...); the discriminator loss is
weighted the same way (``adv/disc``).

One training step = one batch = one generator step (what ``max_steps``, ``global_step``, checkpoint
cadence and the logged ``step`` count): first the discriminator step (codec frozen, its output detached),
then the generator step (discriminator frozen: no discriminator gradient is computed or all-reduced);
each has its own single backward, gradients averaged over DDP ranks per optimizer
(:meth:`~sonotok.training.base.TrainingModule.optimizing`).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Mapping, Optional

import torch
from torch import Tensor, nn

from sonotok.models.codec import Codec
from sonotok.training.base import TrainingModule, _lr_lambda

__all__ = ["CodecLightningModule", "_lr_lambda"]

ADVERSARIAL_KEYS = ("gen", "feat", "disc")


class CodecLightningModule(TrainingModule):
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

    model_attr = "codec"

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
        super().__init__(
            weights, warmup_steps=warmup_steps, lr_decay=lr_decay, total_steps=total_steps,
            min_lr_ratio=min_lr_ratio, total_minutes=total_minutes, grad_clip=grad_clip,
            log_audio_examples=log_audio_examples, model_config=model_config,
        )
        self.codec = codec
        self.discriminator = discriminator
        self.rec_losses = nn.ModuleDict({k: v for k, v in losses.items() if k not in ADVERSARIAL_KEYS and v is not None})
        self.adv_losses = nn.ModuleDict({k: v for k, v in losses.items() if k in ADVERSARIAL_KEYS and v is not None})
        if discriminator is not None:
            missing = [k for k in ADVERSARIAL_KEYS if k not in self.adv_losses]
            if missing:
                raise ValueError(f"a discriminator needs the adversarial losses {missing} in `losses`")
        self.optimizer_fn = optimizer or (lambda p: torch.optim.AdamW(p, lr=3e-4, betas=(0.8, 0.99)))
        self.disc_optimizer_fn = disc_optimizer or self.optimizer_fn
        self.disc_start_step = int(disc_start_step)
        self.disc_grad_clip = float(disc_grad_clip)

    # ----------------------------------------------------------------- optimizers
    def configure_optimizers(self):
        opt_g = self.optimizer_fn(self.codec.parameters())
        sched_g = self.scheduled(opt_g, self.grad_clip)
        if self.discriminator is None:
            return [opt_g], [sched_g]
        opt_d = self.disc_optimizer_fn(self.discriminator.parameters())
        return [opt_g, opt_d], [sched_g, self.scheduled(opt_d, self.disc_grad_clip)]

    # ----------------------------------------------------------------- helpers
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
        self._tick()
        wav = self._batch_audio(batch)
        opts = self.optimizers()
        scheds = self.lr_schedulers()
        opts = opts if isinstance(opts, list) else [opts]
        scheds = scheds if isinstance(scheds, list) else [scheds]
        opt_g = opts[0]
        gan = self.gan_active()
        logs: Dict[str, Tensor] = {}

        out = self.codec(wav)
        recon = out["recon"]

        if gan:  # discriminator step: the codec is frozen and its output detached
            opt_d = opts[1]
            with self.optimizing(opt_d):
                real_logits, _ = self.discriminator(wav)
                fake_logits, _ = self.discriminator(recon.detach())
                d_losses = self.adv_losses["disc"](real_logits, fake_logits)
                self.manual_backward(self.weighted_total(d_losses))
            self.step_auxiliary(opt_d, scheds[1])
            logs.update({k: v.detach() for k, v in d_losses.items()})

        with self.optimizing(opt_g):  # generator step: the discriminator is frozen
            losses = self.reconstruction_losses(recon, wav)
            losses.update(out["losses"])
            if gan:
                fake_logits, fake_feats = self.discriminator(recon)
                with torch.no_grad():
                    _, real_feats = self.discriminator(wav)
                losses.update(self.adv_losses["gen"](fake_logits))
                losses.update(self.adv_losses["feat"](real_feats, fake_feats))
            total = self.weighted_total(losses)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(total)
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)
        scheds[0].step()
        self.end_step()

        logs.update({k: v.detach() for k, v in losses.items()})
        logs.update({k: v for k, v in out["metrics"].items()})
        logs["loss"] = total.detach()
        self.log_train(logs, opt_g.param_groups[0]["lr"])
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
        sr = self.codec.sample_rate
        step = int(self.gen_steps)
        if self.current_epoch == 0 or step == 0:
            self.log_audio(f"audio/{idx}/original", ref, sr)
        self.log_audio(f"audio/{idx}/reconstruction", est, sr)
        writers = self.tensorboard_writers()
        if writers:
            try:
                from sonotok.training.plots import spectrogram_figure

                fig = spectrogram_figure(ref, est, sr)
                for exp in writers:
                    exp.add_figure(f"spectrogram/{idx}", fig, step)
            except Exception as e:  # noqa: BLE001 - a plotting failure must never stop training
                warnings.warn(f"spectrogram logging failed: {e}", stacklevel=2)
