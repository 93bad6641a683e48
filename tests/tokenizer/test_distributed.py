"""Lightning tokenization: the prediction writer, rank manifests and their merge; 2 CPU processes (gloo)."""

import json

import pytest
import soundfile as sf

from sonotok.tokenizer import tokenize
from sonotok.tokenizer.distributed import merge_manifests, tokenize_distributed


def _rows(out):
    return {r["rel"]: r for r in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}


def _outputs(out):
    rows = _rows(out)
    return {r: (row["status"], row.get("sha256"), row.get("reason")) for r, row in rows.items()}


@pytest.fixture()
def inputs(audio_dir, tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00")
    return [audio_dir, tmp_path / "bad.wav"]


def test_single_process_predict_matches_tokenize(codec, inputs, tmp_path):
    ref, dist = tmp_path / "ref", tmp_path / "dist"
    tokenize(codec, inputs, ref, batch_size=3, progress=False)
    s = tokenize_distributed(codec, inputs, dist, batch_size=2, accelerator="cpu", devices=1)
    assert (s.written, s.failed) == (6, 1)
    assert _outputs(dist) == _outputs(ref)
    assert not list(dist.glob("manifest.rank*.jsonl"))
    s2 = tokenize_distributed(codec, inputs, dist, batch_size=2, accelerator="cpu", devices=1)
    assert s2.skipped == 6 and s2.written == 0  # resume; the bad file is retried (and fails again)


def test_merge_manifests(tmp_path):
    rows = [
        ("manifest.jsonl", {"rel": "a.wav", "source": "a", "status": "ok", "sha256": "1"}),
        ("manifest.rank0.jsonl", {"rel": "b.wav", "source": "b", "status": "ok", "sha256": "2"}),
        ("manifest.rank1.jsonl", {"rel": "c.wav", "source": "c", "status": "failed", "reason": "empty file"}),
        ("manifest.rank1.jsonl", {"rel": "b.wav", "source": "b", "status": "failed", "reason": "dup"}),
    ]
    for name, row in rows:
        with open(tmp_path / name, "a") as f:
            f.write(json.dumps(row) + "\n")
    with open(tmp_path / "manifest.rank1.jsonl", "a") as f:
        f.write('{"rel": "torn"')  # a line cut by a kill
    merged = merge_manifests(tmp_path)
    assert sorted(merged) == ["a.wav", "b.wav", "c.wav"]
    assert merged["b.wav"]["status"] == "ok"  # a duplicate failure from another rank never hides a success
    assert not list(tmp_path.glob("manifest.rank*"))
    assert sorted(_rows(tmp_path)) == ["a.wav", "b.wav", "c.wav"]


@pytest.mark.slow  # 42 s alone, ~70 s under load: spawning and initialising two gloo processes on 2 cores
def test_two_process_ddp_union_equals_single_process(tiny_model_dir, inputs, tmp_path):
    import sonotok

    codec = sonotok.load(tiny_model_dir)
    ref, dist = tmp_path / "ref", tmp_path / "dist"
    tokenize(codec, inputs, ref, batch_size=4, progress=False)
    s = tokenize_distributed(codec, inputs, dist, batch_size=2, accelerator="cpu", devices=2, strategy="ddp_spawn")
    assert (s.written, s.failed) == (6, 1)
    assert _outputs(dist) == _outputs(ref)
    files = lambda d: sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert files(dist) == files(ref)


def test_cli_distributed_flag(tiny_model_dir, audio_dir, tmp_path):
    from sonotok.cli import main

    out = tmp_path / "c"
    assert main(["tokenize", "-m", str(tiny_model_dir), str(audio_dir), "-o", str(out), "--distributed",
                 "--accelerator", "cpu", "--devices", "1", "--no-progress"]) == 0
    assert len(_rows(out)) == 6 and all(r["status"] == "ok" for r in _rows(out).values())


class _FakeStrategy:
    """Stands for a DDP strategy: ``broadcast`` returns rank 0's object, ``barrier`` is recorded."""

    def __init__(self, rank0_obj=None):
        self.rank0_obj = rank0_obj
        self.calls = []
        import torch

        self.root_device = torch.device("cpu")

    def broadcast(self, obj, src=0):
        self.calls.append(("broadcast", src))
        return obj if self.rank0_obj is None else self.rank0_obj

    def barrier(self, name=None):
        self.calls.append(("barrier", name))


class _FakeTrainer:
    def __init__(self, rank, strategy, module):
        self.is_global_zero = rank == 0
        self.strategy = strategy
        self.lightning_module = module


def _leftovers(out):
    """What a killed run leaves: a rank manifest with a finished item, a half-written temp file."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.rank1.jsonl").write_text(json.dumps({"rel": "x.wav", "source": "x", "status": "failed",
                                                          "reason": "killed"}) + "\n")
    (out / ".f0.npy.abc.tmp").write_bytes(b"half")


def test_only_rank_zero_merges_cleans_and_decides_behind_a_barrier(codec, audio_dir, tmp_path):
    from sonotok.tokenizer.distributed import RunData, TokenizeModule
    from sonotok.tokenizer.inputs import collect_inputs

    out = tmp_path / "out"
    _leftovers(out)
    items = collect_inputs([audio_dir])
    module = TokenizeModule(codec)
    # rank 1 touches nothing: it takes rank 0's list and run id from the broadcast, after the barrier
    rank0_todo, rank0_id = items[::-1], "rank0-run"
    other = RunData(out, items, codec.model_id, codec.num_codebooks, codec.sample_rate, run_id="rank1-run")
    strat1 = _FakeStrategy((rank0_todo, rank0_id))
    other.trainer = _FakeTrainer(1, strat1, module)
    other.setup("predict")
    assert (out / "manifest.rank1.jsonl").exists() and (out / ".f0.npy.abc.tmp").exists()
    assert other.todo == rank0_todo and other.run_id == "rank0-run"
    assert [c[0] for c in strat1.calls] == ["broadcast", "barrier"]
    # rank 0 folds in the rank file, removes the temp, and sorts what is left by duration
    zero = RunData(out, items, codec.model_id, codec.num_codebooks, codec.sample_rate)
    strat0 = _FakeStrategy()
    zero.trainer = _FakeTrainer(0, strat0, module)
    zero.setup("predict")
    assert not (out / "manifest.rank1.jsonl").exists() and not (out / ".f0.npy.abc.tmp").exists()
    assert json.loads((out / "manifest.jsonl").read_text())["reason"] == "killed"
    durations = [sf.info(it.source).duration for it in zero.todo]
    assert sorted(it.rel for it in zero.todo) == sorted(it.rel for it in items) and durations == sorted(durations)
    assert [c[0] for c in strat0.calls] == ["broadcast", "barrier"]


def test_distributed_rows_carry_the_run_and_variant(codec, audio_dir, tmp_path):
    out = tmp_path / "d"
    s = tokenize_distributed(codec, [audio_dir], out, batch_size=2, accelerator="cpu", devices=1)
    rows = _rows(out)
    assert s.written == 6 and {(r["device"], r["precision"]) for r in rows.values()} == {("cpu", "float32")}
    assert len({r["run"] for r in rows.values()}) == 1
    again = tokenize_distributed(codec, [audio_dir], out, batch_size=2, accelerator="cpu", devices=1)
    assert (again.skipped, again.written) == (6, 0)  # nothing to do: no processes started
