"""The bookkeeping every sonotok training module shares (codec GAN, separation, semantic).

:class:`TrainingModule` is a manual-optimization LightningModule that holds what does not depend on the
model: the loss weighting (``loss.weights`` keyed like the logged metrics), the generator-step counter and
training clock kept in checkpoints, the learning-rate schedule, gradient clipping after AMP unscaling,
gradient synchronisation under DDP with one backward per optimizer, the training random-number state
(exact resume), example logging and the model config stored in checkpoints so ``sonotok.load(ckpt)``
rebuilds the model.

Steps: ``trainer.max_steps``, ``trainer.global_step``, checkpoint cadence (``every_n_train_steps``), the
logged ``step`` and the schedule all count **generator** steps (one per training batch): auxiliary
optimizers (the discriminator) are stepped with :meth:`TrainingModule.step_auxiliary`, which Lightning does
not count.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn


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


def _rng_state() -> Dict[str, Any]:
    """The process's random-number state as tensors and plain values (loads with ``weights_only=True``)."""
    np_state = np.random.get_state()
    state: Dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TrainingModule(pl.LightningModule):
    """Base of the training modules (manual optimization; subclasses write ``training_step``).

    Args:
        weights: ``{metric key: weight}``; keys absent get weight 0 (logged but not optimised).
        warmup_steps: linear learning-rate warm-up (generator steps).
        lr_decay: ``"none"``, ``"cosine"`` or ``"exponential"``.
        total_steps: horizon of the cosine decay (generator steps).
        min_lr_ratio: floor of the decay.
        total_minutes: horizon of the cosine decay in minutes of training (wall clock between training
            steps, validation included, as Lightning's ``max_time`` counts it; carried over on resume);
            replaces ``total_steps`` when set. A resume with another schedule (e.g. a larger ``max_time`` with
            ``total_minutes=max_time``) is warned of: the learning rate follows the new horizon from the time
            already trained.
        grad_clip: gradient-norm clip of the main optimizer (``0`` disables); applied after AMP unscaling.
        log_audio_examples: number of validation files logged as audio (and spectrogram images).
        model_config: the resolved config node that builds the trained model (stored in checkpoints so a
            checkpoint alone rebuilds the model).

    Subclasses set :attr:`model_attr` (the attribute holding the model saved as the model directory).
    """

    #: attribute name of the trained model; checkpoints store ``"<model_attr>."`` as the state-dict prefix
    model_attr = "model"

    def __init__(
        self,
        weights: Mapping[str, float],
        warmup_steps: int = 0,
        lr_decay: str = "none",
        total_steps: int = 100_000,
        min_lr_ratio: float = 0.1,
        total_minutes: Optional[float] = None,
        grad_clip: float = 1.0,
        log_audio_examples: int = 2,
        model_config: Optional[Mapping] = None,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.weights = {str(k): float(v) for k, v in dict(weights).items()}
        self.warmup_steps = int(warmup_steps)
        self.lr_decay = lr_decay
        self.total_steps = int(total_steps)
        self.min_lr_ratio = float(min_lr_ratio)
        self.total_minutes = float(total_minutes) if total_minutes else None
        self.grad_clip = float(grad_clip)
        self.log_audio_examples = int(log_audio_examples)
        self.model_config = model_config
        self.train_seconds = 0.0  # training wall time; saved in checkpoints (time-based schedule)
        self._last_step_time: Optional[float] = None
        # generator steps taken; a buffer so checkpoints restore it exactly
        self.register_buffer("gen_steps", torch.zeros((), dtype=torch.long))
        self._t0: Optional[float] = None
        self.batches_this_run = 0  # not saved: tells a resumed run from a fresh one
        self._train_rng: Optional[Dict[str, Any]] = None
        self._clip: Dict[int, float] = {}  # id(optimizer) -> clip value

    # ----------------------------------------------------------------- schedule and clock
    def lr_lambda(self) -> Callable[[int], float]:
        return _lr_lambda(self.warmup_steps, self.lr_decay, self.total_steps, self.min_lr_ratio, self._time_fraction())

    def scheduled(self, optimizer: torch.optim.Optimizer, clip: float) -> torch.optim.lr_scheduler.LambdaLR:
        """The schedule of ``optimizer`` (registering its gradient clip)."""
        self._clip[id(optimizer)] = float(clip)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_lambda())

    def _time_fraction(self) -> Optional[Callable[[], float]]:
        if self.total_minutes is None:
            return None
        return lambda: self.train_seconds / (60.0 * self.total_minutes)

    def _tick(self) -> None:
        """Add the wall time since the previous training step to ``train_seconds``."""
        now = time.perf_counter()
        if self._t0 is None:
            self._t0 = now
        if self._last_step_time is not None:
            self.train_seconds += now - self._last_step_time
        self._last_step_time = now
        if self.total_minutes is not None and self._distributed():
            # every rank must take the same learning rate (DDP keeps parameters equal only if the updates are)
            t = torch.tensor(self.train_seconds, dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            self.train_seconds = float(t)

    # ----------------------------------------------------------------- losses
    def weighted_total(self, losses: Dict[str, Tensor]) -> Tensor:
        """``sum(weights[k] * losses[k])`` over the keys with a non-zero weight."""
        terms = [v * self.weights[k] for k, v in losses.items() if self.weights.get(k, 0.0)]
        if not terms:
            raise ValueError(f"no loss has a non-zero weight: losses {sorted(losses)}, weights {self.weights}")
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        return total

    # ----------------------------------------------------------------- distributed
    @staticmethod
    def _distributed() -> bool:
        return torch.distributed.is_available() and torch.distributed.is_initialized() \
            and torch.distributed.get_world_size() > 1

    def setup(self, stage: str) -> None:
        # the process group exists now: quantizers built before it turn on their codebook synchronisation
        for m in self.modules():
            if m is not self and callable(getattr(m, "setup_distributed", None)):
                m.setup_distributed()

    @contextmanager
    def _no_ddp_sync(self) -> Iterator[None]:
        """Backward without DDP's reducer (gradients are all-reduced per optimizer by :meth:`_sync_grads`)."""
        strategy = self._trainer.strategy if self._trainer is not None else None
        block = getattr(strategy, "block_backward_sync", None)
        if block is None or not self._distributed():
            yield
            return
        with block():
            yield

    def _sync_grads(self, params: Sequence[nn.Parameter]) -> None:
        """Average the gradients of ``params`` over the ranks in one all-reduce per 32 MiB.

        A parameter without a gradient on every rank keeps ``grad=None`` (like DDP's unused parameters);
        one with a gradient on some ranks gets the average with zeros elsewhere.
        """
        if not self._distributed():
            return
        params = [p for p in params if p.requires_grad]
        world = torch.distributed.get_world_size()
        limit = 8 * 2 ** 20  # elements per bucket
        bucket: List[nn.Parameter] = []
        size = 0
        for p in [*params, None]:
            if p is not None:
                bucket.append(p)
                size += p.numel()
            if bucket and (p is None or size >= limit):
                ref = bucket[0]
                flat = [(q.grad if q.grad is not None else torch.zeros_like(q)).reshape(-1).to(ref.dtype) for q in bucket]
                used = torch.tensor([q.grad is not None for q in bucket], dtype=ref.dtype, device=ref.device)
                buf = torch.cat([*flat, used])
                torch.distributed.all_reduce(buf)
                offset = 0
                for i, q in enumerate(bucket):
                    n = q.numel()
                    if buf[size + i] > 0:
                        g = (buf[offset : offset + n] / world).view_as(q).to(q.dtype)
                        if q.grad is None:
                            q.grad = g
                        else:
                            q.grad.copy_(g)
                    offset += n
                bucket, size = [], 0

    @contextmanager
    def optimizing(self, optimizer: Any) -> Iterator[None]:
        """The forward and backward of one optimizer's loss: ``with self.optimizing(opt): ...manual_backward(loss)``.

        Inside, only ``optimizer``'s parameters require gradients (Lightning's ``toggle_optimizer``), so the
        other models (the discriminator in the generator step) compute no gradients; the backward runs
        without DDP's reducer and on exit the gradients of ``optimizer``'s parameters are averaged over the
        ranks. One backward per optimizer, no unused-parameter search, no gradient all-reduced for a model
        that does not step.
        """
        opt = getattr(optimizer, "optimizer", optimizer)
        params = [p for g in opt.param_groups for p in g["params"]]
        self.toggle_optimizer(optimizer)
        try:
            with self._no_ddp_sync():
                yield
        finally:
            self.untoggle_optimizer(optimizer)
        self._sync_grads(params)

    def step_auxiliary(self, optimizer: Any, scheduler: Optional[Any] = None) -> None:
        """Step an auxiliary optimizer (the discriminator) without counting it as a training step.

        Lightning counts every optimizer step in ``global_step``; the auxiliary step keeps its precision
        handling (AMP unscaling, clipping in :meth:`on_before_optimizer_step`) but not the count, so
        ``max_steps``, checkpoint cadence and the logged step are generator steps.
        """
        before, after = optimizer._on_before_step, optimizer._on_after_step
        profiler = self.trainer.profiler
        optimizer._on_before_step = lambda: profiler.start("optimizer_step")
        optimizer._on_after_step = lambda: profiler.stop("optimizer_step")
        try:
            optimizer.step()
        finally:
            optimizer._on_before_step, optimizer._on_after_step = before, after
        optimizer.zero_grad(set_to_none=True)
        if scheduler is not None:
            scheduler.step()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Lightning calls this after the AMP scaler has unscaled the gradients (16-mixed): clip here
        clip = self._clip.get(id(optimizer), self.grad_clip)
        if clip > 0:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    # ----------------------------------------------------------------- random state (exact resume)
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # training draws its random numbers from its own stream: validation, loader iterators or a resume
        # between two steps do not shift it (quantizer dropout, bypass), and checkpoints carry it
        if self._train_rng is not None:
            _set_rng_state(self._train_rng)

    def end_step(self) -> None:
        """Count the generator step and keep the training random state (call at the end of ``training_step``)."""
        self.gen_steps += 1
        self.batches_this_run += 1
        self._train_rng = _rng_state()

    # ----------------------------------------------------------------- logging
    def log_train(self, logs: Dict[str, Tensor], lr: float) -> None:
        logs = dict(logs)
        logs["lr"] = torch.tensor(lr)
        logs["minutes"] = torch.tensor((time.perf_counter() - (self._t0 or time.perf_counter())) / 60.0)
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, prog_bar=False, on_step=True, on_epoch=False)
        self.log("step", self.gen_steps.float(), prog_bar=True, on_step=True, on_epoch=False)

    def tensorboard_writers(self) -> List[Any]:
        """The ``SummaryWriter`` of every TensorBoard logger (rank 0 only)."""
        from lightning.pytorch.loggers import TensorBoardLogger

        if self.global_rank != 0:
            return []
        return [lg.experiment for lg in self.loggers if isinstance(lg, TensorBoardLogger)]

    def log_audio(self, tag: str, wav: Tensor, sample_rate: int) -> None:
        """Log ``wav [C, T]`` (channels averaged) or ``[T]`` at the current generator step."""
        wav = wav.float()
        wav = wav.mean(0) if wav.dim() > 1 else wav
        for exp in self.tensorboard_writers():
            exp.add_audio(tag, wav.clamp(-1, 1).cpu(), int(self.gen_steps), sample_rate=sample_rate)

    # ----------------------------------------------------------------- checkpoints
    def schedule_state(self) -> Dict[str, Any]:
        """The parameters the learning-rate schedule depends on (kept in checkpoints: a resume that changes them
        is warned of); e.g. ``total_steps`` only for a cosine over steps."""
        state: Dict[str, Any] = {"warmup_steps": self.warmup_steps, "lr_decay": self.lr_decay}
        if self.lr_decay != "none":
            state["min_lr_ratio"] = self.min_lr_ratio
        if self.lr_decay == "cosine":
            if self.total_minutes is not None:
                state["total_minutes"] = self.total_minutes
            else:
                state["total_steps"] = self.total_steps
        return state

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["sonotok_train_seconds"] = self.train_seconds
        checkpoint["sonotok_schedule"] = self.schedule_state()
        if self._train_rng is not None:
            checkpoint["sonotok_rng"] = self._train_rng
        if self.model_config is not None:
            from omegaconf import OmegaConf

            checkpoint["sonotok_model_config"] = OmegaConf.to_container(OmegaConf.create(self.model_config), resolve=True)
            checkpoint["sonotok_model_prefix"] = f"{self.model_attr}."

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        self.train_seconds = float(checkpoint.get("sonotok_train_seconds", 0.0))
        self._train_rng = checkpoint.get("sonotok_rng")
        saved, now = checkpoint.get("sonotok_schedule"), self.schedule_state()
        changed = {} if saved is None else {k: (saved.get(k), now.get(k)) for k in [*saved, *now]
                                            if saved.get(k) != now.get(k)}
        if changed:
            # e.g. a run continued with a larger trainer.max_time and schedule.total_minutes=max_time: legitimate,
            # but the learning rate now follows the new horizon (at the steps / minutes already done), so the
            # continued run is neither the first run's nor an uninterrupted run's with the new limits
            what = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
            rank_zero_warn(
                f"resuming with a changed learning-rate schedule ({what}): the schedule continues from step "
                f"{int(self.gen_steps)} / {self.train_seconds / 60:.2f} training minutes on the new horizon, so "
                f"this run is not the continuation of the checkpoint's schedule"
            )


class EMAWeights(EMAWeightAveraging):
    """Exponential moving average of the training module's weights (Lightning's ``EMAWeightAveraging``).

    ``ema = decay * ema + (1 - decay) * weights`` after every generator step (``trainer.global_step``
    counts generator steps only, see :meth:`TrainingModule.step_auxiliary`, so the update runs once per
    batch, after both optimizers stepped). The whole module is averaged (codec and discriminator: one
    parameter copy, one lerp per parameter per step); only parameters are averaged, buffers (codebook
    statistics, ``gen_steps``) follow the raw model. Validation scores the averaged weights, checkpoints
    hold them as ``state_dict`` (so ``sonotok.load(ckpt)`` and the best checkpoint give the average) and
    the raw weights as ``current_model_state`` (resume continues from those), and after ``fit`` the
    module holds the average, which is what ``export_dir`` receives.

    Differences from Lightning's class, for this project:

    * the average starts from the weights at the start of ``fit`` (``init_from``: the loaded ones), not
      from the weights after the first step;
    * until ``start_step`` generator steps have run, the average *equals* the raw weights (Lightning's
      ``update_starting_at_step`` would keep the initial weights, and score and export them);
    * the average is copied into the module at ``on_fit_end`` instead of ``on_train_end``, so any checkpoint
      written at the end of training (:class:`ResumableCheckpoint` saves the final step at the end of the
      last batch, Lightning's ``ModelCheckpoint`` at ``on_train_end``) keeps the raw weights to resume from.

    Args:
        decay: EMA decay in ``[0, 1)`` (0.999: an average over about the last 1000 steps).
        start_step: generator steps before the averaging starts.
        device: where the averaged copy lives (default: the module's device; ``"cpu"`` saves GPU memory).
    """

    def __init__(self, decay: float = 0.999, start_step: int = 0, device: Optional[str] = None):
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"EMA decay {decay}: expected a number in [0, 1), e.g. 0.999")
        if int(start_step) < 0:
            raise ValueError(f"EMA start_step {start_step}: expected a number of generator steps >= 0")
        super().__init__(device=device, use_buffers=False, decay=float(decay))
        self.decay = float(decay)
        self.start_step = int(start_step)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self._average_model is not None:
            # the copy made here counts as the first average (a resume overwrites it from the checkpoint)
            self._average_model.n_averaged.fill_(1)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._average_model is not None and trainer.global_step > self._latest_update_step \
                and trainer.global_step - 1 < self.start_step:
            self._average_model.n_averaged.zero_()  # AveragedModel copies the weights when it has averaged none
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pass  # the copy moves to on_fit_end (after the final last.ckpt)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._average_model is not None:
            self._copy_average_to_current(pl_module)


def training_stops_after_this_batch(trainer: pl.Trainer) -> bool:
    """Whether the fit loop ends after the batch that just ran (call from ``on_train_batch_end``).

    The loop's own stop conditions, evaluated before Lightning's epoch-end bookkeeping: ``max_steps`` reached,
    the last batch of the last epoch (``max_epochs``), or ``trainer.should_stop`` (``max_time``: the ``Timer``
    callback sets it in its own ``on_train_batch_end``, which runs before the checkpoint callbacks) once
    ``min_steps`` / ``min_epochs`` allow it. The same on every rank (global step, epoch length, and a
    ``should_stop`` the Timer broadcasts).
    """
    loop = trainer.fit_loop
    if trainer.max_steps is not None and trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps:
        return True
    epoch = loop.epoch_loop
    last_batch = epoch.batch_progress.is_last_batch or epoch.batch_progress.current.ready == trainer.num_training_batches
    max_epochs = loop.max_epochs
    if last_batch and max_epochs is not None and max_epochs != -1 and trainer.current_epoch + 1 >= max_epochs:
        return True
    return bool(trainer.should_stop) and loop._can_stop_early


class ResumableCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` that also saves the **final** step, at a point a resume continues from exactly.

    ``ModelCheckpoint`` saves every ``every_n_train_steps`` at the end of a batch; a run that stops between two
    of them (``max_steps``, ``max_time``, ``max_epochs``) would leave ``last.ckpt`` at the previous one, and the
    ``last.ckpt`` Lightning writes at ``on_train_end`` (only when the run saved nothing else) is taken after the
    fit loop has closed the epoch: resuming from it starts the *next* epoch (another data order and crops), so
    a continued run diverges from an uninterrupted one. This class saves the final state at the end of the last
    batch instead (the step checkpoint and ``last.ckpt``, like a periodic save, and only once per step), the
    same point as every periodic save, so a run continued from it (e.g. with a larger ``max_steps``) is
    bit-identical to one that never stopped.

    ``on_train_end`` saves nothing when the final step is saved or this process ran no training batch
    (re-running a finished command restores its checkpoint and stops at once: ``last.ckpt`` stays as it is);
    otherwise (a stop decided after the batch ended, e.g. by an ``EarlyStopping`` callback in validation) it
    falls back to Lightning's ``save_last`` at the end of training.

    Takes ``ModelCheckpoint``'s arguments. Its warning about manual optimization saving the weights after the
    optimizer step is silenced: that is the state a resume continues from (the module's training step ends
    with the optimizer steps, see :class:`TrainingModule`).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._batches_this_fit = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._batches_this_fit = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._batches_this_fit += 1
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if training_stops_after_this_batch(trainer):
            self._save_final(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._batches_this_fit == 0 or self._last_global_step_saved == trainer.global_step:
            return  # nothing trained in this process, or the final step is saved already
        super().on_train_end(trainer, pl_module)

    def _save_final(self, trainer: pl.Trainer) -> None:
        if self._should_skip_saving_checkpoint(trainer):  # fast_dev_run, not fitting, or this step is saved
            return
        candidates = self._monitor_candidates(trainer)
        if self.monitor is None or self.monitor in candidates:
            self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)
        self._defer_save_until_validation = False
