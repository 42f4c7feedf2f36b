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
# source, for --help without TensorFlow).  Its order is the order of the commands' --model
# choices and of README's table of models.  Adding a model: docs/development.md has the
# checklist.
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


# The vocabulary: every keyword argument of the builders, once, with what it means (the
# commands' --help for its option).  An argument means the same in every builder that takes
# it; each builder's docstring says what it does there.  A builder's new argument needs its
# line here (tests/test_models.py).
ARGUMENTS = {
    "input_shape": "shape of one example, without the batch axis",
    "latent_dim": "size of the code: units of a vector, or channels of a map",
    "units": "hidden layer sizes, from the input towards the code; the decoder mirrors them",
    "filters": "channels of the levels, from the input down; the decoder mirrors them",
    "kernel_size": "size of the convolution kernels",
    "activation": "activation of the hidden layers",
    "output_activation": 'activation of the reconstruction ("auto": the family\'s choice)',
    "corruption": "a noise kind of aezoo.noise put in front of the encoder in training only "
                  "(a denoising autoencoder)",
    "corruption_level": "sigma, fraction or peak of that noise, on the data's scale (0-1 "
                        "for images)",
    "name": "the model's name",
    "latent": '"dense" (a vector code) or "spatial" (a map of latent_dim channels)',
    "downsample": '"stride" (stride-2 convolutions) or "pool" (2x2 max-pooling)',
    "residual": "predict the noise and subtract it from the input",
    "blocks": "residual blocks at each level (0: none)",
    "lmbda": "rate-distortion trade-off: the loss is bits per pixel + lmbda * 255**2 * MSE",
    "hyper_filters": "channels of the hyper-analysis's levels, the last one's the hyper-latent",
    "straight_through": "train the synthesis on rounded latents (mixed quantisation)",
    "likelihood": 'the decoder\'s distribution p(x|z): "bernoulli" or "gaussian"',
    "variance": "the Gaussian likelihood's variance (0: learnt, one a channel)",
    "beta": "weight of the KL term (1: the ELBO; beta-VAE)",
    "binarize": "draw binary training images from the grey levels at every step",
    "importance_samples": "draws of z per example in training (k > 1: the IWAE bound)",
    "codebook_size": "codebook vectors",
    "commitment": "weight of the commitment loss",
    "ema": "update the codebook by moving averages instead of a codebook loss",
    "decay": "the moving averages' decay (with ema)",
    "prior_filters": "channels of the PixelCNN prior",
    "prior_blocks": "gated residual blocks of the PixelCNN prior",
}


class ModelTable(Mapping):
    """name -> builder, importing the builders' modules (and TensorFlow) at first use."""

    def __init__(self, families: dict[str, str], folder: Path | None = None):
        self._families = dict(families)
        self._folder = Path(__file__).parent if folder is None else folder  # of the sources
        self._builders: dict[str, Callable[..., Any]] | None = None

    def __getitem__(self, name: str) -> Callable[..., Any]:
        if name not in self._families:  # (a KeyError, as a dict's; one that says the names)
            raise KeyError(f"There is no model {name!r}; the models are: "
                           f"{', '.join(self._families)}.")
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
        """The builder's keyword arguments, defaults and annotations (as text: the
        builders' modules postpone annotations), read from its source file, so without
        importing TensorFlow (tests check it against `inspect.signature`).

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
            inspect.Parameter(arg.arg, kind, default=literal(arg, default),
                              annotation=inspect.Parameter.empty if arg.annotation is None
                              else ast.unparse(arg.annotation))
            for arg, default, kind in params
        ])


MODELS = ModelTable(_FAMILIES)


def __getattr__(name: str):
    # `aezoo.models.Autoencoder` without loading TensorFlow at `import aezoo.models`.
    if name == "Autoencoder":
        return importlib.import_module(f"{__name__}.base").Autoencoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
