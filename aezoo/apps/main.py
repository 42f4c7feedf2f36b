"""aezoo: the one installed command, with a subcommand per job.

    aezoo --help
    aezoo train --model conv --dataset mnist --out runs/mnist_conv
    aezoo denoise denoise --model denoise_gray photo.png --out clean/

One command rather than one per job: `aezoo --help` lists every job, and no name clashes
with another program on the user's path (`compress` is a Unix command).  Each subcommand
is `aezoo.apps.<module>.main(argv)`, which `applications/<job>.py` also calls.
"""

from __future__ import annotations

import atexit
import importlib
import os
import signal
import sys
from collections.abc import Sequence

from aezoo._version import __version__

# subcommand -> (module of aezoo.apps, one line for `aezoo --help`)
COMMANDS = {
    "train": ("train", "train any model of the zoo on your data"),
    "denoise": ("denoise", "train denoisers, denoise photos, measure against BM3D"),
    "compress": ("compress", "train codecs, compress images to .aez files and back"),
    "anomalies": ("anomalies", "train anomaly detectors and score examples"),
    "explore": ("explore", "map, walk and probe an autoencoder's latent space"),
    "generate": ("generate", "draw samples, interpolations and traversals of a VAE or VQ-VAE"),
    "export": ("export", "export a trained model as a SavedModel for TF Serving"),
    "presets": ("presets", "list the pretrained presets that ship with aezoo"),
}


def usage() -> str:
    lines = [f"usage: aezoo COMMAND [options]   (aezoo {__version__})", "",
             "A Keras 3 model zoo of autoencoders.", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`aezoo COMMAND --help` describes each."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "--version"):
        try:
            print(usage() if argv[:1] != ["--version"] else f"aezoo {__version__}", flush=True)
        except BrokenPipeError:
            from aezoo.apps import cli

            return cli.reader_gone()
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"aezoo: error: no command {argv[0]!r}; the commands are "
              f"{', '.join(COMMANDS)} (aezoo --help)", file=sys.stderr)
        return 2
    module = importlib.import_module(f"aezoo.apps.{COMMANDS[argv[0]][0]}")
    return module.main(argv[1:])


def console() -> None:
    """The `aezoo` script and `python -m aezoo`: `main()`, then the process's exit.

    Python's own exit, once TensorFlow is loaded, spends a second collecting its objects
    (1.0-1.2 s on 2 cores, against 0.1 s without), after every output is written: a
    command other than a training runs the exit functions (TensorFlow's delete its
    temporary files) and ends at once instead.  A training keeps the normal exit, in which
    its cluster's collectives and TensorBoard's writers shut down; a SIGTERM then, when its
    run is saved, ends it with the command's status, not 143.
    """
    argv = sys.argv[1:]
    status = main(argv)
    if "tensorflow" not in sys.modules or _trains(argv):
        # The command's work is saved: a SIGTERM during the exit ends it with its status.
        signal.signal(signal.SIGTERM, lambda *_: os._exit(status))
        sys.exit(status)
    atexit._run_exitfuncs()  # (TensorFlow's: it deletes the files AutoGraph wrote in /tmp)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # (a reader gone: cli.reader_gone's case)
            pass
    os._exit(status)


def _trains(argv: Sequence[str]) -> bool:
    """`aezoo train ...`, or the `train` action of another command."""
    return argv[:1] == ["train"] or argv[1:2] == ["train"]


if __name__ == "__main__":
    console()
