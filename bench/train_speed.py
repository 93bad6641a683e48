"""Training-step speed of the presets on CPU: steps/s (eager vs ``torch.compile``) and the top ops of one step.

Each preset is built from the Hydra config tree exactly as ``train.py`` builds it (``compose_config`` +
``build_module``); one training step is the same work as ``CodecLightningModule.training_step``
(discriminator step when the GAN is active, generator forward/backward, gradient clipping, optimizer and
scheduler steps) on a random batch, without Lightning's loop around it. For every preset:

* ``eager``: steps/s after ``--warmup`` steps (k-means init and allocator warm-up excluded), averaged over
  ``--steps`` steps;
* ``compile``: the same with the encoder and decoder compiled in place (``nn.Module.compile()``, keeps the
  state-dict keys), compile time reported separately;
* the top ``--top`` ops of one eager step by self CPU time (``torch.profiler``).

Writes ``bench/results/train_speed.json``.

    OMP_WAIT_POLICY=PASSIVE nice -n 5 .venv/bin/python bench/train_speed.py --presets tiny,fast_16k

Measure alone when you can: two PyTorch jobs on the same two cores slow each other down unevenly; compare
only numbers from one run.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds scripts such as tokenize.py that would shadow standard-library modules: drop the script folder
# from the import path (Python puts it first) before importing anything else.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# preset -> extra overrides. The 24 kHz presets are large (GAN with a 41 M-parameter MPD): profile them on a
# small batch so a step fits on two CPU cores; steps/s is per this batch.
PRESETS = {
    "tiny": ["experiment=tiny"],
    "fast_16k": ["experiment=fast_16k"],
    "encodec_like_24k": ["experiment=encodec_like_24k", "data.batch_size=2", "schedule.disc_start_step=0"],
    "wavtokenizer_24k_75hz": ["experiment=wavtokenizer_24k_75hz", "data.batch_size=2"],
}


def build(overrides: list[str]):
    from sonotok.training.train import build_module, compose_config

    cfg = compose_config(overrides)
    module = build_module(cfg)
    opts, scheds = module.configure_optimizers()
    return cfg, module, opts, scheds


def train_step(module, opts, scheds, wav: torch.Tensor) -> float:
    """One step with the work of ``CodecLightningModule.training_step`` (manual optimization)."""
    codec = module.codec
    out = codec(wav)
    recon = out["recon"]
    losses = module.reconstruction_losses(recon, wav)
    losses.update(out["losses"])
    if module.gan_active():
        opt_d = opts[1]
        real_logits, _ = module.discriminator(wav)
        fake_logits, _ = module.discriminator(recon.detach())
        d_loss = sum(module.adv_losses["disc"](real_logits, fake_logits).values())
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        torch.nn.utils.clip_grad_norm_(module.discriminator.parameters(), module.disc_grad_clip)
        opt_d.step()
        scheds[1].step()
        fake_logits, fake_feats = module.discriminator(recon)
        with torch.no_grad():
            _, real_feats = module.discriminator(wav)
        losses.update(module.adv_losses["gen"](fake_logits))
        losses.update(module.adv_losses["feat"](real_feats, fake_feats))
    total = module.weighted_total(losses)
    opts[0].zero_grad(set_to_none=True)
    total.backward()
    if module.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(codec.parameters(), module.grad_clip)
    opts[0].step()
    scheds[0].step()
    module.gen_steps += 1
    return float(total.detach())


def batch_for(cfg) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    b, sr = int(cfg.data.batch_size), int(cfg.sample_rate)
    t = int(round(float(cfg.data.segment_seconds) * sr))
    return 0.1 * torch.randn(b, int(cfg.channels), t, generator=g)


def measure(name: str, overrides: list[str], args, compile_: bool) -> dict:
    torch.manual_seed(0)
    cfg, module, opts, scheds = build(overrides)
    module.train()
    wav = batch_for(cfg)
    t_compile = 0.0
    if compile_:
        module.codec.encoder.compile()
        module.codec.decoder.compile()
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        train_step(module, opts, scheds, wav)
    warm_s = time.perf_counter() - t0
    if compile_:
        t_compile = warm_s
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        train_step(module, opts, scheds, wav)
        times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    row = {
        "mode": "compile" if compile_ else "eager",
        "batch": list(wav.shape),
        "gen_params": sum(p.numel() for p in module.codec.parameters()),
        "disc_params": sum(p.numel() for p in module.discriminator.parameters()) if module.discriminator else 0,
        "gan_active": bool(module.gan_active()),
        "warmup_s": warm_s,
        "compile_and_warmup_s": t_compile,
        "median_step_s": med,
        "mean_step_s": sum(times) / len(times),
        "steps_per_s": 1.0 / med,
    }
    print(f"[{name}/{row['mode']}] {row['steps_per_s']:.3f} steps/s (median {med:.3f} s, batch {row['batch']})",
          flush=True)
    if not compile_ and args.top:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train_step(module, opts, scheds, wav)
        avgs = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in avgs) or 1
        row["top_ops"] = [
            {"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1e3, "share": e.self_cpu_time_total / total,
             "calls": e.count}
            for e in avgs[: args.top]
        ]
        for op in row["top_ops"]:
            print(f"    {op['op'][:48]:48s} {op['self_cpu_ms']:9.1f} ms {100 * op['share']:5.1f}% x{op['calls']}")
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", default="tiny,fast_16k,wavtokenizer_24k_75hz", help=f"comma list of {list(PRESETS)}")
    p.add_argument("--modes", default="eager,compile")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "bench/results/train_speed.json"))
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    res = {"torch": torch.__version__, "threads": args.threads, "machine": platform.processor() or platform.machine(),
           "cpus": os.cpu_count(), "warmup": args.warmup, "steps": args.steps,
           "load_avg_at_start": os.getloadavg(), "presets": {}}
    for name in args.presets.split(","):
        res["presets"][name] = {"overrides": PRESETS[name]}
        for mode in args.modes.split(","):
            try:
                res["presets"][name][mode] = measure(name, PRESETS[name], args, mode == "compile")
            except Exception as e:  # a compile failure is a result too
                res["presets"][name][mode] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
                print(f"[{name}/{mode}] failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
        r = res["presets"][name]
        if "steps_per_s" in r.get("eager", {}) and "steps_per_s" in r.get("compile", {}):
            r["compile_speedup"] = r["compile"]["steps_per_s"] / r["eager"]["steps_per_s"]
        res["load_avg_at_end"] = os.getloadavg()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1))
    print(f"{'preset':24s} {'eager steps/s':>14s} {'compile steps/s':>16s} {'speedup':>8s}")
    for name, r in res["presets"].items():
        e = r.get("eager", {}).get("steps_per_s", float("nan"))
        c = r.get("compile", {}).get("steps_per_s", float("nan"))
        print(f"{name:24s} {e:14.3f} {c:16.3f} {r.get('compile_speedup', float('nan')):8.2f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
