"""The one atomic-write helper (sonotok.data.atomic) and that the package's writers use it."""

import re
from pathlib import Path

import pytest

from sonotok.data.atomic import atomic_dir, atomic_path, atomic_write_bytes, atomic_write_text

PKG = Path(__file__).resolve().parents[2] / "sonotok"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    p = atomic_write_text(tmp_path / "a.json", "old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(p) as tmp:
            Path(tmp).write_text("half")
            raise RuntimeError("boom")
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.json"]
    atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"new" and oct(p.stat().st_mode & 0o777) == "0o644"


def test_the_temporary_name_is_the_one_stale_temp_clean_up_knows(tmp_path):
    from sonotok.tokenizer.manifest import remove_stale_temps

    with atomic_path(tmp_path / "sub" / "x.npy") as tmp:
        assert re.fullmatch(r"\.x\.npy\..+\.tmp", Path(tmp).name)
        assert remove_stale_temps(tmp_path) == 1  # what a kill at this point would leave behind
        Path(tmp).write_bytes(b"ok")


def test_atomic_dir_replaces_a_directory_whole_or_not_at_all(tmp_path):
    out = tmp_path / "model"
    with atomic_dir(out) as d:
        (d / "a").write_text("1")
    with pytest.raises(ValueError):
        with atomic_dir(out) as d:
            (d / "b").write_text("2")
            raise ValueError
    assert sorted(p.name for p in out.iterdir()) == ["a"]
    with atomic_dir(out) as d:
        (d / "b").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


# the writers the review found with their own copy of the temp-file-and-rename dance (issue 13)
WRITERS = ["tokenizer/formats.py", "data/audio.py", "data/sources.py", "export/torchscript.py",
           "export/torch_export.py", "model_io.py"]


@pytest.mark.parametrize("rel", WRITERS)
def test_writers_use_the_one_helper(rel):
    src = (PKG / rel).read_text()
    own = [pat for pat in ("os.replace(", "mkstemp(", "mkdtemp(", ".rename(") if pat in src]
    assert not own, f"sonotok/{rel} writes atomically by hand ({own}); use sonotok.data.atomic"
    assert "sonotok.data.atomic" in src
