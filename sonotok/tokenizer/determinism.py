"""Deterministic encoding on every device, and the "code variant" a run records in its manifest.

Codes are the argmin of a distance to a codebook, so a last-bit difference in the encoder's output can flip
a code. On CPU the encoder is deterministic whatever the batch; on CUDA it is not by default: TF32 matrix
products and convolutions (on by default for cuDNN convolutions on Ampere and later) and
benchmark-selected or non-deterministic kernels make codes depend on the batch shape and the algorithm
picked. :func:`deterministic_encoding` turns all of that off for the duration of an encoding run and
restores the caller's settings afterwards.

Even deterministic, codes made on different devices (CPU vs a GPU, or two GPU models) or at different
precisions may differ in a few places. :func:`encoding_variant` names what produced them
(``{"device": "cuda/NVIDIA H200", "precision": "float32"}``); :func:`sonotok.tokenizer.tokenize` records it
in every manifest row and re-encodes, rather than skips, finished files of another variant on resume, so
one output folder never mixes variants.
"""

from __future__ import annotations

import contextlib
import os
from typing import Dict, Iterator

import torch

__all__ = ["deterministic_encoding", "device_variant", "encoding_variant", "VARIANT_KEYS"]

VARIANT_KEYS = ("device", "precision")
_CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"


def _model_tensor(codec):
    p = next(codec.parameters(), None)
    if p is None:
        p = next(codec.buffers(), None)
    return p


def device_variant(device: torch.device | str, dtype: torch.dtype = torch.float32) -> Dict[str, str]:
    """The code variant of a model on ``device`` with parameters of ``dtype`` (see :func:`encoding_variant`)."""
    dev = torch.device(device)
    name = f"cuda/{torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else dev.type
    return {"device": name, "precision": str(dtype).replace("torch.", "")}


def encoding_variant(codec) -> Dict[str, str]:
    """What the codes of ``codec`` depend on besides its weights: the device kind and the precision.

    Returns:
        ``{"device": "cpu" | "cuda/<GPU name>" | "<type>", "precision": "float32" | "bfloat16" | ...}``.
    """
    p = _model_tensor(codec)
    if p is None:
        return device_variant("cpu")
    return device_variant(p.device, p.dtype)


@contextlib.contextmanager
def deterministic_encoding() -> Iterator[None]:
    """Within the block: no TF32 (cuBLAS and cuDNN), full-precision float32 matmuls, deterministic cuDNN
    without benchmarking, and torch's deterministic algorithms (``warn_only``: an op that has no
    deterministic version warns instead of failing). Every setting is restored on exit, also on error.
    """
    saved = {
        "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "matmul_precision": torch.get_float32_matmul_precision(),
        "algorithms": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cublas_env": os.environ.get(_CUBLAS_ENV),
    }
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.set_float32_matmul_precision("highest")
        if saved["cublas_env"] is None:  # deterministic cuBLAS needs a fixed workspace (read when it starts)
            os.environ[_CUBLAS_ENV] = ":4096:8"
        torch.use_deterministic_algorithms(True, warn_only=not saved["algorithms"] or saved["warn_only"])
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved["matmul_tf32"]
        torch.backends.cudnn.allow_tf32 = saved["cudnn_tf32"]
        torch.backends.cudnn.deterministic = saved["cudnn_deterministic"]
        torch.backends.cudnn.benchmark = saved["cudnn_benchmark"]
        torch.set_float32_matmul_precision(saved["matmul_precision"])
        torch.use_deterministic_algorithms(saved["algorithms"], warn_only=saved["warn_only"])
        if saved["cublas_env"] is None:
            os.environ.pop(_CUBLAS_ENV, None)
