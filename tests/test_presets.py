"""Presets: every one loads offline in a fresh process, its files pass their checksums, and
its card's check reproduces the card's figure; damaged presets give one line from every
command; a non-editable install finds them."""

import json
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, SHARED_DATA

from aezoo import presets

# The figures of a check are reproduced within these (the check runs the same computation
# on the same data: only float round-off across processes and builds may differ; for a
# codec, a float analysis transform that rounds a latent the other way on another CPU
# changes a file by a few bytes: 1e-3 bpp is 48 bytes of a Kodak image).
TOLERANCE = {"psnr": 0.05, "bpp": 1e-3, "roc_auc": 1e-3, "mse": 1e-5, "nll": 0.05}
NAMES = sorted(presets.PRESETS)


@pytest.fixture(scope="module")
def measured_in_a_fresh_process():
    """Every preset's check, measured by one new process (as a user's would: it loads the
    presets from the package's files, offline); one process for all saves a TensorFlow
    start per preset."""
    script = (
        "import json\n"
        "from pathlib import Path\n"
        "from aezoo.presets import checks\n"
        "results = {}\n"
        f"for name in {NAMES!r}:\n"
        "    try:\n"
        f"        results[name] = checks.measure(name, Path({str(SHARED_DATA)!r}))\n"
        "    except Exception as error:  # the other presets are still measured\n"
        "        results[name] = f'{type(error).__name__}: {error}'\n"
        "print(json.dumps(results))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", NAMES)
def test_a_preset_reproduces_its_cards_figure_in_a_fresh_process(name,
                                                                measured_in_a_fresh_process):
    check = presets.PRESETS[name]["check"]
    measured = measured_in_a_fresh_process[name]
    assert isinstance(measured, dict) and measured, (name, measured)
    for key, value in measured.items():
        assert value == pytest.approx(check[key], abs=TOLERANCE[key]), (name, key)


@pytest.mark.parametrize("name", NAMES)
def test_every_card_says_what_a_user_needs(name):
    card = presets.PRESETS[name]
    for key in ("summary", "task", "model", "data", "trained_with", "training_time",
                "machine", "headline", "figures", "measured_with", "check", "sha256"):
        assert card.get(key), (name, key)
    assert set(card["sha256"]) == {"run.json", "weights.npz"}
    presets.folder(name)  # the files pass their checksums


def test_all_presets_together_stay_under_60_megabytes():
    assert sum(presets.size(name) for name in NAMES) < 60 * 2**20


@pytest.fixture
def damaged(tmp_path, monkeypatch):
    """A copy of a preset whose weights fail their checksum, and one missing its weights."""
    if not NAMES:
        pytest.skip("no presets")
    name = "conv_mnist" if "conv_mnist" in NAMES else NAMES[0]
    for kind in ("corrupted", "missing"):
        shutil.copytree(presets.PRESET_DIR / name, tmp_path / kind)
        monkeypatch.setitem(presets.PRESETS, kind, presets.PRESETS[name])
    weights = tmp_path / "corrupted" / "weights.npz"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    (tmp_path / "missing" / "weights.npz").unlink()
    monkeypatch.setattr(presets, "PRESET_DIR", tmp_path)
    return tmp_path


@pytest.mark.parametrize("kind,words", [("corrupted", "fails its SHA-256 checksum"),
                                        ("missing", "is incomplete")])
def test_a_damaged_preset_is_one_line_from_every_command(damaged, kind, words, tmp_path,
                                                          capsys):
    from aezoo.apps import anomalies, compress, denoise, explore, export

    image = SHARED_DATA / "raw" / "set12" / "01.png"
    commands = [
        (export.main, [kind, str(tmp_path / "export")]),
        (denoise.main, ["denoise", "--model", kind, str(image), "--out", str(tmp_path / "d")]),
        (compress.main, ["compress", "--model", kind, str(image), "--out", str(tmp_path / "c")]),
        (anomalies.main, ["score", "--model", kind, "--csv", str(tmp_path / "x.csv"),
                          "--out", str(tmp_path / "a")]),
        (explore.main, ["--model", kind, "--dataset", "mnist", "--out", str(tmp_path / "e")]),
    ]
    (tmp_path / "x.csv").write_text("1,2,3\n4,5,6\n")
    for main, argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err and "Traceback" not in err, err


def test_the_installed_package_finds_its_presets(tmp_path):
    """`pip install .` (not editable) into a folder, used from another directory."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    script = ("import aezoo.presets as p, json; "
              "print(json.dumps({n: p.size(n) for n in p.PRESETS})); "
              "[p.folder(n) for n in p.PRESETS]; print(p.PRESET_DIR)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin"},
                            timeout=120)
    assert result.returncode == 0, result.stderr
    sizes = json.loads(result.stdout.splitlines()[0])
    assert sorted(sizes) == NAMES and all(size > 0 for size in sizes.values())
    assert str(target) in result.stdout.splitlines()[1]
