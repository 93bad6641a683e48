"""Residual and grouped residual vector quantization (wrappers over vector-quantize-pytorch).

References:
    Zeghidour et al., 2021, "SoundStream: An End-to-End Neural Audio Codec" (residual VQ, quantizer dropout).
    Yang et al., 2023, "HiFi-Codec: Group-residual Vector quantization for High Fidelity Audio Codec" (GRVQ).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import vector_quantize_pytorch as vqp
from torch import Tensor, nn

from sonotok.quantizers.base import Quantizer, QuantizerOutput
from sonotok.quantizers.frozen import FrozenVQ


def _linear_tensors(proj: nn.Module) -> tuple[Tensor, Tensor]:
    if isinstance(proj, nn.Linear):
        bias = proj.bias if proj.bias is not None else torch.zeros(proj.out_features, device=proj.weight.device)
        return proj.weight.detach(), bias.detach()
    return torch.empty(0), torch.empty(0)


def _world_is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _DistributedSync:
    """Synchronises codebook statistics across DDP ranks (mixed into the RVQ / GRVQ wrappers).

    vector-quantize-pytorch all-reduces the EMA statistics (``cluster_size``, ``embed_sum``), runs k-means
    init and dead-code re-seeding on the samples of every rank when its module is built with
    ``sync_codebook=True`` / ``sync_kmeans=True``; left unset it decides once, at construction, whether
    the process group exists. A training run builds the codec before Lightning creates the process group,
    so the wrapper builds the library module unsynchronised and :meth:`setup_distributed` (called by the
    training module's ``setup`` once the process group exists) rebuilds it synchronised, carrying the
    weights and buffers over. Every rank then ends each step with the same codebooks, computed from the
    data of all ranks (what one process would compute on the union of the batches).
    """

    sync_codebook: bool
    sync_kmeans: bool
    vq: nn.Module

    def _init_sync(self, sync_codebook: bool, sync_kmeans: bool, vq_cls: type, vq_kwargs: dict[str, Any]) -> None:
        self.sync_codebook = bool(sync_codebook)
        self.sync_kmeans = bool(sync_kmeans)
        self._vq_cls, self._vq_kwargs = vq_cls, dict(vq_kwargs)
        self.vq = self._build_vq(self.sync_codebook and _world_is_distributed())

    def _build_vq(self, sync: bool) -> nn.Module:
        return self._vq_cls(**self._vq_kwargs, sync_codebook=sync)

    @property
    def synchronised(self) -> bool:
        """Whether the library module all-reduces its codebook statistics."""
        return bool(next(self._codebooks()).use_ddp)

    def _codebooks(self):
        return (m for m in self.vq.modules() if hasattr(m, "use_ddp") and hasattr(m, "embed"))

    def setup_distributed(self) -> bool:
        """Rebuild the library module synchronised if a process group of several ranks exists now.

        Returns whether the codebooks are synchronised afterwards.
        """
        want = self.sync_codebook and _world_is_distributed()
        if want != self.synchronised:
            state = self.vq.state_dict()
            ref = next(self.vq.parameters(), None)
            ref = ref if ref is not None else next(self.vq.buffers())
            vq = self._build_vq(want).to(ref.device)
            vq.load_state_dict(state)
            vq.train(self.vq.training)
            self.vq = vq
        return self.synchronised


def _vq_kwargs(
    kmeans_init: bool,
    kmeans_iters: int,
    decay: float,
    threshold_ema_dead_code: float,
    commitment_weight: float,
    rotation_trick: bool,
    learnable_codebook: bool,
    sync_kmeans: bool = True,
) -> dict:
    kw = dict(
        kmeans_init=kmeans_init,
        sync_kmeans=sync_kmeans,
        kmeans_iters=kmeans_iters,
        decay=decay,
        threshold_ema_dead_code=threshold_ema_dead_code,
        commitment_weight=commitment_weight,
        rotation_trick=rotation_trick,
    )
    if learnable_codebook:
        kw.update(learnable_codebook=True, ema_update=False)
    return kw


def _residual_kwargs(dim: int, levels: int, codebook_size: int, codebook_dim: Any, dropout: bool,
                     dropout_cutoff: int, vq: dict, **extra: Any) -> dict[str, Any]:
    """vector-quantize-pytorch's residual (and grouped residual) keyword arguments."""
    return dict(dim=dim, num_quantizers=levels, codebook_size=codebook_size, codebook_dim=codebook_dim,
                quantize_dropout=dropout, quantize_dropout_cutoff_index=dropout_cutoff, **extra, **vq)


class ResidualVQ(_DistributedSync, Quantizer):
    """Residual vector quantizer: ``num_codebooks`` VQ stages, each quantizing the previous residual.

    With one codebook it is plain VQ (VQ-VAE). Codebooks are learned by EMA by default.

    Args:
        dim: latent dimension ``D``.
        num_codebooks: residual stages ``K``.
        codebook_size: codes per codebook.
        codebook_dim: code dimension (a projection is added when it differs from ``dim``).
        kmeans_init: initialise codebooks with k-means on the first batch.
        kmeans_iters: k-means iterations.
        decay: EMA decay of the codebooks.
        threshold_ema_dead_code: re-seed codes whose EMA usage falls below this many assignments
            per batch. Scale it with the frames per batch: with ``F`` frames and ``C`` codes a uniform
            code gets ``F / C`` hits, so a threshold near ``0.1 * F / C`` only catches truly dead codes.
        commitment_weight: weight of the commitment loss (reported as ``vq/commit``).
        quantizer_dropout: train with a random number of stages (variable bitrate, SoundStream).
        quantizer_dropout_cutoff: the minimum number of stages kept minus one.
        rotation_trick: rotation-trick gradients (Fifty et al., 2024) instead of straight-through.
        learnable_codebook: learn codebooks by gradient instead of EMA.
        sync_codebook: under DDP, all-reduce the codebook statistics (EMA counts and sums) across ranks so
            every rank learns the same codebooks from all ranks' data (see :class:`_DistributedSync`);
            ``False`` keeps rank-local statistics (DDP then broadcasts rank 0's buffers).
        sync_kmeans: under DDP with ``sync_codebook``, run k-means init and dead-code re-seeding on the
            samples of all ranks.
    """

    def __init__(
        self,
        dim: int,
        num_codebooks: int = 8,
        codebook_size: int = 1024,
        codebook_dim: int | None = None,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        decay: float = 0.99,
        threshold_ema_dead_code: float = 0.0,
        commitment_weight: float = 1.0,
        quantizer_dropout: bool = False,
        quantizer_dropout_cutoff: int = 0,
        rotation_trick: bool = False,
        learnable_codebook: bool = False,
        sync_codebook: bool = True,
        sync_kmeans: bool = True,
    ):
        super().__init__()
        self.dim = dim
        self.num_codebooks = num_codebooks
        self.codebook_size = codebook_size
        kw = _residual_kwargs(dim, num_codebooks, codebook_size, codebook_dim, quantizer_dropout,
                              quantizer_dropout_cutoff, _vq_kwargs(kmeans_init, kmeans_iters, decay,
                              threshold_ema_dead_code, commitment_weight, rotation_trick, learnable_codebook,
                              sync_kmeans))
        self._init_sync(sync_codebook, sync_kmeans, vqp.ResidualVQ, kw)

    def forward(self, z: Tensor) -> QuantizerOutput:
        """``z [B, D, T] -> QuantizerOutput`` (codes ``[B, K, T]``)."""
        self._check_latent(z)
        z_q, codes, commit = self.vq(z.transpose(1, 2))
        codes = codes.transpose(1, 2).long()
        losses = {"vq/commit": commit.sum()}
        return QuantizerOutput(z_q.transpose(1, 2), codes, losses, self.extra_metrics(codes))

    def to_frozen(self) -> FrozenVQ:
        cbs = torch.stack([layer._codebook.embed[0] for layer in self.vq.layers]).unsqueeze(0)
        w_in, b_in = _linear_tensors(self.vq.project_in)
        w_out, b_out = _linear_tensors(self.vq.project_out)
        if w_in.numel():
            w_in, b_in, w_out, b_out = w_in[None], b_in[None], w_out[None], b_out[None]
        return FrozenVQ(cbs, w_in, b_in, w_out, b_out, distance="lib")


class GroupedResidualVQ(_DistributedSync, Quantizer):
    """Grouped residual VQ (HiFi-Codec): the latent is split into ``groups`` channel groups, each
    quantized by its own residual VQ. ``num_codebooks = groups * levels``.

    Args:
        dim: latent dimension ``D`` (divisible by ``groups``).
        groups: channel groups.
        levels: residual stages per group.
        codebook_size, codebook_dim, kmeans_init, kmeans_iters, decay, threshold_ema_dead_code,
        commitment_weight, quantizer_dropout, quantizer_dropout_cutoff, rotation_trick, learnable_codebook,
        sync_codebook, sync_kmeans: as in :class:`ResidualVQ`.
    """

    def __init__(
        self,
        dim: int,
        groups: int = 2,
        levels: int = 2,
        codebook_size: int = 1024,
        codebook_dim: int | None = None,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        decay: float = 0.99,
        threshold_ema_dead_code: float = 0.0,
        commitment_weight: float = 1.0,
        quantizer_dropout: bool = False,
        quantizer_dropout_cutoff: int = 0,
        rotation_trick: bool = False,
        learnable_codebook: bool = False,
        sync_codebook: bool = True,
        sync_kmeans: bool = True,
    ):
        super().__init__()
        if dim % groups:
            raise ValueError(f"dim ({dim}) must be divisible by groups ({groups})")
        self.dim = dim
        self.groups = groups
        self.levels = levels
        self.num_codebooks = groups * levels
        self.codebook_size = codebook_size
        kw = _residual_kwargs(dim, levels, codebook_size, codebook_dim, quantizer_dropout, quantizer_dropout_cutoff,
                              _vq_kwargs(kmeans_init, kmeans_iters, decay, threshold_ema_dead_code,
                              commitment_weight, rotation_trick, learnable_codebook, sync_kmeans), groups=groups)
        self._init_sync(sync_codebook, sync_kmeans, vqp.GroupedResidualVQ, kw)

    def forward(self, z: Tensor) -> QuantizerOutput:
        self._check_latent(z)
        z_q, codes, commit = self.vq(z.transpose(1, 2))
        # library codes: [G, B, T, L] -> ours level-major [B, L * G, T]
        b, t = z.shape[0], z.shape[2]
        codes = codes.permute(1, 3, 0, 2).reshape(b, self.levels * self.groups, t).long()
        losses = {"vq/commit": commit.sum()}
        return QuantizerOutput(z_q.transpose(1, 2), codes, losses, self.extra_metrics(codes))

    def check_num_codebooks(self, k: int) -> int:
        k = super().check_num_codebooks(k)
        if k % self.groups:
            raise ValueError(f"num_codebooks must be a multiple of groups ({self.groups}), got {k}")
        return k

    def to_frozen(self) -> FrozenVQ:
        cbs, w_in, b_in, w_out, b_out = [], [], [], [], []
        for rvq in self.vq.rvqs:
            cbs.append(torch.stack([layer._codebook.embed[0] for layer in rvq.layers]))
            wi, bi = _linear_tensors(rvq.project_in)
            wo, bo = _linear_tensors(rvq.project_out)
            w_in.append(wi), b_in.append(bi), w_out.append(wo), b_out.append(bo)
        stack = torch.stack if w_in[0].numel() else (lambda xs: torch.empty(0))
        return FrozenVQ(torch.stack(cbs), stack(w_in), stack(b_in), stack(w_out), stack(b_out), distance="lib")
