"""Write the reference fixtures of the checkpoint importers (EnCodec, DAC, Mimi).

Runs in a separate environment holding the reference packages, never in the project's venv::

    python3 -m venv /work/refvenv
    # reuse the project's torch/numpy/einops/safetensors instead of a second torch install
    echo "$PWD/.venv/lib/python3.11/site-packages" > /work/refvenv/lib/python3.11/site-packages/project.pth
    /work/refvenv/bin/pip install --no-deps encodec descript-audio-codec descript-audiotools moshi argbind \\
        flatten_dict "huggingface_hub<0.30" julius ffmpy requests urllib3 idna charset_normalizer certifi \\
        importlib_resources sentencepiece rich markdown_it_py mdurl pygments randomname docstring_parser
    OMP_NUM_THREADS=1 /work/refvenv/bin/python tests/imports/make_fixtures.py [encodec] [dac] [mimi]

For each family it builds the reference model with the reference package's own classes in a reduced
size (fewer filters, fewer codebooks), gives it random weights (codebooks drawn from the model's own
latents, so codes are spread over the tables), saves it in the released file format, and writes what the
reference computes on a speech-like signal and on noise, at several lengths (some not a multiple of the
hop). ``tests/imports/test_*.py`` import the saved checkpoint with sonotok and compare.

Files per family under ``tests/imports/fixtures/<family>/``: the checkpoint, ``reference.safetensors``
(inputs, codes, decoded audio) and ``reference.json`` (config, lengths, package versions).
"""

from __future__ import annotations

import argparse
import json
import math
from importlib.metadata import version
from pathlib import Path

import torch

OUT = Path(__file__).parent / "fixtures"
SEED = 1234
FULL = False  # --full: the released configurations (for the slow test; files are large, not committed)


# ------------------------------------------------------------------------------------------ signals
def speech_like(n: int, sr: int, seed: int) -> torch.Tensor:
    """A voiced, speech-like test signal: a glottal pulse train with a gliding pitch through three
    formant resonators, syllable-rate amplitude envelope and a little breath noise. ``[1, 1, n]``."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float64) / sr
    f0 = 120 + 30 * torch.sin(2 * math.pi * 1.3 * t) + 10 * torch.sin(2 * math.pi * 4.1 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sr
    source = torch.zeros(n, dtype=torch.float64)
    for h in range(1, 30):
        source += torch.sin(h * phase) / h
    y = torch.zeros(n, dtype=torch.float64)
    for fc, bw, gain in ((700.0, 110.0, 1.0), (1220.0, 120.0, 0.5), (2600.0, 160.0, 0.25)):
        r = math.exp(-math.pi * bw / sr)
        a1, a2 = -2 * r * math.cos(2 * math.pi * fc / sr), r * r
        y1 = y2 = 0.0
        src = source.tolist()
        o = [0.0] * n
        for i in range(n):
            v = src[i] - a1 * y1 - a2 * y2
            o[i] = v
            y2, y1 = y1, v
        out = torch.tensor(o, dtype=torch.float64)
        y += gain * out / out.abs().max()
    env = 0.5 * (1 - torch.cos(2 * math.pi * 3.0 * t)).clamp_min(0.05)
    y = y * env + 0.01 * torch.randn(n, generator=g, dtype=torch.float64)
    y = 0.3 * y / y.abs().max()
    return y.float().view(1, 1, n)


def noise(n: int, seed: int, channels: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (0.1 * torch.randn(1, channels, n, generator=g)).float()


def random_codebook(residual: torch.Tensor, bins: int, g: torch.Generator) -> torch.Tensor:
    """Gaussian codes with the mean and per-dimension spread of ``residual [N, d]``.

    Not fitted to the data: every level removes only part of the residual, so deep levels still see
    well-separated distances (a fitted table on few frames leaves residuals near zero, where the
    nearest code is decided by rounding noise and any implementation difference looks like a bug).
    """
    return residual.mean(0) + 0.8 * residual.std(0) * torch.randn(bins, residual.shape[1], generator=g)


def save(family: str, checkpoint_name: str, write_checkpoint, tensors: dict, meta: dict) -> None:
    from safetensors.torch import save_file

    d = OUT / family
    d.mkdir(parents=True, exist_ok=True)
    write_checkpoint(d / checkpoint_name)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(d / "reference.safetensors"))
    meta = dict(meta, checkpoint=checkpoint_name, seed=SEED, torch=torch.__version__)
    (d / "reference.json").write_text(json.dumps(meta, indent=2) + "\n")
    sizes = {p.name: p.stat().st_size for p in d.iterdir()}
    print(family, sizes)


# ------------------------------------------------------------------------------------------ EnCodec
@torch.no_grad()
def make_encodec() -> None:
    import encodec
    from encodec import modules as m
    from encodec import quantization as qt

    torch.manual_seed(SEED)
    sr, n_filters, dimension, n_q, bins = 24000, 2, 16, 4, 1024
    ratios = [8, 5, 4, 2]
    if FULL:  # the released causal 24 kHz model, exactly as the package builds it
        model = encodec.EncodecModel.encodec_model_24khz(pretrained=False)
        bandwidths = [1.5, 6.0, 24.0]
        n_filters, dimension, n_q = 32, 128, 32
    else:
        enc = m.SEANetEncoder(channels=1, dimension=dimension, n_filters=n_filters, ratios=ratios,
                              norm="weight_norm", causal=True)
        dec = m.SEANetDecoder(channels=1, dimension=dimension, n_filters=n_filters, ratios=ratios,
                              norm="weight_norm", causal=True)
        quant = qt.ResidualVectorQuantizer(dimension=dimension, n_q=n_q, bins=bins)
        bandwidths = [1.5, 3.0]
        model = encodec.EncodecModel(enc, dec, quant, bandwidths, sr, 1, normalize=False, name="encodec_24khz")
    model = model.eval()
    # codebooks: spread like the model's own latents on noise and speech, level by level on the residual
    train = torch.cat([noise(sr * 2, SEED + 1), speech_like(sr * 2, sr, SEED + 2)], -1)
    z = model.encoder(train)[0].t()  # [frames, dim]
    residual = z
    g = torch.Generator().manual_seed(SEED + 3)
    for layer in model.quantizer.vq.layers:
        cb = layer._codebook
        cb.embed.copy_(random_codebook(residual, bins, g))
        cb.inited.fill_(1.0)
        residual = residual - cb.decode(cb.encode(residual))
    signals = {"speech": speech_like(9000, sr, SEED + 4), "noise": noise(9000, SEED + 5)}
    hop = int(model.encoder.hop_length)
    lengths = [hop * 20, hop * 20 + 17, 5000, 9000]
    tensors = {f"input/{k}": v for k, v in signals.items()}
    for bw in bandwidths:
        model.set_target_bandwidth(bw)
        for name, wav in signals.items():
            for n in lengths:
                frames = model.encode(wav[..., :n])
                codes = frames[0][0]
                tensors[f"codes/{bw}/{name}/{n}"] = codes.long()
                if bw == bandwidths[-1]:
                    tensors[f"audio/{bw}/{name}/{n}"] = model.decode(frames)
    meta = {
        "family": "encodec_24khz", "package": "encodec", "version": version("encodec"),
        "sample_rate": sr, "hop_length": hop, "bandwidths": bandwidths, "lengths": lengths,
        "signals": list(signals), "config": {"n_filters": n_filters, "dimension": dimension, "n_q": n_q,
                                             "bins": bins, "ratios": ratios},
    }
    save("encodec_24khz", f"encodec_{'full' if FULL else 'tiny'}.th", lambda p: torch.save(model.state_dict(), p), tensors, meta)


# ------------------------------------------------------------------------------------------ DAC
@torch.no_grad()
def make_dac_one(sr: int, rates: list, family: str) -> None:
    import dac

    torch.manual_seed(SEED)
    n_codebooks = 4
    if FULL:  # the released configuration (conf/final/*.yml): widths 64 / 1536, 12 / 32 / 9 codebooks
        n_codebooks = {16000: 12, 24000: 32, 44100: 9}[sr]
        model = dac.DAC(encoder_rates=rates, decoder_rates=list(reversed(rates)), n_codebooks=n_codebooks,
                        sample_rate=sr).eval()
    else:
        model = dac.DAC(encoder_dim=4, encoder_rates=rates, decoder_dim=32, decoder_rates=list(reversed(rates)),
                        n_codebooks=n_codebooks, codebook_size=1024, codebook_dim=8, sample_rate=sr).eval()
    g = torch.Generator().manual_seed(SEED + 1)
    for mod in model.modules():  # Snake slopes off their all-ones init, so every alpha is exercised
        if isinstance(mod, dac.nn.layers.Snake1d):
            mod.alpha.copy_(0.5 + 1.5 * torch.rand(mod.alpha.shape, generator=g))
    hop = int(model.hop_length)
    n_full = hop * 24
    signals = {"speech": speech_like(n_full, sr, SEED + 4), "noise": noise(n_full, SEED + 5)}
    lengths = [hop * 12, hop * 12 + 37, hop * 24 - 5, n_full]
    tensors = {f"input/{k}": v for k, v in signals.items()}
    for name, wav in signals.items():
        for n in lengths:
            x = model.preprocess(wav[..., :n], sr)
            _, codes, _, _, _ = model.encode(x)
            tensors[f"codes/{name}/{n}"] = codes.long()
            z = model.quantizer.from_codes(codes)[0]
            tensors[f"audio/{name}/{n}"] = model.decode(z)
            k2 = 2  # a lower bitrate: the first two levels, as the reference's n_quantizers
            _, codes2, _, _, _ = model.encode(x, n_quantizers=k2)
            tensors[f"codes_k{k2}/{name}/{n}"] = codes2.long()
    meta = {
        "family": family, "package": "descript-audio-codec", "version": version("descript-audio-codec"),
        "sample_rate": sr, "hop_length": hop, "lengths": lengths, "signals": list(signals),
        "num_codebooks": n_codebooks, "config": {"encoder_dim": 4, "decoder_dim": 32, "rates": rates},
    }
    save(family, f"{family}_{'full' if FULL else 'tiny'}.pth", lambda p: model.save(str(p), package=False), tensors, meta)


def make_dac() -> None:
    make_dac_one(16000, [2, 4, 5, 8], "dac_16khz")
    make_dac_one(44100, [2, 4, 8, 8], "dac_44khz")


# ------------------------------------------------------------------------------------------ Mimi
@torch.no_grad()
def make_mimi() -> None:
    import copy

    from moshi.models import loaders
    from safetensors.torch import save_file

    torch.manual_seed(SEED)
    cfg = copy.deepcopy(loaders._mimi_config)
    dim, n_q, bins = 32, 8, 512
    if FULL:  # the released configuration: 512-dim, 8 layers, 32 codebooks of 2048
        dim, n_q, bins = 512, 32, 2048
    else:
        cfg["seanet"].update(n_filters=4, dimension=dim)
        cfg["transformer"].update(d_model=dim, num_layers=2, dim_feedforward=64, input_dimension=dim,
                                  output_dimensions=[dim])
        cfg["quantizer"].update(dimension=16, n_q=n_q, bins=bins, input_dimension=dim, output_dimension=dim)
    model = loaders.get_mimi(None, mimi_config=cfg, num_codebooks=n_q).eval()
    g = torch.Generator().manual_seed(SEED + 1)
    for name, p in model.named_parameters():  # layer scales off their 0.01 init, so the transformer matters
        if name.endswith("layer_scale_1.scale") or name.endswith("layer_scale_2.scale"):
            p.copy_(0.2 + 0.5 * torch.rand(p.shape, generator=g))
    sr = 24000
    train = torch.cat([noise(sr * 3, SEED + 2), speech_like(sr * 3, sr, SEED + 3)], -1)
    emb = model._encode_to_unquantized_latent(train)  # [1, dim, frames]
    for part in (model.quantizer.rvq_first, model.quantizer.rvq_rest):
        residual = part.input_proj(emb)[0].t()  # [frames, 16]
        for layer in part.vq.layers:
            cb = layer._codebook
            table = random_codebook(residual, bins, g)
            usage = 0.5 + 1.5 * torch.rand(bins, generator=g)
            cb.cluster_usage.copy_(usage)
            cb.embedding_sum.copy_(table * usage[:, None])
            cb._initialized.fill_(1.0)
            cb._embedding = None
            residual = residual - cb.decode(cb.encode(residual))
    frame = model.frame_size
    n_full = frame * 10
    signals = {"speech": speech_like(n_full, sr, SEED + 4), "noise": noise(n_full, SEED + 5)}
    lengths = [frame * 6, frame * 6 + 100, n_full - 7, n_full]
    tensors = {f"input/{k}": v for k, v in signals.items()}
    for k in (n_q, 8 if FULL else 4):
        model.set_num_codebooks(k)
        for name, wav in signals.items():
            for n in lengths:
                codes = model.encode(wav[..., :n])
                tensors[f"codes/{k}/{name}/{n}"] = codes.long()
                if k == n_q:
                    tensors[f"audio/{name}/{n}"] = model.decode(codes)
    model.set_num_codebooks(n_q)
    for name, wav in signals.items():  # the reference's own streaming mode, one 80 ms frame per call
        with model.streaming(1):
            codes = torch.cat([model.encode(wav[..., i : i + frame]) for i in range(0, n_full, frame)], -1)
        tensors[f"stream_codes/{name}"] = codes.long()
        with model.streaming(1):
            audio = torch.cat([model.decode(codes[..., i : i + 1]) for i in range(codes.shape[-1])], -1)
        tensors[f"stream_audio/{name}"] = audio
    meta = {
        "family": "mimi", "package": "moshi", "version": version("moshi"), "sample_rate": sr,
        "hop_length": frame, "lengths": lengths, "signals": list(signals), "num_codebooks": [n_q, 8 if FULL else 4],
        "stream_length": n_full,
        "config": {"dimension": dim, "n_filters": 4, "num_layers": 2, "dim_feedforward": 64, "codebook_dim": 16,
                   "bins": bins, "n_q": n_q},
    }
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save("mimi", f"mimi_{'full' if FULL else 'tiny'}.safetensors", lambda p: save_file(state, str(p)), tensors, meta)


FAMILIES = {"encodec": make_encodec, "dac": make_dac, "mimi": make_mimi}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("families", nargs="*", metavar="FAMILY", help=f"any of {', '.join(FAMILIES)} (default all)")
    ap.add_argument("--full", action="store_true", help="released configurations instead of the reduced ones")
    ap.add_argument("--out", default=None, help="output directory (default tests/imports/fixtures; "
                    "the full-size files are large: write them elsewhere)")
    args = ap.parse_args()
    global FULL, OUT
    unknown = sorted(set(args.families) - set(FAMILIES))
    if unknown:
        ap.error(f"unknown families {unknown}: choose from {', '.join(FAMILIES)}")
    FULL = bool(args.full)
    if args.out:
        OUT = Path(args.out)
    elif FULL:
        ap.error("--full needs --out (the full-size files are not fixtures to commit)")
    torch.set_num_threads(1)
    for fam in args.families or list(FAMILIES):
        FAMILIES[fam]()


if __name__ == "__main__":
    main()
