"""What semantic distillation buys (issues 6, 18): baseline vs X-Codec vs first-codebook vs DM-Codec codecs.

Designs (Hydra presets, RVQ 8 x 1024 at 50 Hz = 4 kbps): ``baseline`` (no teacher), ``xcodec``
(``experiment=xcodec_16k``), ``first_codebook`` (``experiment=split_rvq_16k``: Mimi-style split RVQ, RVQ-1
distilled from Whisper tiny.en), ``dmcodec`` (``experiment=dmcodec_16k``: LM-guided on the whole latent + SM-guided
on RVQ-1), ``dmcodec_lm`` (LM only), ``dmcodec_sm`` (SM only on RVQ-1 of the same model: the controlled
comparison for the LM term). ``--backbone stft`` puts them all on the fast spectral backbone of
``experiment=tiny`` (``dmcodec`` is then ``experiment=dmcodec_tiny``); ``--backbone seanet`` runs the presets as
they are. Every design trains for the same minutes (``--minutes``, optimizer-step time) on one CPU core, then:

- acoustics on held-out speakers (the corpus's test split, languages never trained on): PESQ-WB, STOI;
- probes (ridge, fitted on valid-split speakers, scored on test-split speakers): from the codes to Whisper tiny.en's
  features (``probe``), and from the codes to the text teacher's force-aligned MiniLM targets of held-out English
  prompts (``probe_lm``: fitted on half of them, scored on the other half);
- WER / CER of Whisper tiny.en (greedy, CTranslate2) on the reconstructions against REAL transcripts, next to the
  same on the original audio (the ceiling), on two sets:
  ``flite``: the Harvard sentences read by flite's voices awb, rms, slt and kal16 (voices never trained on,
  synthetic speech, true text) -- the held-out-speaker WER; ``prompts``: every ``--heldout-every``-th transcribed
  Asterisk prompt of allison/en, held out of training (unseen utterances of a SEEN voice: the corpus has no
  English speaker outside its train split, and its held-out speakers' transcripts are Dutch, which tiny.en cannot
  transcribe). Hallucination loops are capped: decoding stops at ``8 tokens/s x duration + 10``, and the table's
  WER is each utterance's errors capped at its length (``wer_capped``), with the plain WER, the CER and the share
  of looped hypotheses beside it (:mod:`sonotok.semantic.wer`). Paired bootstrap intervals (over utterances) of
  the capped-WER differences answer "is A below B".

Parallel and fair: each (design, seed) is its own process pinned to one core (``taskset -c``), 1 thread, the same
training minutes; ``--jobs`` of them run at once (one per core in ``--cores``). A first step prepares what all
need once (held-out split, transcripts and forced alignments of the training prompts, flite audio, the original
audio's transcriptions). Results: ``--out`` (JSON) and the same name with ``.md`` (table).

The conclusive run (about 50 minutes on a free 2-core machine: 4 designs x 20 min, two at a time, the controlled
pair dmcodec / dmcodec_sm side by side; plus about 1 min to prepare with warm caches and about 3 min of scoring per
design; English-only training, 1 file per draw, so that DM-Codec's crops all have a transcript)::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/semantic.py --backbone stft \\
        --designs dmcodec,dmcodec_sm,first_codebook,baseline --minutes 20 --seeds 0 --jobs 2 --cores 0,1 \\
        --train-languages en --override data.balance=null --corpus data/corpus-full \\
        --out bench/results/semantic_dmcodec.json

Smoke test of the whole pipeline (2 minutes per design, small scoring sets; ``--cores 1,1`` puts both jobs on one
core of a busy machine)::

    nice -n 15 env OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/semantic.py --backbone stft \\
        --designs dmcodec,dmcodec_sm --minutes 2 --jobs 2 --train-languages en --override data.balance=null \\
        --corpus data/corpus-full --per-speaker 1 --probe-files 2 --wer-utterances 8 --sentences 3 \\
        --work /tmp/sem_smoke --out /tmp/sem_smoke/semantic_smoke.json

``--merge a.json b.json --out c.json`` merges result files of separate runs (per design and seed).
``--lm-learnability 160 --out bench/results/semantic_lm_targets.json`` measures (no training) how predictable
the LM targets are from speech with each alignment and text-teacher layer choice (docs/semantic.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import build, endless_batches, manifest_files, train_step  # noqa: E402

DESIGNS = {
    "baseline": ["experiment=tiny_seanet"],  # the same SEANet + RVQ 8 x 1024 without a teacher
    "xcodec": ["experiment=xcodec_16k"],
    "first_codebook": ["experiment=split_rvq_16k"],
    "dmcodec": ["experiment=dmcodec_16k"],  # LM (whole latent) + SM (RVQ-1)
    "dmcodec_lm": ["experiment=dmcodec_16k", "codec.sm_dim=0"],
    "dmcodec_sm": ["experiment=dmcodec_16k", "codec.lm_dim=0"],
}
LABELS = {
    "baseline": "baseline", "xcodec": "X-Codec", "first_codebook": "first codebook (split RVQ)",
    "dmcodec": "DM-Codec LM + SM", "dmcodec_lm": "DM-Codec LM only", "dmcodec_sm": "DM-Codec SM only (RVQ-1)",
}

# --backbone stft: the designs on the fast spectral backbone of `experiment=tiny` (causal STFT + ConvNeXt encoder,
# ConvNeXt + inverse-STFT decoder, compressed spectral losses) with the designs' RVQ 8 x 1024 (4 kbps).
STFT_BACKBONE = [
    "encoder=stft_convnext", "decoder=vocos",
    "~encoder.n_filters", "~encoder.dilations", "~decoder.n_filters", "~decoder.dilations",
    "encoder.width=192", "encoder.num_blocks=3", "encoder.num_post_blocks=1",
    "decoder.width=192", "decoder.num_pre_blocks=1", "decoder.num_blocks=3",
    "loss=compressed", "loss.modules.mel.mag_weight=1.0",  # decoder_delay: derived from the decoder
    "optim.generator.lr=1.5e-3", "optim.generator.betas=[0.9,0.99]",
]
STFT_WEIGHTS = "rec/mel:15.0,rec/stft:1.0,rec/wave:0.0,rec/loudness:0.5,vq/commit:1.0"
STFT_DESIGNS = {
    "baseline": [f"loss.weights={{{STFT_WEIGHTS}}}"],
    "xcodec": [f"loss.weights={{{STFT_WEIGHTS},sem/distill:5.0}}"],
    "first_codebook": [f"loss.weights={{{STFT_WEIGHTS},sem/distill:10.0}}"],
    # = experiment=dmcodec_tiny (tests/semantic/test_dmcodec.py checks the two build the same codec)
    "dmcodec": [f"loss.weights={{{STFT_WEIGHTS},sem/lm:20.0,sem/sm:20.0}}"],
    "dmcodec_lm": [f"loss.weights={{{STFT_WEIGHTS},sem/lm:20.0}}"],
    "dmcodec_sm": [f"loss.weights={{{STFT_WEIGHTS},sem/sm:20.0}}"],
}
# the flite voices of the held-out-speaker WER (16 kHz voices; "kal" is 8 kHz and left out)
FLITE_VOICES = ("awb", "rms", "slt", "kal16")
# shortest file (seconds) taken from a manifest for scoring and probes
MIN_S = 1.5
# comparisons reported with paired bootstrap intervals, when both designs ran
COMPARISONS = (("dmcodec", "first_codebook"), ("dmcodec", "dmcodec_sm"), ("dmcodec_lm", "baseline"),
               ("dmcodec_sm", "baseline"), ("first_codebook", "baseline"), ("dmcodec", "baseline"))


def design_overrides(name: str, backbone: str) -> list[str]:
    """Hydra overrides of design ``name`` on ``backbone`` (``seanet``: the presets as they are; ``stft``)."""
    if name not in DESIGNS:
        raise ValueError(f"unknown design {name!r}: expected one of {', '.join(DESIGNS)}")
    if backbone == "seanet":
        return list(DESIGNS[name])
    if backbone == "stft":
        return [*DESIGNS[name], *STFT_BACKBONE, *STFT_DESIGNS[name]]
    raise ValueError(f"unknown backbone {backbone!r}: expected seanet or stft")


# ----------------------------------------------------------------------------- data
def synth_sentences(work: Path, n: int, voices=FLITE_VOICES) -> list[dict]:
    """The first ``n`` Harvard sentences read by each flite voice (16 kHz wavs) -> ``[{path, text, voice}]``."""
    from sonotok.data.audio import load_audio, save_audio
    from sonotok.data.corpus.tts import SENTENCES

    work.mkdir(parents=True, exist_ok=True)
    out = []
    for voice in voices:
        for i, text in enumerate(SENTENCES[:n]):
            p = work / f"harvard_{voice}_{i:02d}.wav"
            if not p.is_file():
                raw = work / f".raw_{voice}_{i:02d}.wav"
                subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(raw)], check=True,
                               capture_output=True)
                save_audio(p, load_audio(raw, 16000), 16000)  # resampled where a voice is not 16 kHz
                raw.unlink()
            out.append({"path": str(p), "text": text, "voice": voice})
    return out


def heldout_split(corpus: Path, work: Path, every: int, speaker: str = "allison", language: str = "en",
                  languages: list[str] | None = None) -> tuple[Path, list[dict]]:
    """Hold every ``every``-th transcribed utterance of ``speaker``/``language`` (by path) out of the training
    manifest (and keep only ``languages`` when given): returns ``(training manifest without them,
    [{path, text, duration}] of them)``."""
    rows = [json.loads(line) for line in (corpus / "train.jsonl").read_text().splitlines() if line.strip()]
    if languages:
        rows = [r for r in rows if r.get("language") in languages]
    cand = sorted((r for r in rows if r.get("speaker") == speaker and r.get("language") == language and r.get("text")),
                  key=lambda r: r["path"])
    held = {r["path"] for r in cand[1::every]} if every > 0 else set()
    work.mkdir(parents=True, exist_ok=True)
    tag = "-".join(languages) if languages else "all"
    out = work / f"train_{tag}_minus_{speaker}_{language}_{every}.jsonl"
    keep = []
    for r in rows:
        if r["path"] in held:
            continue
        r = dict(r)
        r["path"] = str((corpus / r["path"]).resolve())
        keep.append(json.dumps(r))
    text = "\n".join(keep) + "\n"
    if not out.is_file() or out.read_text() != text:
        out.write_text(text)
    pairs = [{"path": str((corpus / r["path"]).resolve()), "text": r["text"], "duration": float(r["duration"])}
             for r in cand if r["path"] in held]
    return out, pairs


def pick_utterances(items: list[dict], n: int, min_s: float = MIN_S, max_s: float = 8.0) -> list[dict]:
    """``n`` of ``items`` of ``min_s``-``max_s`` seconds with at least 3 words, spread over the list."""
    import soundfile as sf

    ok = [u for u in items if min_s <= sf.info(u["path"]).duration <= max_s and len(u["text"].split()) >= 3]
    step = max(1, len(ok) // max(n, 1))
    return ok[::step][:n]


# ----------------------------------------------------------------------------- whisper
def transcribe_all(asr, items: list[dict], wavs=None) -> list[str]:
    """Whisper's transcripts of ``items`` (their files, or the tensors ``wavs`` [T] at 16 kHz), each decoded with
    a token cap proportional to its duration."""
    from sonotok.data.audio import load_audio
    from sonotok.semantic.wer import max_tokens_for

    out = []
    for k, u in enumerate(items):
        w = load_audio(u["path"], 16000)[0] if wavs is None else wavs[k]
        out.append(asr.transcribe(w, max_length=max_tokens_for(w.numel() / 16000)))
    return out


def prepare(args, corpus: Path, work: Path) -> dict:
    """What every design needs once: the held-out split, the training transcripts and alignments (cached), the WER
    sets with their alignments, and Whisper on the original audio. Written to ``work/prepared.json``."""
    from hydra.utils import instantiate

    from sonotok.training.train import compose_config

    langs = args.train_languages.split(",") if args.train_languages else None
    train_manifest, heldout = heldout_split(corpus, work, args.heldout_every, languages=langs)
    prompts = pick_utterances(heldout, args.wer_utterances)
    sets = {"prompts": prompts}
    try:
        sets["flite"] = synth_sentences(work / "harvard", args.sentences)
    except (FileNotFoundError, subprocess.CalledProcessError) as e:
        print(f"[prepare] flite unavailable ({type(e).__name__}: {e}): no unseen-voice WER", flush=True)
    info: dict = {"train_manifest": str(train_manifest), "sets": sets}
    store = None
    if any(d.startswith("dmcodec") for d in args.designs.split(",")):
        t0 = time.perf_counter()  # fills the transcript and alignment caches the design processes read
        cfg = compose_config(design_overrides("dmcodec", args.backbone) + [f"data.train={train_manifest}",
                             f"data.valid={corpus.resolve() / 'valid.jsonl'}"] + list(args.override or []))
        dm = instantiate(cfg.data)
        dm.setup("fit")
        ds = dm.train_dataset
        info["train_text_fraction"] = ds.text_fraction
        info["train_aligned_fraction"] = getattr(ds, "aligned_fraction", 0.0)
        info["transcript_counts"] = dict(dm.store.counts)
        store = dm.store
        print(f"[prepare] transcripts and alignments in {time.perf_counter() - t0:.0f} s: "
              f"{100 * info['train_text_fraction']:.1f}% of the training audio has text, "
              f"{100 * info['train_aligned_fraction']:.1f}% aligned", flush=True)
    try:  # alignments of the held-out prompts, for the LM probe
        from sonotok.data.dataset import AudioItem
        from sonotok.semantic.transcripts import TranscriptStore

        store = store or TranscriptStore(aligner="whisper", align_cache="~/.cache/sonotok/whisper_alignments.jsonl")
        for u in prompts:
            u["word_spans"] = store.word_spans(AudioItem(u["path"], u["duration"], language="en"), u["text"])
    except Exception as e:  # noqa: BLE001  (no ctranslate2: the LM probe is skipped, said in the results)
        info["alignment_skipped"] = f"{type(e).__name__}: {e}"
    try:
        from sonotok.semantic.transcripts import WhisperASR
        from sonotok.semantic.wer import score_utterances

        asr = WhisperASR()
    except Exception as e:  # noqa: BLE001  (reported in the results: no WER without ctranslate2)
        info["asr_skipped"] = f"{type(e).__name__}: {e}"
        asr = None
    if asr is not None:
        t0 = time.perf_counter()
        info["original"] = {}
        for name, items in sets.items():
            hyps = transcribe_all(asr, items)
            sc = score_utterances([u["text"] for u in items], hyps)
            sc["hyps"] = [h[:300] for h in hyps]
            info["original"][name] = sc
            print(f"[prepare] Whisper on the original {name} ({len(items)} utterances): WER {sc['wer']:.3f}",
                  flush=True)
        print(f"[prepare] original audio transcribed in {time.perf_counter() - t0:.0f} s", flush=True)
    (work / "prepared.json").write_text(json.dumps(info, indent=1))
    return info


# ----------------------------------------------------------------------------- training
def train(name: str, module, dm, steps: int, minutes: float, log_every: int = 25) -> dict:
    codec = module.codec
    (opt,), (sched,) = module.configure_optimizers()
    loader = endless_batches(dm)
    codec.train()
    train_s, step = 0.0, 0
    curve, acc = [], {}
    while step < steps and train_s < minutes * 60:
        batch = next(loader)
        t0 = time.perf_counter()
        if hasattr(module, "use_batch"):
            module.use_batch(batch)  # the transcripts of a DM-Codec batch reach the semantic hook
        losses, total = train_step(module, codec, opt, sched, batch)  # the semantic hook adds sem/*
        step += 1
        train_s += time.perf_counter() - t0
        for k, v in losses.items():
            if k.startswith("sem/") or k == "rec/mel":
                acc.setdefault(k, []).append(float(v.detach()))
        if step % log_every == 0:
            means = {k: sum(v) / len(v) for k, v in acc.items()}
            curve.append({"step": step, "minutes": train_s / 60, **means})
            acc = {}
            txt = " ".join(f"{k} {v:.3f}" for k, v in means.items())
            print(f"[{name}] step {step} loss {float(total):.3f} {txt} {step / train_s:.2f} steps/s", flush=True)
    codec.eval()
    return {"steps": step, "train_minutes": train_s / 60, "steps_per_s": step / max(train_s, 1e-9),
            "loss_curve": curve}


# ----------------------------------------------------------------------------- probes
@torch.no_grad()
def representations(codec, files: list[str], teacher) -> dict[str, list[torch.Tensor]]:
    from sonotok.data.audio import load_audio
    from sonotok.semantic.teacher import resample_frames
    from sonotok.semantic.whisper import WhisperLogMel

    mel_fe = WhisperLogMel(80)
    reps: dict[str, list[torch.Tensor]] = {"target": [], "all": [], "first": [], "first_emb": [], "mel": []}
    for f in files:
        wav = load_audio(f, codec.sample_rate)[None]  # [1, 1, T]
        codes = codec.encode(wav)  # [1, K, F]
        n = codes.shape[-1]
        reps["target"].append(teacher(wav, sample_rate=codec.sample_rate, num_frames=n)[0].T)
        reps["all"].append(codec.quantizer.decode(codes)[0].T)
        reps["first"].append(codes[0, 0])
        reps["first_emb"].append(codec.quantizer.decode(codes[:, :1])[0].T)
        reps["mel"].append(resample_frames(mel_fe(codec.pad_to_frames(wav)[:, 0]), n)[0].T)
    return reps


def probe_scores(codec, train_files, test_files, teacher) -> dict:
    from sonotok.semantic.probe import linear_probe, one_hot_codes

    tr = {k: torch.cat(v) for k, v in representations(codec, train_files, teacher).items()}
    te = {k: torch.cat(v) for k, v in representations(codec, test_files, teacher).items()}
    out = {}
    for k in ("all", "first_emb", "first", "mel"):
        xtr, xte = tr[k], te[k]
        if k == "first":
            xtr, xte = one_hot_codes(xtr, codec.codebook_size), one_hot_codes(xte, codec.codebook_size)
        out[k] = linear_probe(xtr, tr["target"], xte, te["target"], alpha=10.0)
    return out


@torch.no_grad()
def lm_probe(codec, items: list[dict], text_teacher) -> dict:
    """Ridge from the codes (``all``: the quantized latent, ``first_emb``: RVQ-1) to the text teacher's
    force-aligned targets of ``items`` (voiced frames only): fitted on the first half, scored on the second."""
    from sonotok.data.audio import load_audio
    from sonotok.semantic.probe import linear_probe

    usable = [u for u in items if u.get("word_spans")]
    if len(usable) < 4:
        return {"skipped": f"{len(usable)} aligned utterances (need 4)"}
    reps: dict[str, list] = {"all": [], "first_emb": [], "target": []}
    for u in usable:
        wav = load_audio(u["path"], codec.sample_rate)[None]
        codes = codec.encode(wav)
        n = codes.shape[-1]
        tgt, mask = text_teacher.aligned(n, float(codec.frame_rate), [u["text"]], [0.0],
                                         [wav.shape[-1] / codec.sample_rate], word_spans=[u["word_spans"]])
        m = mask[0]
        reps["target"].append(tgt[0].T[m])
        reps["all"].append(codec.quantizer.decode(codes)[0].T[m])
        reps["first_emb"].append(codec.quantizer.decode(codes[:, :1])[0].T[m])
    h = len(usable) // 2
    out = {}
    for k in ("all", "first_emb"):
        out[k] = linear_probe(torch.cat(reps[k][:h]), torch.cat(reps["target"][:h]), torch.cat(reps[k][h:]),
                              torch.cat(reps["target"][h:]), alpha=10.0)
    return out


def wer_scores(codec, items: list[dict], asr) -> dict:
    """Whisper on ``codec``'s reconstructions of ``items`` scored against their real transcripts."""
    from sonotok.data.audio import load_audio
    from sonotok.semantic.wer import score_utterances

    recs = []
    for u in items:
        wav = load_audio(u["path"], codec.sample_rate)[None]
        with torch.no_grad():
            recs.append(codec.decode(codec.encode(wav), length=wav.shape[-1])[0, 0].clamp(-1, 1))
    hyps = transcribe_all(asr, items, recs)
    sc = score_utterances([u["text"] for u in items], hyps)
    sc["hyps"] = [h[:300] for h in hyps]
    return sc


def acoustic(codec, files) -> dict:
    from sonotok.evaluation.codec import evaluate

    with torch.no_grad():
        s = evaluate(codec, files, verbose=False)["summary"]
    return {k: float(s[k]) for k in ("pesq_wb", "stoi", "mel_distance", "si_sdr") if k in s}


# ----------------------------------------------------------------------------- one design
def run_design(name: str, seed: int, args, prepared: dict) -> dict:
    from sonotok.semantic.whisper import WhisperTeacher

    torch.manual_seed(seed)
    corpus = Path(args.corpus)
    overrides = design_overrides(name, args.backbone) + [f"data.train={prepared['train_manifest']}",
                                                         f"data.valid={corpus.resolve() / 'valid.jsonl'}",
                                                         f"data.seed={seed}", "data.num_workers=1"]
    cfg, module, dm = build(overrides + [f"threads={args.threads}"] + list(args.override or []))
    codec = module.codec
    info = {"design": name, "seed": seed, "backbone": args.backbone,
            "overrides": overrides + list(args.override or []),
            "params": sum(p.numel() for p in codec.parameters()), "kbps": codec.bitrate() / 1000}
    ds = dm.train_dataset
    if getattr(ds, "text_fraction", None) is not None:
        info["train_text_fraction"] = ds.text_fraction
        info["train_aligned_fraction"] = getattr(ds, "aligned_fraction", 0.0)
    info.update(train(name, module, dm, args.steps, args.minutes))
    t0 = time.perf_counter()
    info["acoustic"] = acoustic(codec, manifest_files(corpus / "test.jsonl", args.per_speaker, min_s=MIN_S))
    teacher = WhisperTeacher(normalize=True)
    info["probe"] = probe_scores(codec, manifest_files(corpus / "valid.jsonl", args.probe_files, min_s=MIN_S),
                                 manifest_files(corpus / "test.jsonl", args.probe_files, min_s=MIN_S), teacher)
    text_teacher = module.__dict__.get("text_teacher")
    if text_teacher is None:
        from hydra.utils import instantiate

        from sonotok.training.train import compose_config

        text_teacher = instantiate(compose_config(["experiment=dmcodec_16k"]).text.teacher, asr=None)
    info["probe_lm"] = lm_probe(codec, prepared["sets"]["prompts"], text_teacher)
    if "original" in prepared:
        from sonotok.semantic.transcripts import WhisperASR

        asr = WhisperASR()
        info["asr"] = {k: wer_scores(codec, items, asr) for k, items in prepared["sets"].items()}
    else:
        info["asr"] = {"skipped": prepared.get("asr_skipped", "no ASR")}
    info["eval_minutes"] = (time.perf_counter() - t0) / 60
    a = info["asr"]
    print(f"[{name} s{seed}] {json.dumps(info['acoustic'])} probe all {info['probe']['all']['r2']:.3f} "
          + " ".join(f"WER {k} {v['wer_capped']:.3f} (loops {v['loop_fraction']:.2f})"
                     for k, v in a.items() if isinstance(v, dict) and "wer_capped" in v), flush=True)
    return info


# ----------------------------------------------------------------------------- merge, compare, table
def _mean(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(xs) / len(xs) if xs else float("nan")


def _capped_errors(runs: list[dict], wer_set: str) -> tuple[list[float], list[int]]:
    """Per-utterance capped word errors of ``wer_set``, averaged over ``runs`` (seeds), and reference lengths."""
    per = [r["asr"][wer_set]["per_utterance"] for r in runs if isinstance(r.get("asr", {}).get(wer_set), dict)]
    if not per:
        return [], []
    n = len(per[0])
    errs = [_mean([min(p[i]["word_errors"], p[i]["words"]) for p in per]) for i in range(n)]
    return errs, [per[0][i]["words"] for i in range(n)]


def merge_runs(runs: list[dict], prepared: dict, meta: dict) -> dict:
    """Per-design summaries (means over seeds; per-seed values kept) and paired bootstrap comparisons."""
    from sonotok.semantic.wer import paired_bootstrap

    by: dict[str, list[dict]] = {}
    for r in runs:
        by.setdefault(r["design"], []).append(r)
    res = dict(meta)
    res["prepared"] = {k: v for k, v in prepared.items() if k != "sets"}
    res["sets"] = {k: [{"path": u["path"], "text": u["text"]} for u in v] for k, v in prepared["sets"].items()}
    res["designs"] = {}
    for name, rs in by.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        d = {"label": LABELS.get(name, name), "seeds": [r["seed"] for r in rs],
             "steps": _mean([r["steps"] for r in rs]), "train_minutes": _mean([r["train_minutes"] for r in rs])}
        for k in ("pesq_wb", "stoi"):
            d[k] = _mean([r["acoustic"].get(k) for r in rs])
        for k in ("all", "first", "first_emb"):
            d[f"probe_r2_{k}"] = _mean([r["probe"][k]["r2"] for r in rs])
        for k in ("all", "first_emb"):
            d[f"probe_lm_r2_{k}"] = _mean([r["probe_lm"].get(k, {}).get("r2") for r in rs])
        d["asr"] = {}
        for s in prepared["sets"]:
            per = [r["asr"].get(s) for r in rs if isinstance(r.get("asr", {}).get(s), dict)]
            if not per:
                continue
            d["asr"][s] = {k: _mean([p[k] for p in per]) for k in ("wer", "wer_capped", "cer_capped", "loop_fraction")}
            d["asr"][s]["per_seed_wer_capped"] = [p["wer_capped"] for p in per]
        d["runs"] = rs
        res["designs"][name] = d
    comps = []
    for a, b in COMPARISONS:
        if a not in by or b not in by:
            continue
        for s in prepared["sets"]:
            ea, words = _capped_errors(by[a], s)
            eb, _ = _capped_errors(by[b], s)
            if not ea or len(ea) != len(eb):
                continue
            bs = paired_bootstrap(ea, eb, words)
            verdict = ("lower" if bs["hi"] < 0 else "higher" if bs["lo"] > 0 else "no detectable difference")
            comps.append({"a": a, "b": b, "set": s, **bs, "verdict": verdict})
    res["comparisons"] = comps
    return res


def markdown_table(res: dict) -> str:
    sets = list(res.get("sets", {}))
    orig = res.get("prepared", {}).get("original", {})
    head = ["design", "steps", "PESQ-WB", "STOI", "probe R² all", "probe R² 1st cb", "LM probe R² all"]
    for s in sets:
        head += [f"WER {s} (capped)", f"WER {s} (plain)", f"CER {s}", f"loops {s}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in res["designs"].values():
        row = [d["label"], f"{d['steps']:.0f}", f"{d['pesq_wb']:.2f}", f"{d['stoi']:.3f}",
               f"{d['probe_r2_all']:.3f}", f"{d['probe_r2_first']:.3f}", f"{d['probe_lm_r2_all']:.3f}"]
        for s in sets:
            a = d["asr"].get(s)
            row += ([f"{a['wer_capped']:.3f}", f"{a['wer']:.3f}", f"{a['cer_capped']:.3f}", f"{a['loop_fraction']:.2f}"]
                    if a else ["-"] * 4)
        lines.append("| " + " | ".join(row) + " |")
    if orig:
        row = ["original audio (ceiling)", "", "", "", "", "", ""]
        for s in sets:
            o = orig.get(s)
            row += ([f"{o['wer_capped']:.3f}", f"{o['wer']:.3f}", f"{o['cer_capped']:.3f}", f"{o['loop_fraction']:.2f}"]
                    if o else ["-"] * 4)
        lines.append("| " + " | ".join(row) + " |")
    out = "\n".join(lines) + "\n"
    if res.get("comparisons"):
        out += ("\nPaired bootstrap over utterances (capped WER, seed-averaged per utterance; 95 % interval of "
                "A - B):\n\n| A | B | set | A - B | 95 % interval | P(A lower) | verdict |\n|---|---|---|---|---|---|---|\n")
        for c in res["comparisons"]:
            out += (f"| {LABELS.get(c['a'], c['a'])} | {LABELS.get(c['b'], c['b'])} | {c['set']} | {c['diff']:+.3f} | "
                    f"[{c['lo']:+.3f}, {c['hi']:+.3f}] | {c['p_a_better']:.2f} | {c['verdict']} |\n")
    return out


def write_results(res: dict, out: Path) -> None:
    from sonotok.data.atomic import atomic_write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(res, indent=1))
    atomic_write_text(out.with_suffix(".md"), markdown_table(res))
    print(markdown_table(res), flush=True)


# ----------------------------------------------------------------------------- LM-target learnability
@torch.no_grad()
def lm_learnability(args, corpus: Path, work: Path, n_files: int, alpha: float = 1e4) -> dict:
    """How predictable the LM targets are from speech, per alignment and text-teacher layer: ridge regression from
    Whisper tiny.en's encoder features (whole file) to the text teacher's targets on 1 s crops (50 frames, 2 per
    file, both centred per crop over the frames with a target, as the centred D-axis loss sees them), fitted on
    75 % of ``n_files`` transcribed allison/en training prompts and scored on the rest. Reports the D-axis loss
    the probe reaches (0.693 = no correlation) and R^2, held out and in-sample."""
    import numpy as np
    import torch.nn.functional as F

    from sonotok.data.audio import load_audio
    from sonotok.data.dataset import AudioItem
    from sonotok.semantic.text_teacher import TextTeacher
    from sonotok.semantic.transcripts import TranscriptStore
    from sonotok.semantic.whisper import WhisperTeacher

    langs = args.train_languages.split(",") if args.train_languages else None
    manifest, _ = heldout_split(corpus, work, args.heldout_every, languages=langs)
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rows = sorted((r for r in rows if r.get("speaker") == "allison" and r.get("language") == "en" and r.get("text")
                   and float(r["duration"]) >= 1.2), key=lambda r: r["path"])[:n_files]
    store = TranscriptStore(aligner="whisper", align_cache=str(Path("~/.cache/sonotok/whisper_alignments.jsonl")))
    speech = WhisperTeacher(normalize=True)
    texts = {"last layer": TextTeacher(asr=None), "all layers": TextTeacher(asr=None, layers="all")}
    data = []
    for r in rows:
        wav = load_audio(r["path"], 16000)[0]
        nf = math.ceil(wav.numel() / 16000 * 50 - 1e-6)
        x = speech(wav[None, None], num_frames=nf)[0]
        spans = store.word_spans(AudioItem(r["path"], float(r["duration"]), language="en"), r["text"])
        tg = {}
        for layer, tt in texts.items():
            for how, ws in (("uniform", None), ("forced", spans)):
                tg[(how, layer)] = tt.aligned(nf, 50.0, [r["text"]], [0.0], [wav.numel() / 16000],
                                              word_spans=[ws])
        data.append((x, tg))
    split = int(0.75 * len(data))
    out = {"files": len(data), "alpha": alpha, "results": []}
    for key in data[0][1]:
        crops = []
        for i, (x, tg) in enumerate(data):
            y, m = tg[key][0][0], tg[key][1][0]
            g = np.random.default_rng(i)
            starts = [0] if x.shape[1] <= 50 else list(g.integers(0, x.shape[1] - 50, 2))
            for s0 in starts:
                mm = m[s0: s0 + 50]
                if int(mm.sum()) < 10:
                    continue
                xc, yc = x[:, s0: s0 + 50][:, mm], y[:, s0: s0 + 50][:, mm]
                crops.append((i, (xc - xc.mean(1, keepdim=True)).T.double(), (yc - yc.mean(1, keepdim=True)).T.double()))
        tr = [c for c in crops if c[0] < split]
        xtr, ytr = torch.cat([c[1] for c in tr]), torch.cat([c[2] for c in tr])
        sd = xtr.std(0).clamp_min(1e-6)
        w = torch.linalg.solve((xtr / sd).T @ (xtr / sd) + alpha * torch.eye(xtr.shape[1], dtype=torch.double),
                               (xtr / sd).T @ ytr)
        res = {"alignment": key[0], "layers": key[1]}
        for part, sel in (("held_out", [c for c in crops if c[0] >= split]), ("in_sample", tr)):
            losses, num, den = [], 0.0, 0.0
            for _, xc, yc in sel:
                pr = (xc / sd) @ w
                pr = pr - pr.mean(0)
                losses.append(float(-F.logsigmoid(F.cosine_similarity(pr.T, yc.T, dim=1, eps=1e-6)).mean()))
                num, den = num + float(((pr - yc) ** 2).sum()), den + float((yc ** 2).sum())
            res[part] = {"d_axis": float(np.mean(losses)), "r2": 1 - num / max(den, 1e-12), "crops": len(sel)}
        out["results"].append(res)
        print(f"[lm-learnability] {key[0]:8s} {key[1]:10s} held-out d-axis {res['held_out']['d_axis']:.3f} "
              f"R2 {res['held_out']['r2']:+.3f} | in-sample d-axis {res['in_sample']['d_axis']:.3f} "
              f"R2 {res['in_sample']['r2']:+.3f}", flush=True)
    return out


# ----------------------------------------------------------------------------- orchestration
def _worker_cmd(args, design: str, seed: int, out: Path) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--designs", design, "--seeds", str(seed),
           "--backbone", args.backbone, "--steps", str(args.steps), "--minutes", str(args.minutes),
           "--threads", str(args.threads), "--per-speaker", str(args.per_speaker),
           "--probe-files", str(args.probe_files), "--corpus", args.corpus, "--work", args.work, "--out", str(out)]
    if args.override:
        cmd += ["--override", *args.override]
    return cmd


def orchestrate(args, prepared: dict, work: Path) -> list[dict]:
    """Runs every (design, seed) in its own process pinned to one core, ``args.jobs`` at a time."""
    designs = args.designs.split(",")
    seeds = [int(s) for s in str(args.seeds).split(",")]
    queue = [(d, s) for s in seeds for d in designs]
    cores = [int(c) for c in args.cores.split(",")] if args.cores else sorted(os.sched_getaffinity(0))
    slots = cores[: max(1, args.jobs)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    (work / "logs").mkdir(parents=True, exist_ok=True)
    running: dict[int, tuple] = {}  # slot -> (process, design, seed, result file, log)
    done: list[dict] = []
    failed = []
    while queue or running:
        for slot, core in enumerate(slots):
            if slot not in running and queue:
                d, s = queue.pop(0)
                out = work / "runs" / f"{d}_s{s}.json"
                out.parent.mkdir(parents=True, exist_ok=True)
                log = open(work / "logs" / f"{d}_s{s}.log", "w")
                cmd = ["taskset", "-c", str(core), *_worker_cmd(args, d, s, out)]
                print(f"[bench] core {core}: {d} seed {s} (log {log.name})", flush=True)
                running[slot] = (subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), d, s, out, log)
        time.sleep(2)
        for slot, (p, d, s, out, log) in list(running.items()):
            if p.poll() is None:
                continue
            log.close()
            del running[slot]
            if p.returncode != 0 or not out.is_file():
                failed.append(f"{d} seed {s} (exit {p.returncode}, see {log.name})")
                print(f"[bench] FAILED {failed[-1]}", flush=True)
            else:
                done.append(json.loads(out.read_text()))
                print(f"[bench] done {d} seed {s}", flush=True)
    if failed:
        print(f"[bench] {len(failed)} run(s) failed: {'; '.join(failed)}", flush=True)
    return done


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--designs", default="dmcodec,dmcodec_sm,first_codebook,baseline",
                   help=f"comma-separated, of: {', '.join(DESIGNS)}")
    p.add_argument("--backbone", default="stft", choices=["seanet", "stft"],
                   help="seanet: the presets as they are; stft: the same designs on tiny's spectral backbone")
    p.add_argument("--steps", type=int, default=10 ** 9, help="optimizer steps per design (default: no limit)")
    p.add_argument("--minutes", type=float, default=20.0, help="training minutes per design (the shared budget)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds; every design runs with each")
    p.add_argument("--jobs", type=int, default=2, help="designs trained at once, one core each")
    p.add_argument("--cores", default=None,
                   help="comma-separated cores, one per job slot (default: all usable); a core may repeat")
    p.add_argument("--threads", type=int, default=1, help="threads per design process")
    p.add_argument("--per-speaker", type=int, default=3, help="acoustic eval files per test speaker")
    p.add_argument("--probe-files", type=int, default=6, help="probe files per speaker (valid: fit, test: score)")
    p.add_argument("--sentences", type=int, default=24, help="Harvard sentences per flite voice (at most 24)")
    p.add_argument("--wer-utterances", type=int, default=60, help="held-out allison/en prompts scored for WER")
    p.add_argument("--heldout-every", type=int, default=2,
                   help="hold every n-th transcribed allison/en prompt out of training (the prompts WER set)")
    p.add_argument("--train-languages", default=None,
                   help="comma-separated languages of the training manifest (default: the whole train split)")
    p.add_argument("--override", nargs="*", default=None, help="extra Hydra overrides for every design")
    p.add_argument("--corpus", default=os.environ.get("SONOTOK_CORPUS", str(ROOT / "data/corpus")))
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "sonotok_semantic_bench"))
    p.add_argument("--out", default=str(ROOT / "bench/results/semantic_dmcodec.json"),
                   help="result JSON (a .md table is written next to it)")
    p.add_argument("--merge", nargs="+", default=None, help="merge result files of separate runs into --out")
    p.add_argument("--lm-learnability", type=int, default=0, metavar="N",
                   help="only measure how predictable the LM targets are from speech on N prompts (no training)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for d in args.designs.split(","):
        design_overrides(d, args.backbone)  # unknown names fail here, before anything runs
    out, work, corpus = Path(args.out), Path(args.work), Path(args.corpus)
    work.mkdir(parents=True, exist_ok=True)
    if args.merge:
        runs, prepared, meta = [], None, None
        for f in args.merge:
            r = json.loads(Path(f).read_text())
            for d in r["designs"].values():
                runs += d["runs"]
            prepared = prepared or {**r["prepared"], "sets": {k: v for k, v in r["sets"].items()}}
            meta = meta or {k: v for k, v in r.items() if k not in ("designs", "comparisons", "prepared", "sets")}
        write_results(merge_runs(runs, prepared, meta), out)
        return 0
    torch.set_num_threads(args.threads)
    if args.lm_learnability:
        res = lm_learnability(args, corpus, work, args.lm_learnability)
        from sonotok.data.atomic import atomic_write_text

        atomic_write_text(out, json.dumps(res, indent=1))
        return 0
    if args.worker:
        prepared = json.loads((work / "prepared.json").read_text())
        info = run_design(args.designs, int(args.seeds), args, prepared)
        out.write_text(json.dumps(info, indent=1))
        return 0
    t0 = time.perf_counter()
    prepared = prepare(args, corpus, work)
    meta = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "budget_minutes": args.minutes,
            "budget_steps": args.steps, "threads": args.threads, "jobs": args.jobs, "backbone": args.backbone,
            "corpus": args.corpus, "train_languages": args.train_languages,
            "note": ("each design its own process pinned to one core, 1 thread, equal training minutes; WER sets: "
                     "'flite' = Harvard sentences by flite voices " + ",".join(FLITE_VOICES) + " (unseen voices, "
                     "synthetic), 'prompts' = allison/en Asterisk prompts held out of training (seen voice, unseen "
                     "utterances); Whisper tiny.en greedy via CTranslate2, decoding capped at 8 tokens/s x duration "
                     "+ 10; wer_capped = per-utterance errors capped at the reference length")}
    runs = orchestrate(args, prepared, work)
    if not runs:
        print("[bench] no design finished", flush=True)
        return 1
    res = merge_runs(runs, prepared, meta)
    res["wall_minutes"] = (time.perf_counter() - t0) / 60
    write_results(res, out)
    return 0 if len(runs) == len(args.designs.split(",")) * len(str(args.seeds).split(",")) else 1


if __name__ == "__main__":
    raise SystemExit(main())
