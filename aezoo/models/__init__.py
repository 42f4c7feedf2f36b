"""The zoo: one table of builders, `MODELS`, and the families they come from.

>>> from aezoo.models import MODELS
>>> ae = MODELS["conv"](input_shape=(28, 28, 1), latent_dim=32)
>>> ae.encoder, ae.decoder  # separate keras.Models sharing weights with `ae`

One module per family holds its builders (`_FAMILIES` maps each name to its module), built
on the `Autoencoder` base (`aezoo.models.base`) and aezoo's layers (`aezoo.models.layers`).

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

# The table: name -> the module of aezoo.models that defines a builder of that name, as a
# top-level `def name(...)` whose defaults are literals (`signature` reads them from the
# source, for --help without TensorFlow).  Builders share one vocabulary of keyword arguments
# (input_shape, latent_dim, units | filters, kernel_size, activation, output_activation,
# corruption, corruption_level, name; the compression models add lmbda and hyper_filters).
# Adding a model: docs/development.md has the checklist.
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

    def __init__(self, families: dict[str, str], folder: Path | None = None):
        self._families = dict(families)
        self._folder = Path(__file__).parent if folder is None else folder  # of the sources
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
        without importing TensorFlow (tests check it against `inspect.signature`).

        Raises:
            ValueError: the module has no top-level `def <name>`, or a default that is not
                a literal (the CLI could not show it without running the module).
        """
        path = self._folder / f"{self._families[name]}.py"
        function = next(
            (node for node in ast.parse(path.read_text()).body
             if isinstance(node, ast.FunctionDef) and node.name == name), None)
        if function is None:
            raise ValueError(f"{path} has no top-level builder `def {name}(...)`, which "
                             f"aezoo.models._FAMILIES promises.")
        args = function.args
        positional = [*args.posonlyargs, *args.args]
        defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
        params = [(arg, default, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                  for arg, default in zip(positional, defaults)]
        params += [(arg, default, inspect.Parameter.KEYWORD_ONLY)
                   for arg, default in zip(args.kwonlyargs, args.kw_defaults)]

        def literal(arg: ast.arg, default: ast.expr | None) -> Any:
            if default is None:
                return inspect.Parameter.empty
            try:
                return ast.literal_eval(default)
            except ValueError:
                raise ValueError(
                    f"{path}:{default.lineno}: the default of `{arg.arg}` in builder `{name}` "
                    f"must be a literal ({ast.unparse(default)!r} is not): the CLI reads "
                    "defaults without importing the module.") from None

        return inspect.Signature([
            inspect.Parameter(arg.arg, kind, default=literal(arg, default))
            for arg, default, kind in params
        ])


MODELS = ModelTable(_FAMILIES)


def __getattr__(name: str):
    # `aezoo.models.Autoencoder` without loading TensorFlow at `import aezoo.models`.
    if name == "Autoencoder":
        return importlib.import_module(f"{__name__}.base").Autoencoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
