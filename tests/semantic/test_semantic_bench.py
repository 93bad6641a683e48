"""bench/semantic.py: merging per-(design, seed) runs, the paired comparisons and the table; bad design names."""

import pytest

from bench.semantic import _worker_cmd, design_overrides, main, markdown_table, merge_runs


def _run(design, seed, errors, loops):
    per = [{"word_errors": e, "words": 5, "char_errors": 2 * e, "chars": 20, "loop": lp} for e, lp in zip(errors, loops)]
    sc = {"wer": sum(errors) / (5 * len(errors)), "wer_capped": sum(min(e, 5) for e in errors) / (5 * len(errors)),
          "cer_capped": 0.1, "loop_fraction": sum(loops) / len(loops), "per_utterance": per}
    probe = {k: {"r2": 0.1} for k in ("all", "first", "first_emb", "mel")}
    return {"design": design, "seed": seed, "steps": 100 + seed, "train_minutes": 1.0,
            "acoustic": {"pesq_wb": 1.2, "stoi": 0.7}, "probe": probe, "probe_lm": {"all": {"r2": 0.05}},
            "asr": {"flite": sc}}


def test_merge_compares_designs_over_seeds():
    n = 40
    good = [1] * n  # 1 error in 5 words
    bad = [4] * (n // 2) + [12] * (n // 2)  # half are loops with 12 insertions: capped at 5
    runs = [_run("dmcodec", 0, good, [False] * n), _run("dmcodec", 1, [0] * n, [False] * n),
            _run("first_codebook", 0, bad, [False] * (n // 2) + [True] * (n // 2))]
    prepared = {"train_manifest": "m.jsonl", "sets": {"flite": [{"path": f"{i}.wav", "text": "a b c d e"}
                                                                for i in range(n)]},
                "original": {"flite": {"wer": 0.1, "wer_capped": 0.1, "cer_capped": 0.05, "loop_fraction": 0.0}}}
    res = merge_runs(runs, prepared, {"budget_minutes": 1})
    dm, fc = res["designs"]["dmcodec"], res["designs"]["first_codebook"]
    assert dm["seeds"] == [0, 1] and dm["steps"] == 100.5
    assert dm["asr"]["flite"]["wer_capped"] == pytest.approx(0.1)  # (0.2 + 0.0) / 2
    assert dm["asr"]["flite"]["per_seed_wer_capped"] == [pytest.approx(0.2), 0.0]
    assert fc["asr"]["flite"]["wer"] == pytest.approx((4 + 12) / 10) and fc["asr"]["flite"]["wer_capped"] == 0.9
    assert fc["asr"]["flite"]["loop_fraction"] == 0.5
    (c,) = res["comparisons"]
    assert (c["a"], c["b"], c["set"]) == ("dmcodec", "first_codebook", "flite")
    assert c["diff"] == pytest.approx(0.1 - 0.9) and c["hi"] < 0 and c["verdict"] == "lower"
    md = markdown_table(res)
    assert "DM-Codec LM + SM" in md and "original audio (ceiling)" in md and "| lower |" in md
    assert md.count("\n|") >= 5


def test_designs_and_worker_command(tmp_path):
    with pytest.raises(ValueError, match="unknown design 'dmcodex'"):
        design_overrides("dmcodex", "stft")
    with pytest.raises(ValueError, match="unknown design"):
        main(["--designs", "baseline,nope", "--work", str(tmp_path)])

    class A:
        backbone, steps, minutes, threads, per_speaker, probe_files = "stft", 10, 2.0, 1, 1, 2
        corpus, work, override = "data/corpus", str(tmp_path), ["data.balance=null"]

    cmd = _worker_cmd(A, "dmcodec_sm", 3, tmp_path / "o.json")
    assert cmd[cmd.index("--designs") + 1] == "dmcodec_sm" and cmd[cmd.index("--seeds") + 1] == "3"
    assert "--worker" in cmd and cmd[-2:] == ["--override", "data.balance=null"]
