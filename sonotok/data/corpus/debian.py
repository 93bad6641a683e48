"""Fetch Debian packages into a per-user cache without root: ``apt-get download`` + ``dpkg-deb -x``.

Nothing is installed system-wide and no dependencies are pulled in. The cache (default
``$SONOTOK_CACHE`` or ``~/.cache/sonotok``, folder ``debian/``) holds ``debs/<name>_<version>_<arch>.deb``
and the unpacked tree ``root/<name>/`` (with a ``.complete`` stamp naming the ``.deb`` it came from, so a
half-unpacked tree is redone). When the archive cannot be reached, :func:`fetch_packages` raises
:class:`PackageFetchError` listing every package still missing and the commands that get it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Sequence

from sonotok.data.atomic import atomic_dir
from sonotok.errors import SonotokError

__all__ = ["PackageFetchError", "default_cache_dir", "fetch_packages", "package_root"]


class PackageFetchError(SonotokError):
    """Debian packages that could not be downloaded or unpacked (the message says which and how to get them)."""

    def __init__(self, missing: Sequence[str], reason: str, cache_dir: Path):
        self.missing = list(missing)
        debs = cache_dir / "debs"
        pk = " ".join(self.missing)
        super().__init__(
            f"cannot fetch Debian package(s) {', '.join(self.missing)}: {reason}\n"
            f"  get them on a machine with the Debian archive (no root needed):\n"
            f"    mkdir -p {debs} && cd {debs} && apt-get download {pk}\n"
            f"  or copy their .deb files into {debs}/ and run the command again "
            f"(an `apt-get update` may be needed first)"
        )


def default_cache_dir() -> Path:
    """``$SONOTOK_CACHE/debian`` or ``$XDG_CACHE_HOME/sonotok/debian`` (default ``~/.cache/sonotok/debian``)."""
    base = os.environ.get("SONOTOK_CACHE")
    if base:
        return Path(base) / "debian"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "sonotok" / "debian"


def package_root(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The unpacked tree of a fetched package (``<cache>/root/<name>``; it may not exist yet)."""
    return Path(cache_dir or default_cache_dir()) / "root" / name


def _find_deb(debs: Path, name: str) -> Path | None:
    found = sorted(debs.glob(f"{name}_*.deb"))
    return found[-1] if found else None


def _download(names: Sequence[str], debs: Path) -> str:
    """Run ``apt-get download``; returns its error output ('' on success)."""
    exe = shutil.which("apt-get")
    if exe is None:
        return "apt-get not found (not a Debian/Ubuntu system)"
    debs.mkdir(parents=True, exist_ok=True)
    try:
        # The sandbox user (_apt) often cannot write into a user's cache: download as the caller.
        proc = subprocess.run(
            [exe, "download", "-o", "APT::Sandbox::User=" + _user(), *names],
            cwd=debs,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"apt-get download failed ({e})"
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("E:")] or proc.stderr.splitlines()
        return "apt-get download: " + (" ".join(lines[-3:]).strip() or f"exit status {proc.returncode}")
    return ""


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):  # pragma: no cover - non-POSIX
        return "root"


def _unpack(deb: Path, dest: Path) -> None:
    exe = shutil.which("dpkg-deb")
    if exe is None:
        raise PackageFetchError([deb.name.split("_")[0]], "dpkg-deb not found (package dpkg)", dest.parent.parent)
    try:
        with atomic_dir(dest) as tmp:
            subprocess.run([exe, "-x", str(deb), str(tmp)], check=True, capture_output=True, text=True)
            (tmp / ".complete").write_text(deb.name + "\n")
    except subprocess.CalledProcessError as e:
        raise PackageFetchError(
            [deb.name.split("_")[0]], f"dpkg-deb -x {deb} failed: {e.stderr.strip()[:300]}", dest.parent.parent
        ) from e


def fetch_packages(
    names: Sequence[str],
    cache_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Path]:
    """Make sure each package is downloaded and unpacked in the cache; return ``{name: unpacked root}``.

    Already unpacked packages are not touched (no network access at all when everything is cached).

    Raises:
        PackageFetchError: listing every package that is still missing after one ``apt-get download``.
    """
    cache = Path(cache_dir or default_cache_dir())
    debs = cache / "debs"
    out: dict[str, Path] = {}
    todo: list[str] = []
    for n in dict.fromkeys(names):
        root = package_root(n, cache)
        deb = _find_deb(debs, n)
        stamp = root / ".complete"
        if stamp.is_file() and (deb is None or stamp.read_text().strip() == deb.name):
            out[n] = root
        else:
            todo.append(n)
    need_download = [n for n in todo if _find_deb(debs, n) is None]
    if need_download:
        log(f"  downloading {len(need_download)} Debian package(s) into {debs}: {' '.join(need_download)}")
        err = _download(need_download, debs)
        missing = [n for n in need_download if _find_deb(debs, n) is None]
        if missing:
            raise PackageFetchError(missing, err or "apt-get download produced no .deb file", cache)
    for n in todo:
        deb = _find_deb(debs, n)
        assert deb is not None
        log(f"  unpacking {deb.name}")
        _unpack(deb, package_root(n, cache))
        out[n] = package_root(n, cache)
    return out
