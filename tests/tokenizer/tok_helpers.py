"""Tiny causal codecs (a few thousand parameters) and short synthetic audio for the tokenize tests.

A uniquely named module (not conftest): several test folders have a conftest.py, and
``from conftest import ...`` would pick whichever was imported first."""

import numpy as np
import soundfile as sf
import torch
from hydra.utils import instantiate

from sonotok.training.train import compose_config

TINY = ["experiment=tiny_seanet", "encoder.n_filters=4", "decoder.n_filters=4", "latent_dim=8",
        "encoder.dilations=[1]", "decoder.dilations=[1]"]
RVQ = ["quantizer.num_codebooks=4", "quantizer.codebook_size=16", "quantizer.kmeans_init=false"]


def build_tiny(seed=0, extra=()):
    """(codec, codec config): tiny RVQ codec from the Hydra tree, random weights (kmeans init off so codes vary)."""
    torch.manual_seed(seed)
    cfg = compose_config(TINY + RVQ + list(extra))
    codec = instantiate(cfg.codec).eval()
    return codec, cfg.codec


def build_codec(qname, seed=0):
    """A tiny causal codec with the quantizer type ``qname`` (rvq, grvq, simvq, fsq), built directly."""
    from sonotok.models import Codec
    from sonotok.modules.seanet import SEANetDecoder, SEANetEncoder
    from sonotok.quantizers import FSQ, GroupedResidualVQ, ResidualSimVQ, ResidualVQ

    torch.manual_seed(seed)
    dim = 8
    q = {
        "rvq": lambda: ResidualVQ(dim, num_codebooks=4, codebook_size=16, kmeans_init=False),
        "grvq": lambda: GroupedResidualVQ(dim, groups=2, levels=2, codebook_size=16, kmeans_init=False),
        "simvq": lambda: ResidualSimVQ(dim, num_codebooks=2, codebook_size=16),
        "fsq": lambda: FSQ(dim, levels=(4, 4), num_codebooks=4),
    }[qname]()
    kw = dict(dimension=dim, n_filters=4, dilations=(1,), strides=(2, 4, 5, 8))
    codec = Codec(SEANetEncoder(**kw), q, SEANetDecoder(**kw), sample_rate=16000, name=f"tiny-{qname}").eval()
    if qname == "fsq":  # random latents are tiny: scale the last encoder conv so FSQ's rounding sees varied values
        with torch.no_grad():
            for n, p in codec.encoder.named_parameters():
                if n.startswith("model.layers.14.") and not n.endswith("original1"):
                    p.mul_(20)
    return codec


def synth(seconds, sr=16000, seed=0, channels=1):
    """Harmonic tone with a varying pitch and some noise, [channels, T] float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    f0 = 120 + 60 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    ph = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * ph) / k for k in range(1, 8)) * 0.3 * (1 + 0.5 * np.sin(2 * np.pi * 2.1 * t))
    x = x + 0.05 * rng.standard_normal(n)
    x = np.clip(x, -0.99, 0.99).astype(np.float32)
    return np.stack([x * (0.5 + 0.5 * c) for c in range(channels)])


def write_wav(path, seconds, sr=16000, seed=0, channels=1, subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), synth(seconds, sr, seed, channels).T, sr, subtype=subtype)
    return path


