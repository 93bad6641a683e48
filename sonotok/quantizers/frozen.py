"""Frozen, scriptable quantizers for inference and export.

vector-quantize-pytorch modules cannot be scripted (einops/einx, keyword expansion), so every
sonotok quantizer can be turned into one of these plain-tensor modules with ``to_frozen()``. They
reproduce the training module's nearest-neighbour search operation for operation, so the codes are
identical to the training module's codes in eval mode (tests prove it for every quantizer type).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FrozenVQ(nn.Module):
    """Grouped residual vector quantizer as plain tensors (covers VQ, RVQ, GRVQ, SimVQ, residual SimVQ).

    Codes are laid out level-major: code row ``k * groups + g`` is residual level ``k`` of group ``g``,
    so keeping the first ``K'`` rows (a lower bitrate) keeps the coarsest levels of every group.

    Args:
        codebooks: ``[G, L, C, d]`` (groups, residual levels, codebook size, code dim).
        proj_in_w: ``[G, d, D/G]`` or empty (no projection); proj_in_b: ``[G, d]``.
        proj_out_w: ``[G, D/G, d]`` or empty; proj_out_b: ``[G, D/G]``.
        distance: ``"lib"`` (vector-quantize-pytorch's expanded euclidean distance over the flattened
            batch) or ``"cdist"`` (``torch.cdist`` per batch item, as SimVQ does).
    """

    def __init__(
        self,
        codebooks: Tensor,
        proj_in_w: Tensor,
        proj_in_b: Tensor,
        proj_out_w: Tensor,
        proj_out_b: Tensor,
        distance: str = "lib",
    ):
        super().__init__()
        assert codebooks.dim() == 4, f"codebooks must be [G, L, C, d], got {list(codebooks.shape)}"
        self.register_buffer("codebooks", codebooks.detach().clone().contiguous())
        self.register_buffer("proj_in_w", proj_in_w.detach().clone())
        self.register_buffer("proj_in_b", proj_in_b.detach().clone())
        self.register_buffer("proj_out_w", proj_out_w.detach().clone())
        self.register_buffer("proj_out_b", proj_out_b.detach().clone())
        self.groups = int(codebooks.shape[0])
        self.levels = int(codebooks.shape[1])
        self.codebook_size = int(codebooks.shape[2])
        self.num_codebooks = self.groups * self.levels
        self.has_proj = proj_in_w.numel() > 0
        self.use_cdist = distance == "cdist"
        if distance not in ("lib", "cdist"):
            raise ValueError(f"distance must be 'lib' or 'cdist', got {distance!r}")
        self.group_dim = int(proj_out_w.shape[1]) if self.has_proj else int(codebooks.shape[3])
        self.dim = self.group_dim * self.groups
        # squared codebook norms [G, L, 1, C], computed once (per call they cost about a third of a
        # streaming frame of an 8 x 1024 RVQ); same expression as the library, so codes are identical
        with torch.no_grad():
            self.register_buffer("codebook_sq", (self.codebooks.unsqueeze(2) ** 2).sum(-1))

    def forward(self, z: Tensor) -> Tensor:
        """Quantize: ``decode(encode(z))``."""
        return self.decode(self.encode(z))

    def _nearest(self, x: Tensor, cb: Tensor, y2: Tensor) -> Tensor:
        # x: [1, N, d] (lib) or [B, T, d] (cdist); cb: [C, d]; y2: [1, C] squared norms of cb
        if self.use_cdist:
            return torch.cdist(x, cb).argmin(dim=-1)
        x2 = (x**2).sum(-1)
        xy = torch.einsum("bid,bjd->bij", x, cb.unsqueeze(0)) * -2
        dist = (x2.unsqueeze(-1) + y2.unsqueeze(1) + xy).clamp(min=1e-8).sqrt()
        return (-dist).argmax(dim=-1)

    @torch.jit.export
    def encode(self, z: Tensor) -> Tensor:
        """``z [B, D, T] -> codes [B, groups * levels, T]`` int64."""
        b, d, t = z.shape
        x = z.transpose(1, 2)
        out = torch.zeros(b, self.levels, self.groups, t, dtype=torch.long, device=z.device)
        for g in range(self.groups):
            xg = x[..., g * self.group_dim : (g + 1) * self.group_dim]
            if self.has_proj:
                xg = F.linear(xg, self.proj_in_w[g], self.proj_in_b[g])
            if not self.use_cdist:
                xg = xg.reshape(1, b * t, xg.shape[-1])
            residual = xg
            for k in range(self.levels):
                cb = self.codebooks[g, k]
                idx = self._nearest(residual, cb, self.codebook_sq[g, k])
                residual = residual - F.embedding(idx, cb)
                out[:, k, g] = idx.reshape(b, t)
        return out.reshape(b, self.levels * self.groups, t)

    @torch.jit.export
    def decode(self, codes: Tensor) -> Tensor:
        """``codes [B, K', T] -> z_q [B, D, T]`` with ``K'`` a multiple of ``groups`` and ``<= K``."""
        b, k_used, t = codes.shape
        levels = k_used // self.groups
        assert levels * self.groups == k_used and levels <= self.levels, "bad number of codebooks"
        codes = codes.reshape(b, levels, self.groups, t)
        outs = []
        for g in range(self.groups):
            acc = torch.zeros(b, t, self.codebooks.shape[-1], device=codes.device, dtype=self.codebooks.dtype)
            for k in range(levels):
                acc = acc + F.embedding(codes[:, k, g], self.codebooks[g, k])
            if self.has_proj:
                acc = F.linear(acc, self.proj_out_w[g], self.proj_out_b[g])
            outs.append(acc)
        return torch.cat(outs, dim=-1).transpose(1, 2)


class FrozenFSQ(nn.Module):
    """Finite scalar quantization (Mentzer et al., 2023) as plain tensors.

    Args:
        levels: ``[d]`` levels per dimension (int64).
        num_codebooks: codebooks (groups of ``d`` dimensions), each a code row; ``decode`` takes the first
            ``K' <= num_codebooks`` rows (a lower bitrate, missing groups decode as zeros).
        proj_in_w/proj_in_b/proj_out_w/proj_out_b: projections (empty tensors when absent).
    """

    def __init__(
        self,
        levels: Tensor,
        num_codebooks: int,
        proj_in_w: Tensor,
        proj_in_b: Tensor,
        proj_out_w: Tensor,
        proj_out_b: Tensor,
    ):
        super().__init__()
        levels = levels.long()
        self.register_buffer("levels", levels.clone())
        basis = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.long), levels[:-1]]), dim=0)
        self.register_buffer("basis", basis)
        self.register_buffer("proj_in_w", proj_in_w.detach().clone())
        self.register_buffer("proj_in_b", proj_in_b.detach().clone())
        self.register_buffer("proj_out_w", proj_out_w.detach().clone())
        self.register_buffer("proj_out_b", proj_out_b.detach().clone())
        self.has_proj = proj_in_w.numel() > 0
        self.has_bias = proj_in_b.numel() > 0
        self.num_codebooks = num_codebooks
        self.codebook_dim = int(levels.numel())
        self.codebook_size = int(torch.prod(levels).item())
        self.dim = int(proj_in_w.shape[1]) if self.has_proj else self.codebook_dim * num_codebooks
        # per-level constants of the bounding function, computed once (float32, as encode works)
        lv = levels.float()
        eps = 1e-3
        half_l = (lv - 1) * (1 + eps) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0).float()
        self.register_buffer("half_l", half_l)
        self.register_buffer("offset", offset)
        self.register_buffer("shift", torch.atanh(offset / half_l))
        self.register_buffer("half_width", torch.div(levels, 2, rounding_mode="floor"))
        self.register_buffer("half_width_f", self.half_width.float())

    def forward(self, z: Tensor) -> Tensor:
        """Quantize: ``decode(encode(z))``."""
        return self.decode(self.encode(z))

    @torch.jit.export
    def encode(self, z: Tensor) -> Tensor:
        """``z [B, D, T] -> codes [B, num_codebooks, T]`` int64."""
        b, d, t = z.shape
        x = z.transpose(1, 2).float()
        if self.has_proj:
            x = F.linear(x, self.proj_in_w, self.proj_in_b if self.has_bias else None)
        x = x.reshape(b, t, self.num_codebooks, self.codebook_dim)
        bounded = torch.tanh(x + self.shift) * self.half_l - self.offset
        zhat = torch.round(bounded) / self.half_width
        idx = ((zhat * self.half_width + self.half_width) * self.basis).sum(dim=-1).round().long()
        return idx.permute(0, 2, 1).contiguous()

    @torch.jit.export
    def decode(self, codes: Tensor) -> Tensor:
        """``codes [B, K', T] -> z_q [B, D, T]`` for ``1 <= K' <= num_codebooks``.

        Groups past ``K'`` and codes ``-1`` (groups dropped in training) decode to zero values before the
        output projection, as FSQ group dropout trains them: ``codes[:, :k]`` is the lower bitrate ``k``.
        """
        b, k, t = codes.shape
        if k < 1 or k > self.num_codebooks:
            raise ValueError("FSQ decode: codes hold " + str(k) + " codebooks, expected 1 to "
                             + str(self.num_codebooks))
        c = codes.permute(0, 2, 1)
        level_idx = (c.clamp_min(0).unsqueeze(-1) // self.basis) % self.levels
        vals = (level_idx - self.half_width).float() / self.half_width_f
        vals = vals.masked_fill((c < 0).unsqueeze(-1), 0.0)
        if k < self.num_codebooks:
            vals = F.pad(vals, (0, 0, 0, self.num_codebooks - k))
        vals = vals.reshape(b, t, self.num_codebooks * self.codebook_dim)
        if self.has_proj:
            vals = F.linear(vals, self.proj_out_w, self.proj_out_b if self.has_bias else None)
        return vals.transpose(1, 2)
