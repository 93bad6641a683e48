import pytest
import torch
from torch import nn

from sonotok.semantic.teacher import SemanticTeacher


class TinyTeacher(SemanticTeacher):
    """A random conv 'teacher' at 50 Hz (16 kHz input) for fast tests."""

    sample_rate = 16000
    feature_rate = 50.0

    def __init__(self, dim: int = 12, **kw):
        super().__init__(**kw)
        self.dim = dim
        self.conv = nn.Conv1d(1, dim, 320, stride=320)
        self.conv2 = nn.Conv1d(dim, dim, 3, padding=1)
        self.freeze()

    def hidden_states(self, wav):
        h1 = torch.tanh(self.conv(wav[:, None])).transpose(1, 2)
        h2 = torch.tanh(self.conv2(h1.transpose(1, 2))).transpose(1, 2)
        return [h1, h2]


@pytest.fixture
def tiny_teacher():
    return TinyTeacher()


def tiny_codec_parts(dim: int = 16):
    from sonotok.modules.seanet import SEANetDecoder, SEANetEncoder
    from sonotok.quantizers import ResidualVQ

    enc = SEANetEncoder(channels=1, dimension=dim, n_filters=4, strides=[4, 8, 10], dilations=[1])
    dec = SEANetDecoder(channels=1, dimension=dim, n_filters=4, strides=[4, 8, 10], dilations=[1])
    q = ResidualVQ(dim=dim, num_codebooks=3, codebook_size=32, kmeans_init=False)
    return enc, q, dec


TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "the", "pound", "key", "please",
              "enter", "your", "pass", "##word", "followed", "by", ".", ",", "good", "bye", "there", "a", "b"]


def write_tiny_bert(path, prefix: str = "", legacy_norm: bool = False, fmt: str = "safetensors", seed: int = 0,
                    **overrides):
    """A random BERT-architecture checkpoint in Hugging Face's layout (config.json, vocab.txt, weights), as a
    user's own BERT-family model directory would be. Returns ``(path, our BertEncoder with the same weights)``."""
    import json
    from pathlib import Path

    from sonotok.semantic.bert import BertConfig, BertEncoder, _hf_key_map

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = dict(model_type="bert", vocab_size=len(TINY_VOCAB), hidden_size=16, num_hidden_layers=2,
               num_attention_heads=2, intermediate_size=32, max_position_embeddings=64, type_vocab_size=2,
               layer_norm_eps=1e-12, hidden_act="gelu")
    cfg.update(overrides)
    (path / "config.json").write_text(json.dumps(cfg))
    (path / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n")
    torch.manual_seed(seed)
    fields = {k: v for k, v in cfg.items() if k in BertConfig.__dataclass_fields__}
    enc = BertEncoder(BertConfig(**fields)).eval()
    for p in enc.parameters():
        torch.nn.init.normal_(p, std=0.3)
    ours = enc.state_dict()
    state = {}
    for o, theirs in _hf_key_map(cfg["num_hidden_layers"]).items():
        if legacy_norm:
            theirs = theirs.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        state[prefix + theirs] = ours[o].clone()
    state[prefix + "pooler.dense.weight"] = torch.zeros(16, 16)
    state["cls.predictions.bias"] = torch.zeros(len(TINY_VOCAB))
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path / "model.safetensors"))
    else:
        torch.save(state, path / "pytorch_model.bin")
    return path, enc
