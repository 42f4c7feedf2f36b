"""The small fixed evaluation on each preset's card (`check`), run by the tests and by
`benchmarks/presets.py check`: it reproduces the card's figure for that subset, so a preset
that loads but computes something else is caught.

| kind | what it measures | card fields |
|---|---|---|
| `denoise` | mean PSNR (dB) of the model on clean images noised with a fixed seed | `images` (a folder of ../shared/data/raw), `files`, `noise`, `seed`, `psnr` |
| `compress` | mean bpp (file bytes) and PSNR (dB) of .aez round trips (decoded through the post-filter the card names, if any) | `images`, `files`, `bpp`, `psnr` |
| `postfilter` | mean PSNR (dB) of a codec preset's .aez round trips decoded through this post-filter | `images`, `files`, `codec`, `psnr` |
| `anomaly` | ROC-AUC on labelled CSV rows | `csv`, `label_column`, `normal_label`, `split`, `test_size`, `split_seed`, `roc_auc` |
| `reconstruct` | mean squared reconstruction error on a tfds split (prepared under `tensorflow_datasets/`) | `dataset`, `split`, `mse` |
| `likelihood` | a VAE's negative IWAE bound (nats) with `k` samples on a tfds split binarised once (seed 0), 100 images a step | `dataset`, `split`, `k`, `nll` |

Paths are relative to a folder of the offline datasets (`../shared/data` beside this
repository, for the tests and benchmarks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from aezoo import anomaly, codec, data, denoise, generative, metrics, noise, runs
from aezoo.presets import PRESETS


def measure(name: str, root: Path, source: str | Path | None = None) -> dict[str, float]:
    """Runs the card's check of preset `name` on the datasets under `root`; returns the
    figures it names.  `source`: a run folder to measure instead of the preset (e.g. the
    float32 run the preset was packed from)."""
    card = PRESETS[name]
    check: dict[str, Any] = card["check"]
    subject = name if source is None else source
    kind = check["kind"]
    if kind in ("compress", "postfilter"):  # `open_codec` loads the runs it needs
        if kind == "compress":
            packer = codec.open_codec(subject, card.get(codec.POSTFILTER, "none"))
        else:
            packer = codec.open_codec(check["codec"], subject)
        bpp, psnr = [], []
        for file in check["files"]:
            image = data.read_image(root / check["images"] / file, packer.channels)
            blob = packer.compress(image)
            bpp.append(8 * len(blob) / (image.shape[0] * image.shape[1]))
            psnr.append(metrics.psnr(image, packer.decompress(blob)))
        if kind == "postfilter":
            return {"psnr": float(np.mean(psnr))}
        return {"bpp": float(np.mean(bpp)), "psnr": float(np.mean(psnr))}
    run = runs.load_run(subject)
    if kind == "denoise":
        channels = int(run.application["channels"])
        images = [data.read_image(root / check["images"] / f, channels) / 255.0
                  for f in check["files"]]
        kind_, level = noise.parse_noise(check["noise"])
        result = denoise.evaluate(run.model, images, (kind_, level), seed=check["seed"],
                                  methods=("aezoo",))
        return {"psnr": result["methods"]["aezoo"]["psnr"]}
    if kind == "anomaly":
        x, labels = data.read_csv(root / check["csv"], check["label_column"])
        examples = anomaly.select_split(
            anomaly.Examples(x, labels, np.arange(len(x))), check["split"],
            test_size=check["test_size"], seed=check["split_seed"])
        is_anomaly = ~anomaly.is_normal(examples.labels, check["normal_label"])
        scores = anomaly.Detector.from_run(run).score(examples.x)
        return {"roc_auc": float(roc_auc_score(is_anomaly, scores))}
    if kind in ("reconstruct", "likelihood"):
        x = data.to_arrays(data.from_tfds(check["dataset"], check["split"],
                                          data_dir=str(root / "tensorflow_datasets")))
        if kind == "likelihood":
            k = int(check["k"])
            bounds = generative.iwae_bound(run.model, x, k=k, batch_size=100, chunk=k,
                                           binarize=True)
            return {"nll": float(-bounds.mean())}
        x_hat = run.model.predict(x, batch_size=256, verbose=0)
        return {"mse": float(np.mean((x_hat - x) ** 2))}
    raise ValueError(f"Preset {name!r} has a check of unknown kind {kind!r}.")
