"""Tokenization throughput and peak memory on CPU: batch 1 vs batched, tiny and default-sized models.

Run from the repository root as a module (a script named tokenize.py would shadow the standard library's
``tokenize`` if run by path):

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m bench.tokenize [--files 24] [--threads 1]

Builds a folder of synthetic 16 kHz files (2-10 s), saves each model (random weights: speed does not
depend on weight values) as a model directory, and runs ``sonotok.tokenizer.tokenize`` in a fresh
subprocess per (model, batch size) so peak RSS (``ru_maxrss``) is measured alone. Prints a markdown table
and writes ``bench/results/tokenize.json``.

``--imported encodec_24khz,mimi --peers-python PY`` adds the released EnCodec 24 kHz and Mimi architectures
(random weights written in their release formats by the reference packages in ``PY``'s venv, imported
with ``sonotok import``), each next to its reference package encoding the same files one at a time.
"""

from __future__ import annotations

if __name__ == "tokenize":  # pragma: no cover
    # Imported as the standard library's `tokenize` because a script run by path (python bench/x.py) put
    # bench/ on sys.path: hand the importer the real stdlib module (the import system returns whatever
    # sys.modules holds once this body finishes), so linecache/inspect/tracebacks keep working.
    import os as _os
    import sys as _sys

    _here = _os.path.dirname(_os.path.abspath(__file__))
    _saved = list(_sys.path)
    _sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _here]
    del _sys.modules["tokenize"]
    try:
        import tokenize as _std
    finally:
        _sys.path[:] = _saved
    _sys.modules["tokenize"] = _std
    globals().update({k: v for k, v in vars(_std).items() if not k.startswith("__")})

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run by path: drop bench/ from sys.path so stdlib `tokenize` stays reachable
    sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "tokenize.json"

MODELS = {
    # the former tiny: SEANet 16 filters, latent 64, RVQ 8 x 1024 (4 kbps at 50 Hz)
    "tiny_seanet": ["experiment=tiny_seanet", "quantizer.kmeans_init=false"],
    # experiment=tiny as shipped: STFT + ConvNeXt, FSQ 8 x 1000 (3.99 kbps at 50 Hz)
    "tiny": ["experiment=tiny"],
    # the train.yaml defaults: SEANet 32 filters, dilations 1/3/9, latent 128, RVQ 8 x 1024
    "default": ["quantizer.kmeans_init=false"],
}


def build_corpus(root: Path, n: int, seed: int = 0) -> float:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    total = 0.0
    for i in range(n):
        sec = float(rng.uniform(2.0, 10.0))
        t = np.arange(int(sec * 16000)) / 16000
        x = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.05 * rng.standard_normal(t.size)
        (root / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        sf.write(str(root / f"d{i % 3}" / f"f{i:03d}.wav"), x.astype(np.float32), 16000)
        total += sec
    return total


def save_models(root: Path) -> dict:
    import torch
    from hydra.utils import instantiate

    from sonotok.model_io import save_model
    from sonotok.training.train import compose_config

    out = {}
    for name, overrides in MODELS.items():
        torch.manual_seed(0)
        cfg = compose_config(overrides)
        codec = instantiate(cfg.codec).eval()
        out[name] = {"dir": str(save_model(codec, root / name, cfg.codec)),
                     "params": int(sum(p.numel() for p in codec.parameters()))}
    return out


# released architectures (random weights) imported with `sonotok import`, against the reference package
# encoding the same files one by one in the peers' venv (bench/streaming.py writes the checkpoints)
IMPORTED = {"encodec_24khz": {"bandwidth": 6.0}, "mimi": {"num_codebooks": 8}}


def save_imported(root: Path, families, peers_python: str) -> dict:
    from sonotok.cli.import_ import import_checkpoint
    from sonotok.model_io import load_model

    out = {}
    root.mkdir(parents=True, exist_ok=True)
    for fam in families:
        ckpt = root / ("encodec_24khz.th" if fam.startswith("encodec") else f"{fam}.safetensors")
        cmd = [peers_python, "-P", str(REPO / "bench" / "streaming.py"), "--peer", f"checkpoint_{fam}",
               "--checkpoint-out", str(ckpt)]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=tempfile.gettempdir(),
                             env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        if res.returncode:
            raise RuntimeError(f"{fam}: writing the reference checkpoint failed: {res.stderr[-2000:]}")
        d = import_checkpoint(fam, ckpt, root / fam, **IMPORTED[fam])
        out[f"imported {fam}"] = {"dir": str(d), "checkpoint": str(ckpt), "family": fam,
                                  "params": int(sum(p.numel() for p in load_model(d).parameters()))}
    return out


def reference_worker(family: str, checkpoint: str, folder: str, threads: int) -> dict:
    """Run inside the peers' venv: the reference package encodes every file of ``folder`` one at a time
    (read, resample to the model's rate, encode), as a user of that package would tokenize a corpus."""
    import resource

    import soundfile as sf
    import torch
    import torchaudio.functional as AF

    torch.set_num_threads(threads)
    if family == "encodec_24khz":
        from encodec import EncodecModel

        model = EncodecModel.encodec_model_24khz(pretrained=False)
        model.load_state_dict(torch.load(checkpoint, weights_only=True))
        model.set_target_bandwidth(6.0)
        sr, encode = model.sample_rate, (lambda x: model.encode(x)[0][0])
    else:
        from moshi.models import loaders

        model = loaders.get_mimi(checkpoint, device="cpu", num_codebooks=8)
        sr, encode = int(model.sample_rate), model.encode
    model.eval()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    files = sorted(Path(folder).rglob("*.wav"))
    t0 = time.perf_counter()
    audio_s = 0.0
    with torch.inference_mode():
        for f in files:
            x, rate = sf.read(str(f), dtype="float32")
            audio_s += len(x) / rate
            wav = AF.resample(torch.from_numpy(x)[None, None], rate, sr)
            codes = encode(wav)
            assert codes.dim() == 3
    el = time.perf_counter() - t0
    return {"files": len(files), "audio_s": audio_s, "elapsed_s": el, "audio_hours_per_hour": audio_s / el,
            "files_per_s": len(files) / el, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_after_load_mib": rss0}


def worker(model_dir: str, folder: str, out: str, batch_size: int, threads: int) -> dict:
    import resource

    import torch

    torch.set_num_threads(threads)
    import sonotok
    from sonotok.tokenizer import tokenize

    codec = sonotok.load(model_dir)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    s = tokenize(codec, [folder], out, batch_size=batch_size, progress=False)
    el = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert s.failed == 0 and s.written > 0, s
    return {"files": s.written, "audio_s": s.audio_seconds, "elapsed_s": el,
            "audio_hours_per_hour": s.audio_seconds / el, "files_per_s": s.written / el,
            "peak_rss_mib": rss1, "rss_after_load_mib": rss0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--models", default="tiny,default")
    ap.add_argument("--imported", default="",
                    help=f"comma-separated released architectures to import and compare with their reference "
                    f"package on the same files ({', '.join(IMPORTED)}); needs --peers-python")
    ap.add_argument("--peers-python", default=str(REPO / ".venv-peers" / "bin" / "python"),
                    help="a Python with the reference packages (see bench/streaming.py)")
    ap.add_argument("--out", default=str(RESULTS), help=f"results JSON (default {RESULTS.relative_to(REPO)})")
    ap.add_argument("--worker", nargs=4, metavar=("MODEL", "FOLDER", "OUT", "BATCH"), help=argparse.SUPPRESS)
    ap.add_argument("--reference-worker", nargs=3, metavar=("FAMILY", "CKPT", "FOLDER"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.reference_worker:
        print(json.dumps(reference_worker(*args.reference_worker, args.threads)))
        return 0
    if args.worker:
        m, f, o, b = args.worker
        print(json.dumps(worker(m, f, o, int(b), args.threads)))
        return 0
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        audio_s = build_corpus(tmp / "audio", args.files)
        models = save_models(tmp / "models")
        imported = [f for f in args.imported.split(",") if f]
        models.update(save_imported(tmp / "imported", imported, args.peers_python))
        names = [n for n in args.models.split(",") if n] + [f"imported {f}" for f in imported]
        for name in names:
            for bs in map(int, args.batch_sizes.split(",")):
                cmd = [sys.executable, "-m", "bench.tokenize", "--threads", str(args.threads), "--worker",
                       models[name]["dir"], str(tmp / "audio"), str(tmp / f"out_{name}_{bs}"), str(bs)]
                res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
                if res.returncode:
                    print(res.stderr[-3000:], file=sys.stderr)
                    return 1
                r = json.loads(res.stdout.strip().splitlines()[-1])
                rows.append({"model": name, "params": models[name]["params"], "batch_size": bs, **r})
                print(f"{name} batch {bs}: {r['audio_hours_per_hour']:.0f}x real time", file=sys.stderr)
            if name.startswith("imported "):  # the reference package on the same files, same thread count
                fam = models[name]["family"]
                cmd = [args.peers_python, "-P", str(Path(__file__).resolve()), "--threads", str(args.threads),
                       "--reference-worker", fam, models[name]["checkpoint"], str(tmp / "audio")]
                res = subprocess.run(cmd, cwd=tempfile.gettempdir(), capture_output=True, text=True,
                                     env={k: v for k, v in env.items() if k != "PYTHONPATH"})
                if res.returncode:
                    print(res.stderr[-3000:], file=sys.stderr)
                    return 1
                r = json.loads(res.stdout.strip().splitlines()[-1])
                rows.append({"model": f"reference {fam} (package, file by file)", "params": models[name]["params"],
                             "batch_size": 1, **r})
                print(f"reference {fam}: {r['audio_hours_per_hour']:.0f}x real time", file=sys.stderr)
    lines = ["| model | params | batch | files | audio (min) | wall (s) | audio-h / h | files/s | peak RSS (MiB) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params'] / 1e3:.0f}k | {r['batch_size']} | {r['files']} | "
                     f"{r['audio_s'] / 60:.1f} | {r['elapsed_s']:.2f} | {r['audio_hours_per_hour']:.0f} | "
                     f"{r['files_per_s']:.1f} | {r['peak_rss_mib']:.0f} |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "rows": rows, "table": table, "threads": args.threads, "corpus_audio_s": audio_s,
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, shared with other jobs (OMP_WAIT_POLICY=PASSIVE)",
        "torch": __import__("torch").__version__, "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": "OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m bench.tokenize " + " ".join(sys.argv[1:] if argv is None else argv),
        "load_average_1_5_15_min_at_end": os.getloadavg(),
    }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
