"""Fixed mixture sets on disk (``sonotok corpus mixtures``): 2- or 3-speaker mixtures of different speakers
of one corpus split, written in the Libri2Mix layout (``mix/ s1/ s2/ [s3/] noise/``) plus ``mixtures.jsonl``
(one row per mixture: the files, the speakers, the recipe), reproducible from the seed.

The default seed (1234) over the ``test`` split is the held-out evaluation set; training draws fresh
mixtures on the fly with :class:`sonotok.data.mixtures.MixtureDataset`. The written folder reads back with
:class:`sonotok.data.mixtures.MixtureFolderDataset` (``sonotok separation-eval --data <folder>``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sonotok.data.atomic import atomic_dir
from sonotok.data.audio import save_audio
from sonotok.data.corpus.sources import CorpusError
from sonotok.data.sources import read_jsonl, write_jsonl

__all__ = ["write_mixture_set"]


def write_mixture_set(
    corpus: str | os.PathLike,
    out_dir: str | os.PathLike,
    split: str = "test",
    num_sources: int = 2,
    sample_rate: int = 8000,
    count: int = 100,
    seed: int = 1234,
    segment_seconds: float = 4.0,
    noise_prob: float = 0.0,
    reverb_prob: float = 0.0,
    verbose: bool = False,
) -> Path:
    """Write ``count`` mixtures of ``num_sources`` speakers from ``<corpus>/<split>.jsonl``.

    Unchanged sets are not rewritten (the recipe list is compared); a changed set replaces the folder whole.

    Args:
        corpus: corpus folder (or a split manifest ``.jsonl``).
        split: which split's speakers to mix (``train``, ``valid`` or ``test``).
        sample_rate: 8000 uses every row; higher rates only ``wideband`` rows.
        noise_prob / reverb_prob: share of mixtures with music/noise, of sources with room reverberation.

    Returns:
        the folder written (``out_dir``).

    Raises:
        CorpusError: the manifest is missing or has too few speakers.
    """
    from sonotok.data.mixtures import MixtureDataset, MixtureError

    c = Path(corpus)
    manifest = c if c.suffix == ".jsonl" else c / f"{split}.jsonl"
    if not manifest.is_file():
        raise CorpusError(f"{manifest}: no such manifest (build the corpus with: sonotok corpus build --out {c})")
    try:
        ds = MixtureDataset(manifest, num_sources, sample_rate, segment_seconds, length=count, seed=seed, fixed=True,
                            noise_prob=noise_prob, reverb_prob=reverb_prob)
    except MixtureError as e:
        raise CorpusError(str(e)) from None
    out = Path(out_dir)
    recipes = [ds.describe(i) for i in range(count)]
    index = out / "mixtures.jsonl"
    settings = {"manifest": str(manifest.resolve()), "num_sources": num_sources, "sample_rate": sample_rate,
                "seed": seed, "segment_seconds": segment_seconds, "noise_prob": noise_prob, "reverb_prob": reverb_prob}
    if index.is_file():
        old = read_jsonl(index)
        if [r.get("recipe") for r in old] == json.loads(json.dumps(recipes)) and all(
            r.get("settings") == settings and (out / r["mix"]).is_file() for r in old
        ):
            if verbose:
                print(f"{out}: {count} mixtures up to date")
            return out
    rows = []
    with atomic_dir(out) as tmp:  # the whole set is replaced: no mixture of an older recipe stays behind
        for i, recipe in enumerate(recipes):
            item = ds.render(recipe)
            name = f"{i:05d}_" + "_".join(recipe["speakers"]) + ".wav"
            row = {"id": f"{i:05d}", "mix": f"mix/{name}", "speakers": recipe["speakers"], "settings": settings,
                   "recipe": recipe, "duration": segment_seconds, "sample_rate": sample_rate}
            save_audio(tmp / "mix" / name, item["mix"], sample_rate, subtype="FLOAT")
            for k in range(num_sources):
                save_audio(tmp / f"s{k + 1}" / name, item["sources"][k: k + 1], sample_rate, subtype="FLOAT")
                row[f"s{k + 1}"] = f"s{k + 1}/{name}"
            save_audio(tmp / "noise" / name, item["noise"], sample_rate, subtype="FLOAT")
            row["noise"] = f"noise/{name}"
            row["path"] = row["mix"]
            rows.append(row)
        write_jsonl(tmp / "mixtures.jsonl", rows)
    if verbose:
        print(f"{out}: wrote {count} {num_sources}-speaker mixtures at {sample_rate} Hz from {manifest}")
    return out
