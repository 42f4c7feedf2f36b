"""What every aezoo command shares: a quiet TensorFlow start-up, one-line errors, and the
model options, which come from the builders' own signatures in `aezoo.MODELS`.

Import it first in a script: with `aezoo` (which loads TensorFlow quietly) it probes the
devices with TensorFlow's CUDA notices kept off the terminal, so a user sees only what aezoo
says.  Set TF_CPP_MIN_LOG_LEVEL=0 to see everything.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aezoo  # loads TensorFlow quietly
from aezoo._quiet import stderr_captured

with stderr_captured():
    import tensorflow as tf

    tf.config.list_physical_devices()  # CUDA probing prints here when there is no GPU

# Errors a user causes (bad arguments, missing or unreadable files); scripts print them as
# one line and exit with status 2.  Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line ("prog: error: ...") and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def guarded(main: Callable[[Sequence[str] | None], int | None]):
    """Wraps a script's `main(argv)`: user errors become one line on stderr and status 2.

    The wrapped `main` returns the exit status instead of raising `SystemExit`, so tests
    call `main([...])` and check what it returns.
    """

    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        prog = program_name()
        try:
            return main(argv) or 0
        except SystemExit as exit_:  # argparse's --help and usage errors
            return exit_.code if isinstance(exit_.code, int) else 2
        except USER_ERRORS as error:
            print(f"{prog}: error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130

    return wrapper


def output_paths(inputs: Sequence[Path], out: Path, suffix: str, overwrite: bool) -> list[Path]:
    """One output per input file, `out/<its stem><suffix>`, all checked before an
    application writes anything.

    Raises:
        FileNotFoundError: an input that is not a file.
        ValueError: two inputs with the same stem, or an output that is one of the inputs
            (refused even with `overwrite`).
        FileExistsError: an existing output, unless `overwrite`.
    """
    resolved = {path.resolve() for path in inputs}
    targets: list[Path] = []
    taken: dict[Path, Path] = {}
    for path in inputs:
        if not path.is_file():
            raise FileNotFoundError(f"No such file: {path}")
        target = out / f"{path.stem}{suffix}"
        if target in taken:
            raise ValueError(f"{taken[target]} and {path} would both be written to {target}.")
        if target.resolve() in resolved:
            raise ValueError(f"Writing {target} would overwrite an input; choose another --out.")
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target} exists; remove it or pass --overwrite to replace it.")
        taken[target] = path
        targets.append(target)
    return targets


def program_name() -> str:
    """How the user started this program: "python -m aezoo.train" or "denoise.py"."""
    script = Path(sys.argv[0])
    if script.parent.name == "aezoo":
        return f"python -m aezoo.{script.stem}"
    return script.name


# --------------------------------------------------------------- model options

# Builder arguments that commands set themselves rather than take from the user.
_NOT_OPTIONS = ("input_shape", "name")


def _option_type(default: Any) -> dict[str, Any]:
    if isinstance(default, bool):
        return {"type": _boolean, "metavar": "true|false"}
    if isinstance(default, tuple):
        return {"type": int, "nargs": "+", "metavar": "N"}
    if isinstance(default, int):
        return {"type": int, "metavar": "N"}
    if isinstance(default, float):
        return {"type": float, "metavar": "X"}
    return {"type": _none_or_str, "metavar": "NAME"}


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _none_or_str(text: str) -> str | None:
    return None if text.lower() == "none" else text


def add_model_arguments(parser: argparse.ArgumentParser, default_model: str) -> None:
    """Adds `--model NAME` and one option per builder argument of any model in the table.

    A `default_model` outside the table (such as "auto", for a command that picks the model
    from the data) is one more choice.
    """
    extra = [] if default_model in aezoo.MODELS else [default_model]
    parser.add_argument(
        "--model",
        default=default_model,
        choices=sorted(aezoo.MODELS) + extra,
        help=f"model of the zoo (default: {default_model})",
    )
    group = parser.add_argument_group(
        "model options", "builder arguments; each applies to the models whose builder takes it"
    )
    seen = set()
    for model_name, builder in aezoo.MODELS.items():
        for param in inspect.signature(builder).parameters.values():
            if param.name in _NOT_OPTIONS or param.name in seen:
                continue
            seen.add(param.name)
            users = [m for m, b in aezoo.MODELS.items() if param.name in inspect.signature(b).parameters]
            group.add_argument(
                "--" + param.name.replace("_", "-"),
                dest=f"model_{param.name}",
                default=argparse.SUPPRESS,  # absent unless given: the builder's default holds
                help=f"({', '.join(users)}; default {param.default!r})",
                **_option_type(param.default),
            )


def model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The builder arguments given on the command line, checked against `args.model`."""
    params = inspect.signature(aezoo.MODELS[args.model]).parameters
    kwargs = {}
    for dest, value in vars(args).items():
        if not dest.startswith("model_"):
            continue
        name = dest[len("model_"):]
        if name not in params:
            raise ValueError(f"--{name.replace('_', '-')} does not apply to model '{args.model}'.")
        kwargs[name] = tuple(value) if isinstance(value, list) else value
    return kwargs
