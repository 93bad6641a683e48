"""The package installs from a wheel with its configs, and the console script is useful."""

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    wheels = list(out.glob("sonotok-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_ships_the_config_tree(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for required in ("sonotok/conf/train.yaml", "sonotok/conf/experiment/tiny.yaml",
                     "sonotok/conf/quantizer/rvq.yaml", "sonotok/conf/discriminator/mpd_msstft.yaml"):
        assert required in names, f"{required} missing from the wheel"
    assert not any(n.startswith(("tests/", "conf/")) for n in names)


def test_configs_compose_from_the_installed_wheel(wheel, tmp_path):
    """Unpack the wheel as an install (no clone around) and compose + build a preset from it."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    deps = sysconfig.get_paths()["purelib"]
    code = (
        "import sys; sys.path[:0] = [sys.argv[1]]; sys.path.append(sys.argv[2])\n"
        "import sonotok\n"
        "assert sonotok.__file__.startswith(sys.argv[1]), sonotok.__file__\n"
        "from sonotok.training.train import compose_config, build_module\n"
        "m = build_module(compose_config(['experiment=hificodec_grvq_16k']))\n"
        "print('OK', m.codec.num_codebooks, m.codec.frame_rate)\n"
    )
    # -S: no site processing, so the editable install of the clone is not on the path
    r = subprocess.run([sys.executable, "-S", "-c", code, str(site), deps], capture_output=True, text=True,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "OK 4 50.0" in r.stdout


def test_console_script_help_lists_commands():
    r = subprocess.run([sys.executable, "-m", "sonotok.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    for cmd in ("train", "corpus", "eval", "demo"):
        assert cmd in r.stdout
    assert "examples:" in r.stdout


def test_unknown_command_fails():
    r = subprocess.run([sys.executable, "-m", "sonotok.cli", "no-such-cmd"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
