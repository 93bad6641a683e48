"""Separation benchmark: shipped separators vs ideal-mask oracles on the fixed held-out mixtures, streaming
compute of the causal one from its TorchScript artifact, long-input (windowed) separation, a mixture of real
recordings from outside the training data, and the torchaudio ConvTasNet comparison.

    # the shipped models (non-causal `default`, causal `causal`) on the held-out test mixtures + oracles
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/separation.py shipped --corpus data/corpus-full
    # ours vs torchaudio.models.ConvTasNet, same architecture, same batches, same steps (interleaved)
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/separation.py compare --minutes 10 --corpus data/corpus-full
    # the tiny preset after a fixed CPU training budget (the first benchmark of this family)
    OMP_WAIT_POLICY=PASSIVE nice -n 5 .venv/bin/python bench/separation.py tiny --minutes 10
    # issue 16: what the training mixtures look like, per recipe; recipes compared at equal steps
    .venv/bin/python bench/separation.py data-stats --recipes shipped preset
    .venv/bin/python bench/separation.py recipe-ab --recipes shipped preset --steps 800
    # train the shipped small 8 kHz recipe (fixed mixtures) for N minutes on 2 threads, then evaluate it
    .venv/bin/python bench/separation.py retrain --minutes 90 --threads 2 --with-shipped

``shipped`` writes ``bench/results/separation_shipped.json``, ``compare`` writes
``bench/results/separation_torchaudio.json``, ``tiny`` writes ``bench/results/separation.json``; each
prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

# bench/ holds scripts named like standard modules (tokenize.py): keep it off the import path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _machine(threads: int, load_start) -> dict:
    return {"cpu_threads": threads, "load_average_start": load_start, "load_average_end": os.getloadavg(),
            "platform": platform.platform(), "torch": torch.__version__}


def streaming_rtf(model, seconds: float, chunk_ms: float = 10.0) -> dict:
    """Stream random audio through the eager model and its TorchScript export in ``chunk_ms`` chunks."""
    model = model.eval()
    sr = model.sample_rate
    chunk = int(sr * chunk_ms / 1000)
    x = torch.randn(1, 1, int(seconds * sr)) * 0.1
    with torch.no_grad():
        state = model.init_state(1)
        t0 = time.perf_counter()
        for i in range(0, x.shape[-1], chunk):
            _, state = model.step(x[..., i : i + chunk], state)
        stream_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        model(x)
        off_s = time.perf_counter() - t0
        from sonotok.export.separator import StreamingSeparator

        scripted = torch.jit.script(StreamingSeparator(model))
        script = _stream_artifact(scripted, x, chunk)
    return {"seconds": seconds, "chunk_ms": chunk_ms, "stream_rtf": stream_s / seconds,
            "torchscript_stream_rtf": script["seconds"] / seconds,
            "ms_per_chunk": 1000 * stream_s / (x.shape[-1] / chunk), "offline_rtf": off_s / seconds,
            "latency_ms": model.latency_ms, "num_parameters": int(sum(p.numel() for p in model.parameters()))}


def _stream_artifact(streaming, x: torch.Tensor, chunk: int) -> dict:
    """Per-chunk compute of a loaded streaming artifact (``forward(chunk, state)``, ``init_state``)."""
    with torch.no_grad():
        state = streaming.init_state(1)
        for i in range(0, 10 * chunk, chunk):  # warm-up (TorchScript profiling runs)
            _, state = streaming(x[..., i : i + chunk], state)
        state = streaming.init_state(1)
        times = []
        for i in range(0, x.shape[-1] - chunk + 1, chunk):
            t0 = time.perf_counter()
            _, state = streaming(x[..., i : i + chunk], state)
            times.append(time.perf_counter() - t0)
    times.sort()
    n = len(times)
    return {"chunks": n, "seconds": sum(times), "ms_per_chunk_mean": 1000 * sum(times) / n,
            "ms_per_chunk_median": 1000 * times[n // 2], "ms_per_chunk_p95": 1000 * times[int(0.95 * (n - 1))]}


def _peak_rss_mb(code: str) -> float:
    """Peak resident memory (MB) of a fresh Python process running ``code`` (after imports)."""
    import subprocess

    prog = ("import resource, sys, torch; torch.set_num_threads(1); sys.path.insert(0, %r)\n" % str(ROOT) + code
            + "\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _long_mixture(corpus: Path, sr: int, seconds: float, seed: int = 7) -> dict:
    """A ``seconds``-long mixture of two held-out speakers (fixed test recipe, one long item)."""
    from sonotok.data.mixtures import fixed_test_set

    return fixed_test_set(corpus / "test.jsonl", 1, 2, sr, seconds, seed=seed)[0]


def long_input(model, name: str, corpus: Path, seconds: float = 60.0, chunk_seconds: float = 10.0) -> dict:
    """Windowed vs whole separation of a long held-out mixture: both scored, their difference, peak memory."""
    from sonotok.evaluation.separation import separation_scores
    from sonotok.models.separate import separate_chunked

    item = _long_mixture(corpus, model.sample_rate, seconds)
    mix, src = item["mix"][None], item["sources"][None]
    with torch.no_grad():
        t0 = time.perf_counter()
        whole = model(mix)
        t_whole = time.perf_counter() - t0
        t0 = time.perf_counter()
        chunked = separate_chunked(model, mix, int(chunk_seconds * model.sample_rate))
        t_chunk = time.perf_counter() - t0
    sw, sc = separation_scores(whole, src, mix), separation_scores(chunked, src, mix)
    # chunked vs whole: SNR of the difference after the best source order
    d = min(float(((chunked[:, list(p)] - whole) ** 2).sum()) for p in ([0, 1], [1, 0]))
    diff_snr = 10 * torch.log10((whole ** 2).sum() / max(d, 1e-12)).item()
    code = (f"import sonotok\nfrom sonotok.models.separate import separate_chunked\n"
            f"m = sonotok.load_separator({name!r}).eval()\n"
            f"x = torch.randn(1, 1, {int(seconds * model.sample_rate)}) * 0.1\n"
            "with torch.no_grad():\n    y = {}\n")
    rss = {"imports_and_model": _peak_rss_mb(code.replace("{}", "None"))}
    for secs in (seconds, 10 * seconds):  # whole grows with the input, windowed stays at one window's worth
        c = code.replace(str(int(seconds * model.sample_rate)), str(int(secs * model.sample_rate)))
        rss[f"whole_{secs:.0f}s"] = _peak_rss_mb(c.replace("{}", "m(x)"))
        rss[f"chunked_{secs:.0f}s"] = _peak_rss_mb(
            c.replace("{}", f"separate_chunked(m, x, {int(chunk_seconds * model.sample_rate)})"))
    return {"seconds": seconds, "chunk_seconds": chunk_seconds, "whole": {k: float(v.mean()) for k, v in sw.items()},
            "chunked": {k: float(v.mean()) for k, v in sc.items()}, "chunked_vs_whole_snr_db": diff_snr,
            "time_whole_s": t_whole, "time_chunked_s": t_chunk, "peak_rss_mb": rss}


def real_mixture(model, corpus: Path, out_dir: Path, seconds: float = 20.0) -> dict:
    """A mixture of two real recordings from speakers that are only in the test split (never trained on):
    their utterances back to back at their native 16 kHz rate, the second 3 dB quieter, summed, and
    separated by ``sonotok separate`` (any-rate path: resampled to the model's rate and back)."""
    import numpy as np

    from sonotok.data.audio import load_audio, save_audio
    from sonotok.data.sources import read_jsonl
    from sonotok.evaluation.separation import separation_scores
    from sonotok.models.separate import separate_file

    rows = read_jsonl(corpus / "test.jsonl")
    train_spk = {r["speaker"] for r in read_jsonl(corpus / "train.jsonl")}
    picks = {}
    for spk in ("fillets_nl_big", "tuxpaint_bg"):
        assert spk not in train_spk
        files = [r for r in rows if r["speaker"] == spk and r.get("bandwidth") == "wideband"]
        picks[spk] = files
    sr_in = 16000
    tracks = []
    for files in picks.values():
        parts, n = [], 0
        for r in files:
            w = load_audio(corpus / r["path"], sr_in)[0]
            parts += [w, torch.zeros(int(0.15 * sr_in))]
            n += w.shape[-1] + int(0.15 * sr_in)
            if n >= seconds * sr_in:
                break
        t = torch.cat(parts)[: int(seconds * sr_in)]
        tracks.append(t / t.pow(2).mean().sqrt().clamp_min(1e-8) * 0.05)
    tracks[1] = tracks[1] * 10 ** (-3 / 20)
    src = torch.stack(tracks)
    mix = src.sum(0, keepdim=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_audio(out_dir / "real_mix.wav", mix, sr_in)
    for i in range(2):
        save_audio(out_dir / f"real_ref_s{i + 1}.wav", src[i : i + 1], sr_in)
    written = separate_file(model, out_dir / "real_mix.wav", out_dir / "separated")
    est = torch.stack([load_audio(p, sr_in)[0] for p in written])[None]
    sc = separation_scores(est, src[None], mix[None])
    return {"speakers": list(picks), "seconds": seconds, "sample_rate": sr_in, "relative_db": -3.0,
            "files": [str(out_dir / "real_mix.wav")] + [str(p) for p in written],
            **{k: float(np.mean(v.numpy())) for k, v in sc.items()}}


def single_speaker(model, test, n: int = 20) -> dict:
    """One speaker alone in: SI-SNR of the closer output to it, and the other output's level (dB re. input)."""
    from torchmetrics.functional.audio import scale_invariant_signal_noise_ratio as si_snr

    best, other = [], []
    with torch.no_grad():
        for i in range(min(n, len(test))):
            x = test[i]["sources"][0:1][None]  # [1, 1, T]: the first speaker of a test mixture, alone
            y = model(x)[0]
            s = torch.stack([si_snr(y[k], x[0, 0]) for k in range(y.shape[0])])
            k = int(s.argmax())
            best.append(float(s[k]))
            other.append(float(10 * torch.log10(y[1 - k].pow(2).sum() / x.pow(2).sum().clamp_min(1e-12))))
    return {"num": len(best), "sisnr_closer_output_db": sum(best) / len(best),
            "other_output_level_db": sum(other) / len(other)}


def cmd_shipped(args) -> int:
    import sonotok
    from sonotok.data.mixtures import fixed_test_set
    from sonotok.evaluation.separation import ORACLES, evaluate_separation
    from sonotok.export.separator import export_separator
    from sonotok.models.separation import macs_per_second

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    corpus = Path(args.corpus)
    models = {name: sonotok.load_separator(name) for name in args.models}
    sr = next(iter(models.values())).sample_rate
    test = fixed_test_set(corpus / "test.jsonl", args.num_mixtures, 2, sr, args.seconds, seed=1234)
    results = {"oracles": evaluate_separation(None, test, oracles=list(ORACLES), sample_rate=sr)}
    for name, m in models.items():
        results[name] = evaluate_separation(m, test, oracles=[])
        results[name]["macs_per_second"] = macs_per_second(m)
        results[name]["single_speaker"] = single_speaker(m, test)
        print(f"{name}: SI-SNRi {results[name]['model']['sisnri']:.2f} dB", flush=True)
    extras: dict = {}
    for name, m in models.items():
        if m.causal:
            art = Path(args.artifacts) / Path(name).name
            info = export_separator(m, str(art))
            streaming = torch.jit.load(str(art / "separator_streaming.pt"))
            x = torch.randn(1, 1, int(args.stream_seconds * m.sample_rate)) * 0.1
            extras[f"{name}_streaming"] = {"artifact": str(art / "separator_streaming.pt"), "export": info,
                                           **{f"{ms}ms": _stream_artifact(streaming, x, int(m.sample_rate * ms / 1000))
                                              for ms in (10, 20, 40)}}
    if not args.skip_long:
        extras["long_input"] = long_input(models[args.models[0]], args.models[0], corpus, args.long_seconds)
    if not args.skip_real:
        extras["real_mixture"] = {name: real_mixture(m, corpus, Path(args.real_dir) / name) for name, m in models.items()}
    out = {"command": ".venv/bin/python bench/separation.py " + " ".join(sys.argv[1:]),
           "machine": _machine(args.threads, load_start),
           "test": {"manifest": str(corpus / "test.jsonl"), "num_mixtures": args.num_mixtures,
                    "seconds_each": args.seconds, "seed": 1234,
                    "speakers": sorted({r.get("speaker") for r in _rows(corpus / "test.jsonl")})},
           "models": {name: dict(getattr(m, "meta", {})) for name, m in models.items()},
           "results": results, **extras}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(format_shipped(out))
    print(f"\nwritten {args.out}")
    return 0


def format_shipped(out: dict) -> str:
    res = out["results"]
    o = res["oracles"]
    lines = [f"{o['num_mixtures']} fixed mixtures x {out['test']['seconds_each']} s of held-out speakers "
             f"(mixture SI-SNR {o['mixture']['sisnr']:.2f} dB)", "",
             "| system | SI-SNRi (dB) | SDRi (dB) | params | MAC/s | RTF (x real time) |", "|---|---:|---:|---:|---:|---:|"]
    for name in out["models"]:
        r = res[name]["model"]
        lines.append(f"| `{name}` ({out['models'][name].get('name', '')}) | {r['sisnri']:.2f} | {r['sdri']:.2f} | "
                     f"{r['num_parameters']:,} | {res[name]['macs_per_second'] / 1e6:.0f} M | {r['real_time_factor']:.0f} |")
    for k in ("ibm", "irm", "wiener"):
        if k in o:
            lines.append(f"| {k} oracle | {o[k]['sisnri']:.2f} | {o[k]['sdri']:.2f} | | | |")
    for name in out["models"]:
        ss = res[name].get("single_speaker")
        if ss:
            lines.append(f"\none speaker alone into `{name}` ({ss['num']} test tracks): closer output SI-SNR "
                         f"{ss['sisnr_closer_output_db']:.1f} dB, other output at {ss['other_output_level_db']:.1f} dB")
    for k, v in out.items():
        if k.endswith("_streaming"):
            lines += ["", f"streaming `{k[:-10]}` from {v['artifact']} (TorchScript, per-chunk compute):", "",
                      "| chunk | mean ms | median ms | p95 ms | RTF |", "|---:|---:|---:|---:|---:|"]
            for ms in ("10ms", "20ms", "40ms"):
                s = v[ms]
                lines.append(f"| {ms} | {s['ms_per_chunk_mean']:.2f} | {s['ms_per_chunk_median']:.2f} | "
                             f"{s['ms_per_chunk_p95']:.2f} | {s['ms_per_chunk_mean'] / float(ms[:-2]):.3f} |")
    if "long_input" in out:
        li = out["long_input"]
        lines += ["", f"{li['seconds']:.0f} s held-out mixture: whole SI-SNRi {li['whole']['sisnri']:.2f} dB, "
                  f"windowed ({li['chunk_seconds']:.0f} s windows) {li['chunked']['sisnri']:.2f} dB; windowed vs whole "
                  f"difference {li['chunked_vs_whole_snr_db']:.1f} dB SNR; peak RSS (MB) "
                  + ", ".join(f"{k.replace('_', ' ')} {v:.0f}" for k, v in li["peak_rss_mb"].items())]
    if "real_mixture" in out:
        for name, r in out["real_mixture"].items():
            lines.append(f"\nreal recordings ({' + '.join(r['speakers'])}, {r['seconds']:.0f} s at {r['sample_rate']} Hz, "
                         f"test-only speakers), `{name}`: SI-SNRi {r['sisnri']:.2f} dB, SDRi {r['sdri']:.2f} dB")
    return "\n".join(lines)


def cmd_compare(args) -> int:
    """Ours and torchaudio's ConvTasNet with the same hyper-parameters, trained in one process on the same
    batches (each batch: one Adam step of each, lr 1e-3, clip 5, PIT SI-SNR), for the same number of steps,
    until ``--minutes`` of wall clock have passed; then both on the same fixed held-out mixtures."""
    import torchaudio
    from hydra.utils import instantiate

    from sonotok.data.mixtures import MixtureDataset, collate_mixtures, fixed_test_set
    from sonotok.evaluation.separation import evaluate_separation
    from sonotok.losses.separation import PITSISNRLoss
    from sonotok.models.separation import num_parameters
    from sonotok.training.train import compose_config

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    corpus = Path(args.corpus)
    cfg = compose_config([f"separation={args.preset}"], config_name="separate")
    c = cfg.separator
    torch.manual_seed(args.seed)
    ours = instantiate(c)
    torch.manual_seed(args.seed)
    theirs = torchaudio.models.ConvTasNet(
        num_sources=2, enc_kernel_size=c.encoder.kernel_size, enc_num_feats=c.encoder.num_filters,
        msk_kernel_size=c.masker.kernel_size, msk_num_feats=c.masker.bottleneck,
        msk_num_hidden_feats=c.masker.hidden, msk_num_layers=c.masker.num_layers,
        msk_num_stacks=c.masker.num_stacks, msk_activate="sigmoid")
    assert num_parameters(ours) == num_parameters(theirs)
    systems = {"sonotok": ours, "torchaudio": theirs}
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in systems.items()}
    loss_fn = PITSISNRLoss()
    ds = MixtureDataset(corpus / "train.jsonl", 2, cfg.sample_rate, cfg.data.segment_seconds, length=10**9, seed=args.seed)
    bs = int(cfg.data.batch_size)
    spent = {k: 0.0 for k in systems}
    curve = []
    step, t_start = 0, time.perf_counter()
    while time.perf_counter() - t_start < 60 * args.minutes and (args.max_steps < 0 or step < args.max_steps):
        batch = collate_mixtures([ds[step * bs + i] for i in range(bs)])
        row = {"step": step + 1}
        for k, m in systems.items():
            m.train()
            t0 = time.perf_counter()
            loss = sum(loss_fn(m(batch["mix"]), batch["sources"]).values())
            opts[k].zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 5.0)
            opts[k].step()
            spent[k] += time.perf_counter() - t0
            row[k] = float(loss)
        curve.append(row)
        step += 1
        if step % 50 == 0:
            print(f"step {step}: " + ", ".join(f"{k} loss {row[k]:.2f}" for k in systems), flush=True)
    test = fixed_test_set(corpus / "test.jsonl", args.num_mixtures, 2, cfg.sample_rate, 4.0, seed=1234)
    res = {k: evaluate_separation(m, test, oracles=[])["model"] for k, m in systems.items()}
    out = {"command": ".venv/bin/python bench/separation.py " + " ".join(sys.argv[1:]),
           "machine": _machine(args.threads, load_start), "preset": args.preset, "steps": step,
           "batch": f"{bs} x {cfg.data.segment_seconds} s", "train_compute_minutes": {k: v / 60 for k, v in spent.items()},
           "num_parameters": num_parameters(ours), "num_mixtures": args.num_mixtures, "results": res,
           "curve_every_10": curve[::10], "wall_minutes": (time.perf_counter() - t_start) / 60}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\n{args.preset}, {step} steps each (batch {out['batch']}), same batches, {out['wall_minutes']:.1f} min wall clock in one "
          f"process on {args.threads} thread(s); {args.num_mixtures} held-out mixtures\n")
    print("| implementation | SI-SNRi (dB) | SDRi (dB) | training compute (min) |\n|---|---:|---:|---:|")
    for k, r in res.items():
        print(f"| {k} | {r['sisnri']:.2f} | {r['sdri']:.2f} | {spent[k] / 60:.1f} |")
    print(f"\nwritten {args.out}")
    return 0


def cmd_tiny(args) -> int:
    from hydra.utils import instantiate

    import sonotok
    from sonotok.data.mixtures import fixed_test_set
    from sonotok.evaluation.separation import evaluate_separation, format_separation_table
    from sonotok.training.train import compose_config, run_training

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    corpus = Path(args.corpus)
    summary = {}
    if not args.skip_train:
        mins = args.minutes
        hh, mm, ss = int(mins // 60), int(mins % 60), int(round((mins * 60) % 60))
        cfg = compose_config([
            "separation=convtasnet_tiny", f"out_dir={args.run_dir}", "resume=null", f"threads={args.threads}",
            f"trainer.max_time=00:{hh:02d}:{mm:02d}:{ss:02d}", f"trainer.max_steps={args.max_steps}",
            f"data.train={corpus}/train.jsonl", f"data.valid={corpus}/valid.jsonl", "trainer.enable_progress_bar=false",
            "trainer.val_check_interval=500",
        ], config_name="separate")
        summary = run_training(cfg)
    model = sonotok.load(Path(args.run_dir) / "model")
    meta = getattr(model, "meta", {})
    test = fixed_test_set(corpus / "test.jsonl", args.num_mixtures, model.num_sources, model.sample_rate, 4.0, seed=1234)
    res = evaluate_separation(model, test)
    rtf = {}
    for preset, secs in (("convtasnet_tiny", 10.0), ("convtasnet_causal_8k", 1.0)):
        c = compose_config([f"separation={preset}", "separator.masker.norm=cln", "separator.masker.causal=true"],
                           config_name="separate")
        rtf[f"{preset}_causal"] = streaming_rtf(instantiate(c.separator), secs)
    out = {
        "command": "OMP_WAIT_POLICY=PASSIVE nice -n 5 .venv/bin/python bench/separation.py " + " ".join(sys.argv[1:]),
        "machine": _machine(args.threads, load_start),
        "training": {"preset": "convtasnet_tiny", "steps": meta.get("train_steps", summary.get("steps")),
                     "minutes": meta.get("train_minutes_last_run", round(summary.get("minutes_this_run", 0), 2)),
                     "budget_minutes": args.minutes, "budget_steps": args.max_steps,
                     "train_speakers": sorted({r.get("speaker") for r in _rows(corpus / "train.jsonl")}),
                     "num_parameters": int(sum(p.numel() for p in model.parameters()))},
        "test": {"manifest": str(corpus / "test.jsonl"), "num_mixtures": args.num_mixtures, "seconds_each": 4.0,
                 "seed": 1234, "speakers": sorted({r.get("speaker") for r in _rows(corpus / "test.jsonl")})},
        "results": res,
        "streaming": rtf,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    t = out["training"]
    print(f"\n## Separation benchmark (tiny Conv-TasNet, {t['steps']} steps in {t['minutes']} min on {args.threads} CPU threads)\n")
    print(format_separation_table(res))
    print("\n| streaming (causal, 10 ms chunks) | params | latency (ms) | stream RTF eager | TorchScript | ms / chunk "
          "| offline RTF |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for k, r in rtf.items():
        print(f"| {k} | {r['num_parameters']:,} | {r['latency_ms']:.1f} | {r['stream_rtf']:.3f} | "
              f"{r['torchscript_stream_rtf']:.3f} | {r['ms_per_chunk']:.2f} | {r['offline_rtf']:.4f} |")
    print(f"\nwritten {args.out}")
    return 0


def _curve(run: Path) -> dict:
    """Validation SI-SNRi and smoothed training SI-SNR per step / minute from a run's CSV log."""
    import csv

    val, train = [], []
    minutes_at = {}
    with open(run / "csv" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            step = int(row["step"]) if row.get("step") else None
            if row.get("train/minutes"):
                minutes_at[step] = float(row["train/minutes"])
            if row.get("val/sisnri"):
                val.append((step + 1, float(row["val/sisnri"])))
            if row.get("train/sep/sisnr"):
                train.append((step, -float(row["train/sep/sisnr"])))
    steps = sorted(minutes_at)

    def minute(step):  # the logged wall-clock minute of the nearest logged step
        import bisect

        i = min(bisect.bisect_left(steps, step), len(steps) - 1)
        return minutes_at[steps[i]] if steps else None

    return {"val": [(st, minute(st), v) for st, v in val], "train": [(st, minute(st), v) for st, v in train]}


def cmd_card(args) -> int:
    """Copy a trained separator into the package with its model card (meta.json) and learning-curve figure."""
    import shutil

    import sonotok
    from sonotok.data.sources import read_jsonl
    from sonotok.models.separation import context_samples, macs_per_second, receptive_field_ms

    runs = [Path(r) for r in args.runs]
    model_dir = runs[0] / "model"
    m = sonotok.load_separator(model_dir)
    curves = {str(r): _curve(r) for r in runs}
    fig = Path(args.figure)
    fig.parent.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r, c in curves.items():
        label = Path(r).name
        tr = c["train"]
        k = 25
        sm = [sum(v for _, _, v in tr[max(0, i - k) : i + 1]) / len(tr[max(0, i - k) : i + 1]) for i in range(len(tr))]
        axes[0].plot([st for st, _, _ in tr], sm, label=f"{label}: train SI-SNR (dB, mean of 25 logs)", alpha=0.6)
        axes[0].plot([st for st, _, _ in c["val"]], [v for _, _, v in c["val"]], "o-", label=f"{label}: valid SI-SNRi (dB)")
        axes[1].plot([mi for _, mi, _ in c["val"]], [v for _, _, v in c["val"]], "o-", label=f"{label}: valid SI-SNRi")
    axes[0].set_xlabel("optimizer step (batch 4 x 2 s)")
    axes[1].set_xlabel("training minutes (wall clock, 2 shared CPU cores)")
    for a in axes:
        a.grid(alpha=0.3)
        a.set_ylabel("dB")
        a.legend(fontsize=7)
    f.suptitle("Conv-TasNet (sonotok separator-8k) learning curves, held-out valid speakers")
    f.tight_layout()
    f.savefig(fig, dpi=110)
    train_rows = read_jsonl(Path(args.corpus) / "train.jsonl")
    meta = json.loads((model_dir / "meta.json").read_text())
    last_val = curves[str(runs[0])]["val"][-1] if curves[str(runs[0])]["val"] else None
    meta.update({
        "task": "separation",
        "macs_per_second": macs_per_second(m),
        "receptive_field_ms": receptive_field_ms(m),
        "context_samples": context_samples(m),
        "training": {
            "preset": args.preset,
            "command": args.command,
            "steps": meta.get("train_steps"),
            "minutes": args.minutes,
            "hardware": args.hardware,
            "data": (f"{Path(args.corpus) / 'train.jsonl'}: {len({r['speaker'] for r in train_rows})} speakers, "
                     f"{sum(r['duration'] for r in train_rows) / 3600:.2f} h, "
                     f"{len({r.get('language') for r in train_rows})} languages (sonotok corpus build); 2-speaker "
                     "mixtures of different speakers made on the fly (speaker tracks filling the segment, second "
                     "speaker -5..5 dB), 8 kHz, no noise / reverb augmentation"),
            "valid": "valid.jsonl speakers (held-out languages), 32 fixed 4 s mixtures",
            "last_valid_sisnri_db": last_val[2] if last_val else None,
            "init_from": args.init_from,
        },
        "figures": {"learning_curve": args.figure_rel},
    })
    if args.results and Path(args.results).is_file():
        res = json.loads(Path(args.results).read_text())
        key = args.key
        if key in res.get("results", {}):
            r = res["results"][key]["model"]
            meta["evaluation"] = {
                "data": f"{res['test']['manifest']}: {res['test']['num_mixtures']} fixed mixtures x "
                        f"{res['test']['seconds_each']} s (seed {res['test']['seed']}) of held-out speakers",
                "command": res["command"], "sisnri_db": r["sisnri"], "sdri_db": r["sdri"],
                "oracle_irm_sisnri_db": res["results"]["oracles"]["irm"]["sisnri"],
                "oracle_ibm_sisnri_db": res["results"]["oracles"]["ibm"]["sisnri"],
                "oracle_wiener_sisnri_db": res["results"]["oracles"]["wiener"]["sisnri"],
                "real_time_factor_offline": r["real_time_factor"],
            }
            if key in res.get("real_mixture", {}):
                rm = res["real_mixture"][key]
                meta["evaluation"]["real_recordings"] = {k: rm[k] for k in ("speakers", "seconds", "sisnri", "sdri")}
            if f"{key}_streaming" in res:
                st = res[f"{key}_streaming"]
                meta["evaluation"]["streaming_ms_per_chunk"] = {k: st[k]["ms_per_chunk_mean"] for k in ("10ms", "20ms", "40ms")}
    dst = Path(args.ship)
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for name in ("config.yaml", "model.safetensors"):
        shutil.copy2(model_dir / name, dst / name)
    (dst / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2))
    return 0


# --- issue 16: the training-mixture recipe -----------------------------------------------------------------

# Recipes compared by `data-stats` and `recipe-ab`: MixtureDataset keyword arguments (the shipped run's recipe
# is `shipped`; `fixed` is what conf/separation/convtasnet_small_8k.yaml trains on now).
RECIPES = {
    "shipped": {},
    "sqrt": {"speaker_weighting": "sqrt"},
    "min_speaker_300s": {"min_speaker_seconds": 300.0},
    "trim_overlap": {"trim_db": 30.0, "min_overlap": 0.5},
    "balanced_dense": {"speaker_weighting": "sqrt", "trim_db": 30.0, "min_overlap": 0.5},
    "perturb": {"speed_range": (0.9, 1.1), "eq_db": 6.0},
}
RECIPE_KEYS = ("speaker_weighting", "min_speaker_seconds", "trim_db", "min_overlap", "max_redraws", "speed_range",
               "eq_db")


def recipe(name: str, preset: str = "convtasnet_small_8k") -> dict:
    """The MixtureDataset keyword arguments of a named recipe; ``preset``: the training-mixture recipe the
    separation preset trains on now (read from its config, so this bench follows conf/separation/)."""
    if name != "preset":
        return dict(RECIPES[name])
    from omegaconf import OmegaConf

    from sonotok.training.train import compose_config

    d = OmegaConf.to_container(compose_config([f"separation={preset}"], config_name="separate").data, resolve=True)
    return {k: d[k] for k in RECIPE_KEYS if k in d}


def mixture_stats(ds, n: int, epoch: int = 0) -> dict:
    """What the model is fed: per-source activity (20 ms frames within 30 dB of the source's loudest), how
    much of the segment has every source active, active-speech level ratio, padding, speaker shares."""
    import numpy as np

    from sonotok.data.mixtures import activity

    sr, frame = ds.sample_rate, ds.sample_rate // 50
    act, both, ratio, lvl, zeros, silent, pieces, small = [], [], [], [], [], [], [], []
    for i in range(n):
        rec = ds.describe(i, epoch)
        item = ds[(i, epoch)]
        s = item["sources"]
        a = activity(s, sr)
        fa = a.float().mean(1)
        act += fa.tolist()
        both.append(float(a.all(0).float().mean()))
        ratio.append(float(a.all(0).float().sum() / a.any(0).float().sum().clamp(min=1)))
        levels = []
        for k in range(s.shape[0]):
            m = a[k].repeat_interleave(frame)
            x = s[k][: m.numel()][m]
            levels.append(10 * np.log10(float(x.pow(2).mean()) + 1e-12) if x.numel() else -120.0)
        lvl.append(levels[1] - levels[0])
        zeros.append(float((s == 0).float().mean()))
        silent.append(bool(fa.min() < 0.2))
        pieces += [len(src["pieces"]) for src in rec["sources"]]
        small.append(any(ds.speaker_seconds.get(sp, 0.0) < 300 for sp in rec["speakers"]))
    pct = lambda v, q=(5, 25, 50, 75, 95): [round(float(x), 2) for x in np.percentile(v, q)]  # noqa: E731
    return {"num_mixtures": n, "segment_seconds": ds.segment_seconds,
            "source_active_fraction_pct5_25_50_75_95": pct(act),
            "mixtures_with_a_source_active_under_20pct": float(np.mean(silent)),
            "all_sources_active_fraction_of_segment_mean": float(np.mean(both)),
            "mixtures_with_all_active_under_50pct": float(np.mean(np.array(both) < 0.5)),
            "overlap_ratio_mean": float(np.mean(ratio)),
            "active_level_ratio_db_pct5_25_50_75_95": pct(lvl, (5, 25, 50, 75, 95)),
            "exact_zero_sample_fraction_mean": float(np.mean(zeros)),
            "utterances_per_source_mean": float(np.mean(pieces)),
            "mixtures_with_a_speaker_under_5_min": float(np.mean(small)),
            "speakers": len(ds.speakers), "speakers_under_5_min": sum(v < 300 for v in ds.speaker_seconds.values())}


def cmd_data_stats(args) -> int:
    from sonotok.data.mixtures import MixtureDataset

    torch.set_num_threads(args.threads)
    corpus = Path(args.corpus)
    out = {"command": ".venv/bin/python bench/separation.py " + " ".join(sys.argv[1:]), "recipes": {}}
    for name in args.recipes:
        kw = recipe(name)
        ds = MixtureDataset(corpus / "train.jsonl", 2, 8000, args.seconds, length=args.num_mixtures, seed=0, **kw)
        out["recipes"][name] = {"kwargs": kw, **mixture_stats(ds, args.num_mixtures)}
        print(name, json.dumps(out["recipes"][name]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    keys = [k for k in next(iter(out["recipes"].values())) if k not in ("kwargs", "num_mixtures", "speakers")]
    print("\n| statistic | " + " | ".join(out["recipes"]) + " |\n|---|" + "---:|" * len(out["recipes"]))
    for k in keys:
        print(f"| {k} | " + " | ".join(str(r[k] if not isinstance(r[k], float) else round(r[k], 3))
                                      for r in out["recipes"].values()) + " |")
    print(f"\nwritten {args.out}")
    return 0


def cmd_recipe_ab(args) -> int:
    """The same model (same initial weights), the same number of steps, only the training mixtures differ;
    each then on the same fixed valid and test mixtures."""
    import numpy as np

    from sonotok.data.mixtures import MixtureDataset, collate_mixtures, fixed_test_set
    from sonotok.losses.separation import PITSISNRLoss, sisnr_improvement
    from sonotok.models.separation import conv_tasnet

    torch.set_num_threads(args.threads)
    corpus = Path(args.corpus)
    sizes = {"tiny": dict(N=64, L=16, B=32, H=64, X=4, R=2), "small": dict(N=128, L=32, B=64, H=128, X=7, R=2)}
    evals = {split: fixed_test_set(corpus / f"{split}.jsonl", args.num_mixtures, 2, 8000, 4.0, seed=1234)
             for split in ("valid", "test")}
    out = {"command": ".venv/bin/python bench/separation.py " + " ".join(sys.argv[1:]), "size": args.size,
           "steps": args.steps, "batch": f"{args.batch} x {args.seconds} s", "runs": []}
    for name in args.recipes:
        torch.manual_seed(args.seed)
        model = conv_tasnet(**sizes[args.size])
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        loss_fn = PITSISNRLoss()
        kw = recipe(name)
        ds = MixtureDataset(corpus / "train.jsonl", 2, 8000, args.seconds, length=10**9, seed=args.seed, **kw)
        t0, train = time.perf_counter(), []
        model.train()
        for step in range(args.steps):
            batch = collate_mixtures([ds[(step * args.batch + i, 0)] for i in range(args.batch)])
            loss = loss_fn(model(batch["mix"]), batch["sources"])["sep/sisnr"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            train.append(-float(loss.detach()))
        minutes = (time.perf_counter() - t0) / 60
        model.eval()
        row = {"recipe": name, "kwargs": kw, "steps": args.steps, "train_minutes": round(minutes, 2),
               "train_sisnr_last_50": float(np.mean(train[-50:]))}
        with torch.no_grad():
            for split, ev in evals.items():
                v = [float(sisnr_improvement(model(ev[i]["mix"][None]), ev[i]["sources"][None], ev[i]["mix"][None])[0])
                     for i in range(len(ev))]
                row[f"{split}_sisnri"] = float(np.mean(v))
        out["runs"].append(row)
        print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\n{args.size} Conv-TasNet, {args.steps} steps of {out['batch']}, same initial weights; SI-SNRi on "
          f"{args.num_mixtures} fixed mixtures of held-out speakers\n")
    print("| training mixtures | valid SI-SNRi (dB) | test SI-SNRi (dB) | train SI-SNR, last 50 steps | minutes |")
    print("|---|---:|---:|---:|---:|")
    for r in out["runs"]:
        print(f"| {r['recipe']} | {r['valid_sisnri']:.2f} | {r['test_sisnri']:.2f} | {r['train_sisnr_last_50']:.2f} | "
              f"{r['train_minutes']:.1f} |")
    print(f"\nwritten {args.out}")
    return 0


def cmd_retrain(args) -> int:
    """Train the shipped small 8 kHz recipe (with its current, fixed training mixtures) for ``--minutes`` on
    ``--threads`` threads, then evaluate it on the fixed held-out test mixtures next to the shipped model."""
    import subprocess

    import sonotok
    from sonotok.data.mixtures import fixed_test_set
    from sonotok.evaluation.separation import evaluate_separation

    corpus = Path(args.corpus)
    run = Path(args.run_dir)
    m = float(args.minutes)
    hh, mm, ss = int(m // 60), int(m % 60), int(round((m * 60) % 60))
    cmd = [sys.executable, "-m", "sonotok.cli", "train", "--config-name", "separate", f"separation={args.preset}",
           f"out_dir={run}", f"threads={args.threads}", f"trainer.max_time={0:02d}:{hh:02d}:{mm:02d}:{ss:02d}",
           f"++schedule.total_minutes={m:g}", f"data.train={corpus / 'train.jsonl'}",
           f"data.valid={corpus / 'valid.jsonl'}", "trainer.enable_progress_bar=false", *args.overrides]
    load_start = os.getloadavg()
    if not args.skip_train:
        print(" ".join(cmd), flush=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OMP_WAIT_POLICY="PASSIVE")
        subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    torch.set_num_threads(args.threads)
    test = fixed_test_set(corpus / "test.jsonl", args.num_mixtures, 2, 8000, 4.0, seed=1234)
    results = {}
    for name, path in (("retrained", run / "model"), *((("shipped", "default"),) if args.with_shipped else ())):
        model = sonotok.load_separator(str(path)) if name == "shipped" else sonotok.load(path)
        results[name] = {"model": str(path), **evaluate_separation(model, test, oracles=[])["model"],
                         **{k: v for k, v in getattr(model, "meta", {}).items() if k in ("train_steps", "train_minutes_last_run")}}
        print(f"{name}: SI-SNRi {results[name]['sisnri']:.2f} dB, SDRi {results[name]['sdri']:.2f} dB", flush=True)
    out = {"command": ".venv/bin/python bench/separation.py " + " ".join(sys.argv[1:]), "train_command": " ".join(cmd),
           "machine": _machine(args.threads, load_start), "preset": args.preset, "minutes": m,
           "test": {"manifest": str(corpus / "test.jsonl"), "num_mixtures": args.num_mixtures, "seconds_each": 4.0,
                    "seed": 1234}, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwritten {args.out}")
    return 0


def _rows(path: Path) -> list:
    from sonotok.data.corpus import read_manifest

    return read_manifest(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("shipped", help="shipped separators vs oracles, streaming, long input, real mixture")
    s.add_argument("--models", nargs="+", default=["default", "causal"], help="separators (names or directories)")
    s.add_argument("--corpus", default=str(ROOT / "data" / "corpus-full"))
    s.add_argument("--num-mixtures", type=int, default=100)
    s.add_argument("--seconds", type=float, default=4.0)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--stream-seconds", type=float, default=10.0)
    s.add_argument("--long-seconds", type=float, default=60.0)
    s.add_argument("--skip-long", action="store_true")
    s.add_argument("--skip-real", action="store_true")
    s.add_argument("--artifacts", default=str(ROOT / "runs" / "separator-artifacts"))
    s.add_argument("--real-dir", default=str(ROOT / "runs" / "separator-real-mixture"))
    s.add_argument("--out", default=str(ROOT / "bench" / "results" / "separation_shipped.json"))
    s.set_defaults(func=cmd_shipped)
    c = sub.add_parser("compare", help="ours vs torchaudio.models.ConvTasNet, same batches and steps")
    c.add_argument("--preset", default="convtasnet_small_8k")
    c.add_argument("--minutes", type=float, default=10.0)
    c.add_argument("--max-steps", type=int, default=-1)
    c.add_argument("--corpus", default=str(ROOT / "data" / "corpus-full"))
    c.add_argument("--num-mixtures", type=int, default=100)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", default=str(ROOT / "bench" / "results" / "separation_torchaudio.json"))
    c.set_defaults(func=cmd_compare)
    t = sub.add_parser("tiny", help="the tiny preset after a fixed CPU training budget vs oracles")
    t.add_argument("--minutes", type=float, default=10.0, help="training wall-clock budget")
    t.add_argument("--max-steps", type=int, default=-1, help="training step budget (-1: time only)")
    t.add_argument("--corpus", default=str(ROOT / "data" / "corpus"))
    t.add_argument("--num-mixtures", type=int, default=50)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--run-dir", default=str(ROOT / "runs" / "bench_separation"))
    t.add_argument("--out", default=str(ROOT / "bench" / "results" / "separation.json"))
    t.add_argument("--skip-train", action="store_true", help="evaluate the model already in --run-dir")
    t.set_defaults(func=cmd_tiny)
    k = sub.add_parser("card", help="ship a trained separator into sonotok/pretrained with its model card")
    k.add_argument("--runs", nargs="+", required=True, help="run dir(s): the first is shipped, all are plotted")
    k.add_argument("--ship", required=True, help="e.g. sonotok/pretrained/separator-8k")
    k.add_argument("--key", default="default", help="the model's key in --results")
    k.add_argument("--results", default=str(ROOT / "bench" / "results" / "separation_shipped.json"))
    k.add_argument("--corpus", default=str(ROOT / "data" / "corpus-full"))
    k.add_argument("--preset", required=True)
    k.add_argument("--command", required=True)
    k.add_argument("--minutes", type=float, required=True)
    k.add_argument("--hardware", default="2 CPU cores shared with other engineers' jobs")
    k.add_argument("--init-from", default=None)
    k.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "separation_learning_curve.png"))
    k.add_argument("--figure-rel", default="docs/figures/separation_learning_curve.png")
    k.set_defaults(func=cmd_card)
    d = sub.add_parser("data-stats", help="statistics of the training mixtures as fed to the model, per recipe")
    d.add_argument("--recipes", nargs="+", default=["shipped", "preset"],
                   choices=sorted(RECIPES) + ["preset"])
    d.add_argument("--corpus", default=str(ROOT / "data" / "corpus-full"))
    d.add_argument("--num-mixtures", type=int, default=300)
    d.add_argument("--seconds", type=float, default=2.0)
    d.add_argument("--threads", type=int, default=1)
    d.add_argument("--out", default=str(ROOT / "data" / "sep-diag" / "mixture_stats.json"))
    d.set_defaults(func=cmd_data_stats)
    a = sub.add_parser("recipe-ab", help="same model and steps, training-mixture recipes compared on held-out mixtures")
    a.add_argument("--recipes", nargs="+", default=["shipped", "preset"],
                   choices=sorted(RECIPES) + ["preset"])
    a.add_argument("--size", default="tiny", choices=["tiny", "small"])
    a.add_argument("--steps", type=int, default=150)
    a.add_argument("--batch", type=int, default=4)
    a.add_argument("--seconds", type=float, default=2.0)
    a.add_argument("--lr", type=float, default=1e-3)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--corpus", default=str(ROOT / "data" / "corpus-full"))
    a.add_argument("--num-mixtures", type=int, default=40)
    a.add_argument("--threads", type=int, default=1)
    a.add_argument("--out", default=str(ROOT / "data" / "sep-diag" / "recipe_ab.json"))
    a.set_defaults(func=cmd_recipe_ab)
    r = sub.add_parser("retrain", help="train the shipped recipe (fixed mixtures) for --minutes, then evaluate it")
    r.add_argument("--minutes", type=float, required=True, help="training wall-clock budget (also the cosine horizon)")
    r.add_argument("--preset", default="convtasnet_small_8k")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--corpus", default=str(ROOT / "data" / "corpus-full"))
    r.add_argument("--run-dir", default=str(ROOT / "runs" / "separator-8k-fixed"))
    r.add_argument("--num-mixtures", type=int, default=100)
    r.add_argument("--with-shipped", action="store_true", help="also evaluate the shipped `default` on the same mixtures")
    r.add_argument("--skip-train", action="store_true", help="evaluate the model already in --run-dir")
    r.add_argument("--out", default=str(ROOT / "bench" / "results" / "separation_retrain.json"))
    r.add_argument("overrides", nargs="*", help="more Hydra overrides for the training run")
    r.set_defaults(func=cmd_retrain)
    args = ap.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
