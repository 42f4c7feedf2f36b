"""The zoo: one table of builders, `MODELS`, and the families they come from.

>>> from aezoo.models import MODELS
>>> ae = MODELS["conv"](input_shape=(28, 28, 1), latent_dim=32)
>>> ae.encoder, ae.decoder  # separate keras.Models sharing weights with `ae`

One module per family (`dense`, `conv`, `denoising`, `sequence`, `compression`, `vae`) holds its
builders, built on the `Autoencoder` base (`aezoo.models.base`) and aezoo's layers
(`aezoo.models.layers`).

`MODELS` knows its names, and each builder's arguments (`MODELS.signature(name)`), without
loading TensorFlow, so that the commands answer `--help` at once.  The first builder taken
from it imports every family, TensorFlow with them, and so registers all of aezoo's Keras
classes: from then on `keras.models.load_model` reads any aezoo `.keras` file with no
`custom_objects` (`aezoo.load_model(path)` does this in one call).
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

# The table: name -> the module of aezoo.models that defines a builder of that name.
# Builders share one vocabulary of keyword arguments (input_shape, latent_dim, units |
# filters, kernel_size, activation, output_activation, corruption, corruption_level, name;
# the compression models add lmbda and hyper_filters).
_FAMILIES = {
    "dense": "dense",
    "conv": "conv",
    "denoising": "denoising",
    "sequence": "sequence",
    "sequence_lstm": "sequence",
    "compression": "compression",
    "compression_hyperprior": "compression",
    "compression_meanscale": "compression",
    "vae": "vae",
    "vae_dense": "vae",
    "vq_vae": "vae",
}


class ModelTable(Mapping):
    """name -> builder, importing the builders' modules (and TensorFlow) at first use."""

    def __init__(self, families: dict[str, str]):
        self._families = dict(families)
        self._builders: dict[str, Callable[..., Any]] | None = None

    def __getitem__(self, name: str) -> Callable[..., Any]:
        if name not in self._families:
            raise KeyError(name)
        return self.load()[name]

    def load(self) -> dict[str, Callable[..., Any]]:
        """Imports every family (and TensorFlow), which registers all of aezoo's classes
        with Keras, so that `keras.models.load_model` reads any aezoo file; returns the
        builders."""
        if self._builders is None:
            self._builders = {
                key: getattr(importlib.import_module(f"{__name__}.{module}"), key)
                for key, module in self._families.items()
            }
        return self._builders

    def modules(self) -> list[str]:
        """The family modules of `aezoo.models`, by name, without importing them."""
        return sorted(set(self._families.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._families  # (Mapping's would import the builders)

    def __iter__(self) -> Iterator[str]:
        return iter(self._families)

    def __len__(self) -> int:
        return len(self._families)

    def __repr__(self) -> str:
        return f"ModelTable({', '.join(self._families)})"

    def signature(self, name: str) -> inspect.Signature:
        """The builder's keyword arguments and defaults, read from its source file, so
        without importing TensorFlow (tests check it against `inspect.signature`)."""
        source = Path(__file__).with_name(f"{self._families[name]}.py").read_text()
        function = next(
            node for node in ast.parse(source).body
            if isinstance(node, ast.FunctionDef) and node.name == name
        )
        args = function.args
        defaults = [None] * (len(args.args) - len(args.defaults)) + list(args.defaults)
        return inspect.Signature([
            inspect.Parameter(
                arg.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=inspect.Parameter.empty if default is None else ast.literal_eval(default),
            )
            for arg, default in zip(args.args, defaults)
        ])


MODELS = ModelTable(_FAMILIES)


def __getattr__(name: str):
    # `aezoo.models.Autoencoder` without loading TensorFlow at `import aezoo.models`.
    if name == "Autoencoder":
        return importlib.import_module(f"{__name__}.base").Autoencoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
