"""Pretrained presets: trained run folders that ship inside the package.

`PRESETS` is the table: name -> model card (task, model, what it is for, training data,
the command that trained it, training time and machine, measured figures and the command
that measured them, and the SHA-256 of each file; a codec's card also names the
`postfilter` preset that its decoded images go through, and the `fingerprint` that its
.aez files carry, by which `decompress` finds the preset that made a file).  A preset is a run folder
(`aezoo/presets/<name>/`, see `aezoo.runs`), so everything that opens a run opens a preset
by its name: `aezoo.load_run("denoise_gray")`, `aezoo.from_preset("denoise_gray")` (the
model), and every command's `--model denoise_gray`.

This module reads no model and imports no TensorFlow: listing presets is instant.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

PRESET_DIR = Path(__file__).parent

# name -> model card; the cards live in the preset folders (card.json) and are read here.
PRESETS: dict[str, dict[str, Any]] = {
    path.name: json.loads((path / "card.json").read_text())
    for path in sorted(PRESET_DIR.iterdir())
    if (path / "card.json").is_file()
}


# What every card holds (tests/test_presets.py asks every preset's card for them;
# benchmarks/presets.py pack refuses a new card without one, then adds sha256 and precision).
CARD_FIELDS = ("summary", "task", "model", "data", "trained_with", "training_time", "machine",
               "headline", "figures", "measured_with", "check")
# A check's kind -> (the card fields it reads, the figures it reproduces, the task of the
# runs it measures), as `aezoo.presets.checks.measure` reads them.
CHECK_FIELDS = {
    "denoise": (("images", "files", "noise", "seed"), ("psnr",), "denoise"),
    "compress": (("images", "files"), ("bpp", "psnr"), "compress"),
    "postfilter": (("images", "files", "codec"), ("psnr",), "compress"),
    "anomaly": (("csv", "label_column", "normal_label", "split", "test_size", "split_seed"),
                ("roc_auc",), "anomaly"),
    "reconstruct": (("dataset", "split"), ("mse",), "train"),
    "likelihood": (("dataset", "split", "k"), ("nll",), "train"),
}


# How a card's fields are labelled where `label` (its name, spaced) would not say enough.
LABELS = {"fingerprint": "fingerprint of its .aez files"}


def label(key: str) -> str:
    """A card field's label in `card` and `markdown`."""
    return LABELS.get(key, key.replace("_", " "))


def folder(name: str) -> Path:
    """The run folder of a preset, its files checked against their SHA-256.

    Raises:
        ValueError: an unknown name, or a missing or corrupted file.
    """
    if name not in PRESETS:
        raise ValueError(f"There is no preset {name!r}; the presets are: "
                         f"{', '.join(PRESETS) or 'none'}.")
    path = PRESET_DIR / name
    for file, digest in PRESETS[name]["sha256"].items():
        if not (path / file).is_file():
            raise ValueError(f"Preset {name!r} is incomplete: {path / file} is missing; "
                             "reinstall aezoo.")
        if hashlib.sha256((path / file).read_bytes()).hexdigest() != digest:
            raise ValueError(f"Preset {name!r} is corrupted: {path / file} fails its SHA-256 "
                             "checksum; reinstall aezoo.")
    return path


def codec_for(fingerprint: bytes) -> str | None:
    """The codec preset whose .aez files carry `fingerprint` (8 bytes of a header), or None:
    a file made by a model trained elsewhere."""
    for name, entry in PRESETS.items():
        if entry.get("fingerprint") == fingerprint.hex():
            return name
    return None


def size(name: str) -> int:
    """Bytes of a preset's files."""
    return sum((PRESET_DIR / name / file).stat().st_size for file in PRESETS[name]["sha256"]
               if (PRESET_DIR / name / file).is_file())


def listing() -> str:
    """One line per preset: name, task, model, size and headline figure."""
    if not PRESETS:
        return "No presets are installed."
    rows = [("name", "task", "model", "size", "headline")]
    for name, card in PRESETS.items():
        rows.append((name, card["task"], card["model"].split()[0], f"{size(name) / 2**20:.1f} MB",
                     card["headline"]))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths))
                     + "  " + row[4] for row in rows)


def card(name: str) -> str:
    """A preset's model card, as text."""
    if name not in PRESETS:
        raise ValueError(f"There is no preset {name!r}; the presets are: "
                         f"{', '.join(PRESETS) or 'none'}.")
    entry = PRESETS[name]
    lines = [f"{name}: {entry['summary']}", ""]
    for key in ("task", "model", "postfilter", "fingerprint", "data", "trained_with",
                "training_time", "machine"):
        if key in entry:
            lines.append(f"{label(key)}: {entry[key]}")
    lines += ["", "measured:"]
    for figure in entry.get("figures", []):
        lines.append(f"  {figure}")
    if "measured_with" in entry:
        lines += ["", f"measured with: {entry['measured_with']}"]
    lines.append(f"size: {size(name) / 2**20:.1f} MB")
    return "\n".join(lines)


def markdown() -> str:
    """Every card as Markdown, for docs/presets.md (written there by `python
    benchmarks/presets.py docs`; tests/test_readme.py checks that it is up to date)."""
    parts = []
    for name, entry in PRESETS.items():
        lines = [f"### `{name}`", "", entry["summary"], ""]
        for key in ("task", "model", "postfilter", "fingerprint", "data", "trained_with",
                    "training_time", "machine", "precision"):
            if key in entry:
                value = entry[key]
                value = f"`{value}`" if key == "trained_with" else value
                lines.append(f"* {label(key)}: {value}")
        lines += ["", "Measured:", ""]
        lines += [f"* {figure}" for figure in entry.get("figures", [])]
        lines += ["", f"Measured with `{entry['measured_with']}`; size "
                  f"{size(name) / 2**20:.1f} MB."]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"
