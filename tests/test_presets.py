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
# Post-filters whose check decodes a codec preset's files through the filter that the
# codec's own card names: the computation of that codec's check (`checks.measure` opens
# `open_codec(codec, filter)` for both), measured once for both (3 s each here).
OWN_FILTER = {name: card["check"]["codec"] for name, card in presets.PRESETS.items()
              if card["check"]["kind"] == "postfilter"
              and presets.PRESETS[card["check"]["codec"]].get("postfilter") == name}


@pytest.fixture(scope="module")
def measured_in_a_fresh_process():
    """Every preset's check, measured by one new process (as a user's would: it loads the
    presets from the package's files, offline); one process for all saves a TensorFlow
    start per preset."""
    measured = [name for name in NAMES if name not in OWN_FILTER]
    script = (
        "import json\n"
        "from pathlib import Path\n"
        "from aezoo.presets import checks\n"
        "results = {}\n"
        f"for name in {measured!r}:\n"
        "    try:\n"
        f"        results[name] = checks.measure(name, Path({str(SHARED_DATA)!r}))\n"
        "    except Exception as error:  # the other presets are still measured\n"
        "        results[name] = f'{type(error).__name__}: {error}'\n"
        "print(json.dumps(results))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    for name, codec_name in OWN_FILTER.items():  # the same decoding as the codec's check
        found = results[codec_name]
        results[name] = {"psnr": found["psnr"]} if isinstance(found, dict) else found
    return results


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
    for key in (*presets.CARD_FIELDS, "sha256"):
        assert card.get(key), (name, key)
    assert set(card["sha256"]) == {"run.json", "weights.npz"}
    presets.folder(name)  # the files pass their checksums


@pytest.mark.parametrize("name", [n for n in NAMES if "postfilter" in presets.PRESETS[n]])
def test_a_codec_card_names_a_post_filter_preset(name):
    """The filter a codec card names (what `--postfilter auto` runs) is a preset trained as
    a post-filter."""
    info = json.loads((presets.folder(presets.PRESETS[name]["postfilter"])
                       / "run.json").read_text())
    assert info["task"] == "compress" and info["application"]["role"] == "postfilter"


def test_a_codec_preset_given_by_its_folder_keeps_its_post_filter(tmp_path):
    """`--model codec_0.01` and `--model path/to/presets/codec_0.01` (or a copy of that
    folder) are the same preset: the same post-filter, by default."""
    from aezoo import codec

    name = "codec_0.01"
    copy = shutil.copytree(presets.folder(name), tmp_path / "mine")
    expected = presets.PRESETS[name]["postfilter"]
    for source in (name, str(presets.folder(name)), copy):
        assert codec.open_codec(source).postfilter_name == expected, source


@pytest.mark.parametrize("name", [n for n in NAMES
                                  if presets.PRESETS[n]["check"]["kind"] == "compress"])
def test_a_codec_card_holds_the_fingerprint_its_files_carry(name):
    """`decompress` with no --model finds a file's preset by this card field: it must be
    the 8 bytes that the preset writes into its files' headers (after magic, version,
    channels, flags, the image's size and the latent's), read here from a file's bytes."""
    import numpy as np

    from aezoo import codec

    blob = codec.open_codec(name, "none").compress(np.full((20, 24, 3), 128, np.uint8))
    assert blob[:4] == b"AEZ\x1a"
    assert blob[22:30].hex() == presets.PRESETS[name]["fingerprint"]
    assert presets.codec_for(blob[22:30]) == name


def test_every_post_filter_preset_is_named_by_a_codec_card():
    named = {card["postfilter"] for card in presets.PRESETS.values() if "postfilter" in card}
    filters = {n for n in NAMES if presets.PRESETS[n]["check"]["kind"] == "postfilter"}
    assert named == filters


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


def test_packing_a_round_writes_the_presets_own_check_and_the_cost_of_float16(
        codec_run, tmp_path, monkeypatch):
    """`benchmarks/presets.py pack --compare`, as a codec round is packed: a new preset from
    a card, then another round from the preset's own card.  The card's check must be what
    the packed (float16) preset measures, recomputed here from its files with numpy."""
    import hashlib
    import importlib.util

    import numpy as np

    from aezoo import codec, data, runs

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_presets",
                                                  ROOT / "benchmarks" / "presets.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(presets, "PRESET_DIR", tmp_path)
    monkeypatch.setitem(presets.PRESETS, "tiny_codec", {})  # removed again after the test
    card = {"summary": "s", "task": "compress", "model": "m", "data": "d",
            "trained_with": "aezoo compress train A", "training_time": "1 minute",
            "machine": "2 CPU cores", "headline": "h", "figures": ["f"], "measured_with": "w",
            "check": {"kind": "compress", "images": "raw/set12", "files": ["01.png", "02.png"],
                      "bpp": 0.0, "psnr": 0.0}}
    (tmp_path / "card.json").write_text(json.dumps(card))
    assert bench.main(["pack", "tiny_codec", str(codec_run), "--card",
                       str(tmp_path / "card.json"), "--compare"]) == 0
    assert bench.main(["pack", "tiny_codec", str(codec_run), "--compare",
                       "--then", "round 2: aezoo compress train B",
                       "--time", "round 2: 2 minutes"]) == 0

    written = json.loads((tmp_path / "tiny_codec" / "card.json").read_text())
    assert written["trained_with"] == "aezoo compress train A; then round 2: aezoo compress train B"
    assert written["training_time"] == "1 minute; round 2: 2 minutes"
    for file, digest in written["sha256"].items():
        assert hashlib.sha256((tmp_path / "tiny_codec" / file).read_bytes()).hexdigest() == digest
    storage = [line for line in written["figures"] if line.startswith("float16 storage")]
    assert written["figures"][0] == "f" and len(storage) == 1  # replaced, not added again

    packer = codec.Codec(runs.load_run(tmp_path / "tiny_codec").model)
    bits, errors = [], []
    for file in ("01.png", "02.png"):
        image = data.read_image(SHARED_DATA / "raw" / "set12" / file, 1)
        blob = packer.compress(image)
        bits.append(8 * len(blob) / image.size)
        decoded = packer.decompress(blob).astype(np.float64)
        errors.append(10 * np.log10(255.0**2 / np.mean((decoded - image) ** 2)))
    assert written["check"]["bpp"] == pytest.approx(np.mean(bits), rel=1e-5)
    assert written["check"]["psnr"] == pytest.approx(np.mean(errors), rel=1e-5)
    assert f"gives {np.mean(bits):.4f} bpp and {np.mean(errors):.3f} dB" in storage[0]
    # the fingerprint the packed (float16) preset's files carry (header bytes 22-29)
    assert written["fingerprint"] == packer.compress(image)[22:30].hex()
    assert "01 and 02" in storage[0] and "for the float32 run" in storage[0]
