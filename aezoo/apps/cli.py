"""What every aezoo command shares: one-line errors, a quiet TensorFlow start that comes
after the arguments are parsed, and the options of models, data and training, each defined
and checked once.

A command module builds its parser from these pieces, so `--help` answers before TensorFlow
loads (the model options come from `aezoo.MODELS`, which reads its builders' arguments
without importing them).  Its actions import the services they use when they run, after
`start_tensorflow()`.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import inspect
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aezoo._quiet import stderr_captured
from aezoo.models import ARGUMENTS, MODELS

# Errors a user causes (bad arguments, missing, unreadable or damaged files, a full or
# read-only disk); commands print them as one line and exit with status 2.  Anything else is
# a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
               IsADirectoryError, PermissionError)
# OSErrors that mean the disk, not aezoo.
DISK_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG)

# Choices of the shared training options (the same tuples as aezoo.training's, which
# cannot be imported before TensorFlow; a test keeps them equal).
STRATEGIES = ("auto", "cpu", "gpu", "mirrored", "multiworker", "tpu")
MIXED_PRECISION = ("off", "auto", "mixed_float16", "mixed_bfloat16")
LR_SCHEDULES = ("constant", "cosine", "step")


def start_tensorflow() -> None:
    """Imports TensorFlow (and Keras on it) with its start-up notices kept off the terminal.

    TensorFlow's C++ code writes oneDNN, CPU-feature and CUDA-probe notices straight to
    file descriptor 2 when it loads and first looks for devices, before any log level
    applies; they are not actionable, and they would bury the one-line errors of aezoo's
    commands.  Only commands call this, never the library.  TF_CPP_MIN_LOG_LEVEL=0 shows
    everything.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # TensorFlow's C++ info and warning logs: a command says what went wrong in one line.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with stderr_captured():
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices()  # CUDA probing prints here when there is no GPU


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line ("prog: error: ...") and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def guarded(prog: str):
    """Wraps a command's `main(argv)`: user errors become one line on stderr and status 2.

    The wrapped `main` returns the exit status instead of raising `SystemExit`, so tests
    call `main([...])` and check what it returns.
    """

    def decorate(main: Callable[[Sequence[str] | None], int | None]):
        @functools.wraps(main)
        def wrapper(argv: Sequence[str] | None = None) -> int:
            try:
                with terminated_as_interrupted():
                    status = run(argv)
                sys.stdout.flush()  # a reader gone (`| head`) shows here, not at exit
                return status
            except BrokenPipeError:
                return reader_gone()

        def run(argv: Sequence[str] | None) -> int:
            try:
                return main(argv) or 0
            except SystemExit as exit_:  # argparse's --help and usage errors
                if exit_.code is None or isinstance(exit_.code, int):
                    return exit_.code or 0
                print(f"{prog}: error: {exit_.code}", file=sys.stderr)  # sys.exit("why")
                return 2
            except USER_ERRORS as error:
                print(f"{prog}: error: {user_message(error)}", file=sys.stderr)
                return 2
            except OSError as error:
                if error.errno not in DISK_ERRNOS:
                    raise
                where = f" ({error.filename})" if error.filename else ""
                print(f"{prog}: error: {error.strerror}{where}", file=sys.stderr)
                return 2
            except KeyboardInterrupt as interrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 128 + getattr(interrupt, "signum", signal.SIGINT)
            except Exception:
                if not _terminating.is_set():
                    raise
                # What stopping raised instead: TensorFlow gives its own error when the
                # signal comes in an op (a multi-worker chief's collective, which fails as
                # its peer stops: "UnavailableError REPLACED BY Terminated").
                print(f"{prog}: interrupted", file=sys.stderr)
                return 128 + signal.SIGTERM

        return wrapper

    return decorate


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is: `kill`, `timeout` and job schedulers stop a
    command as Ctrl-C does, so its temporary files are deleted and a training keeps its
    backup to resume from (Python's default for SIGTERM ends the process on the spot)."""

    signum = signal.SIGTERM


# Seconds a command has to stop after SIGTERM before it is killed: Python runs its handler
# only between bytecodes, so a main thread stuck in a TensorFlow op (a collective waiting
# for a dead peer, a read that hangs) would never stop, where the default SIGTERM ended it.
TERMINATE_GRACE = 30.0


@contextlib.contextmanager
def terminated_as_interrupted():
    """SIGTERM raises `Terminated` in this block, once (a second SIGTERM, which schedulers
    and `kill` of a process group send, does not cut the cleanup short); a process still
    running `TERMINATE_GRACE` seconds after it is killed.  Only in the main thread, where
    Python runs signal handlers, and only where SIGTERM has its default action (not one
    ignored or handled by the caller, nor inside another such block)."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    _terminating.clear()
    done = threading.Event()
    read, write = os.pipe()
    os.set_blocking(write, False)
    # The signal's number is written to `write` by Python's C-level handler at once, even
    # while the main thread is blocked in an op: the watchdog reads it there.
    earlier = signal.set_wakeup_fd(write)
    if earlier != -1:  # (another wakeup fd in use: no watchdog rather than take it)
        signal.set_wakeup_fd(earlier)
    else:
        threading.Thread(target=_watchdog, args=(read, done), daemon=True).start()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        done.set()
        if earlier == -1:
            signal.set_wakeup_fd(-1)
        os.close(write)  # (the watchdog then reads the end of the pipe, and ends)


# Set once SIGTERM has stopped the command: whatever it raises then is the stop's doing.
_terminating = threading.Event()


def _terminate(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the first one stops the command
    _terminating.set()
    raise Terminated


def reclaim_sigterm() -> None:
    """Puts `terminated_as_interrupted`'s SIGTERM handler back, once a multi-worker strategy
    has started: TensorFlow's runtime then takes SIGTERM for its preemption notifier (in C,
    unknown to Python), which only records it, so a worker sent SIGTERM trained on (measured:
    alive 3 s after; with its handler back, it stopped with status 143)."""
    if signal.getsignal(signal.SIGTERM) is _terminate:
        signal.signal(signal.SIGTERM, _terminate)


def _watchdog(read: int, done: threading.Event) -> None:
    try:
        while True:
            numbers = os.read(read, 64)
            if not numbers:
                return
            if signal.SIGTERM in numbers and not done.wait(TERMINATE_GRACE):
                os.kill(os.getpid(), signal.SIGKILL)
    finally:
        os.close(read)


def user_message(error: Exception) -> str:
    """The line that tells a user what went wrong.  aezoo's own errors say it in words; the
    operating system's (a mkdir under a file, a folder that cannot be made) would read
    "[Errno 17] File exists: 'out'", so they are put in the same words."""
    training = sys.modules.get("aezoo.training")  # (imported by then, if it raised this)
    if training is not None and isinstance(error, training.RunMismatch):
        return mismatch_message(error)
    if not isinstance(error, OSError) or error.errno is None or not error.strerror:
        return str(error)
    where, other = error.filename, error.filename2
    if other is not None:  # os.replace, os.link: both paths
        return f"{error.strerror}: {where} -> {other}"
    if isinstance(error, FileExistsError) and where and os.path.isfile(where):
        return _not_a_folder(where)
    return f"{error.strerror}: {where}" if where else error.strerror


def mismatch_message(error) -> str:
    """`aezoo.training.RunMismatch` in the command line's words: its options, not
    `train`'s arguments ("--filters 32 64", not "model_kwargs.filters=[32, 64]")."""
    started = " ".join(_as_option(name, was) for name, was, _ in error.differences)
    given = " ".join(_as_option(name, now) for name, _, now in error.differences)
    return (f"{error.run} holds a run started with {started}, not {given}: give the options "
            "it was started with to resume it, or another --out.")


def _as_option(name: str, value: Any) -> str:
    """A value of `started.json` as the option that gives it (the builder's options take
    "none", "true" and "false"; the data's flags are there or not)."""
    from aezoo import training

    option = "--" + name.rpartition(".")[2].replace("_", "-")
    of_builder = name.startswith("model_kwargs.")
    if value is training.MISSING:
        return f"(no {option})"
    if name == "clipnorm" and value is None:
        return "--clipnorm 0"
    if value is None:
        return f"{option} none" if of_builder else f"(no {option})"
    if isinstance(value, bool):
        if of_builder:
            return f"{option} {str(value).lower()}"
        return option if value else f"(no {option})"
    if name == "noise":
        from aezoo import noise

        value = noise.spec(*value)
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    return f"{option} {value}"


def reader_gone() -> int:
    """What a command does when the reader of its output has gone (`aezoo presets | head
    -2`): no traceback, and none at exit either, when Python flushes what is left; the
    status of a process that SIGPIPE ended, as other commands of a pipe give."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + 13


def _not_a_folder(where) -> str:
    return f"{where} is a file; a folder is needed there."


def name_actions(actions: argparse._SubParsersAction) -> None:
    """A command's subcommands named in its usage error ("the following arguments are
    required: {train,compress,decompress,evaluate}", not "... required: action"); called
    once they are all added."""
    actions.metavar = "{" + ",".join(actions.choices) + "}"


def check_folder(folder: Path) -> None:
    """Refuses an output folder that is a file, lies under one, or cannot be written (a
    read-only disk, no permission), before any work: making it would say so only when the
    results are written, after minutes or hours.

    Raises:
        FileExistsError: naming the file.
        OSError: EROFS or EACCES, naming the folder that exists and cannot be written.
    """
    for where in (Path(folder), *Path(folder).parents):
        if where.exists():
            if not where.is_dir():
                raise FileExistsError(_not_a_folder(where))
            if not os.access(where, os.W_OK | os.X_OK):
                number = (errno.EROFS if os.statvfs(where).f_flag & os.ST_RDONLY
                          else errno.EACCES)
                raise OSError(number, os.strerror(number), str(where))
            return


def counted(number: int, noun: str) -> str:
    """"1 image", "2 images"."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def check_outputs(folder: Path, names: Sequence[str], overwrite: bool) -> None:
    """Refuses to replace the results `names` in `folder` without `--overwrite` (commands
    that write a fixed set of result files).

    Raises:
        FileExistsError: naming the first result that exists, or a file where the folder
            would be (`check_folder`).
    """
    check_folder(folder)
    taken = [folder / name for name in names if (folder / name).exists()]
    if taken and not overwrite:
        raise FileExistsError(f"{taken[0]} exists; choose another --out or pass --overwrite.")


def expand_folders(paths: Sequence[Path], list_folder: Callable[[Path], list[Path]],
                   what: str = "PNG and JPEG images") -> list[Path]:
    """The input files of a command: files as given, each folder replaced by the files that
    `list_folder` finds in it (e.g. `aezoo.data.list_images`).  A folder's other files (not
    hidden ones) are named in a line, "photos: 2 other files skipped (a.tif, b.webp); only
    PNG and JPEG images are read", so that a scan in TIFF is not left out unseen."""
    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found = list_folder(path)
        listed = set(found)
        others = sorted(p.name for p in path.iterdir() if p.is_file()
                        and not p.name.startswith(".") and p not in listed)
        if others:
            names = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            print(f"{path}: {counted(len(others), 'other file')} skipped ({names}); only "
                  f"{what} are read", flush=True)
        files += found
    return files


def converted(file_channels: int, model_channels: int, colour_model: str,
              transparent: bool = False) -> str:
    """", <what was done>" for an image whose colour the model does not take, else "": a
    grayscale model makes colour photos gray; a colour model takes a gray photo as R = G = B,
    and the denoised or decoded image comes back gray (denoise, decompress); transparency is
    dropped (the output is opaque).  The user should hear of each."""
    dropped = ", transparency dropped (the output is opaque)" if transparent else ""
    if file_channels == model_channels:
        return dropped
    if model_channels == 1:
        return f", colour read as grayscale: the model is grayscale ({colour_model}){dropped}"
    return f", grayscale read as colour (R = G = B), given back as grayscale{dropped}"


# Bytes of decoded images an application keeps between checking its inputs and using them.
KEEP_DECODED_BYTES = 2**30


def read_first(files: Sequence[Path], read: Callable[[Path], Any],
               keep_bytes: int | None = None) -> list[Callable[[], Any]]:
    """Reads every file with `read` before an application writes anything (a file that
    does not decode fails the batch before any output), keeping what it read while the
    total stays within `keep_bytes` (default `KEEP_DECODED_BYTES`); the rest is read
    again when its turn comes, so that a folder of large photos does not fill the memory
    (a 12-megapixel photo takes 36 MB decoded).  Returns one loader per file, in order.

    `read(path)` returns an array, or a tuple whose first item is one (its size counts).
    """
    keep_bytes = KEEP_DECODED_BYTES if keep_bytes is None else keep_bytes
    loaders, kept = [], 0
    for path in files:
        value = read(path)
        size = (value[0] if isinstance(value, tuple) else value).nbytes
        if kept + size <= keep_bytes:
            kept += size
            loaders.append(lambda value=value: value)
        else:
            del value
            loaders.append(lambda path=path: read(path))
    return loaders


def quarters(label: str, started: float, verb: str):
    """A progress callback `(done, total)` for one long image job that prints
    "<label>: 25 % <verb> (N s)" at each quarter of the work, once it has taken more than
    5 s (a large photo takes a minute or more; a small one says nothing)."""
    shown = [0]

    def progress(done: int, total: int) -> None:
        quarter = 4 * done // total
        if quarter > shown[0] and quarter < 4:
            shown[0] = quarter
            seconds = time.perf_counter() - started
            if seconds > 5:
                print(f"{label}: {25 * quarter} % {verb} ({seconds:.0f} s)", flush=True)

    return progress


def reading_notes(path: Path, file_channels: int, model_channels: int,
                  colour_model: str, full_depth: bool = False) -> str:
    """What reading an image file (of `file_channels`, as `data.probe_image` found) for a
    model does to it, as ", ..." notes for its line: colour converted, transparency
    dropped, 16 bits read as 8 (or kept, for a command that reads their `full_depth`),
    turned upright."""
    from aezoo import data

    notes = converted(file_channels, model_channels, colour_model,
                      data.has_transparency(path))
    if data.bit_depth(path) == 16:
        notes += ", 16 bits a sample, kept" if full_depth else ", 16-bit samples read as 8-bit"
    return notes + turned(data.orientation(path))


def turned(orientation: int) -> str:
    """", turned upright ..." for a file whose EXIF orientation turns it (a phone's photo),
    else "": the output (a PNG, or an .aez file) holds the pixels upright, as viewers show
    the file, and has no orientation of its own."""
    return "" if orientation == 1 else f", turned upright (EXIF orientation {orientation})"


def output_paths(inputs: Sequence[Path], out: Path, suffix: str, overwrite: bool) -> list[Path]:
    """One output per input file, `out/<its stem><suffix>`, all checked before an
    application writes anything.

    Raises:
        FileNotFoundError: an input that is not a file.
        ValueError: two inputs with the same stem, or an output that is one of the inputs
            (refused even with `overwrite`).
        FileExistsError: an existing output, unless `overwrite`; a file where `out` would
            be (`check_folder`).
    """
    check_folder(out)
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


def add_output_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """--overwrite or --skip-existing, for a command that writes one `what` per input."""
    policy = parser.add_mutually_exclusive_group()
    policy.add_argument("--overwrite", action="store_true", help=f"replace existing {what}")
    policy.add_argument("--skip-existing", action="store_true",
                        help=f"leave the inputs whose {what[:-1]} exists (a batch stopped "
                             "part-way goes on where it stopped)")


def files_to_write(inputs: Sequence[Path], out: Path, suffix: str,
                   args: argparse.Namespace) -> tuple[list[Path], list[Path]]:
    """The inputs to work on and their outputs (see `output_paths`), less those whose
    output exists with `--skip-existing` (said in one line)."""
    skip = args.skip_existing  # (add_output_arguments's)
    targets = output_paths(inputs, out, suffix, args.overwrite or skip)
    if not skip:
        return list(inputs), targets
    pairs = [(path, target) for path, target in zip(inputs, targets) if not target.exists()]
    if len(pairs) < len(inputs):
        print(f"Skipping {len(inputs) - len(pairs)} of {len(inputs)} files, whose output is "
              f"in {out} already", flush=True)
    return [path for path, _ in pairs], [target for _, target in pairs]


# ------------------------------------------------------------------ data and training


def add_data_arguments(parser: argparse.ArgumentParser, patch: str = "whole images") -> None:
    """--dataset | --images | --arrays and their options; `patch`: the default of --patch,
    in words, for a command that sets its own."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="tensorflow-datasets name, e.g. mnist")
    source.add_argument("--images", type=Path, help="folder of PNG/JPEG images")
    source.add_argument("--arrays", type=Path, help=".npy or .npz file of examples (N, ...)")
    group = parser.add_argument_group("data options")
    group.add_argument("--split", default="train", help="tfds split to train on")
    group.add_argument("--val-split", default="auto",
                       help="tfds split to validate on ('auto': test if any; 'none')")
    group.add_argument("--data-dir", help="tfds data_dir (default: TFDS_DATA_DIR)")
    group.add_argument("--key", help="array name in an .npz file")
    group.add_argument("--channels", type=int, choices=(1, 3), help="images: 1 gray, 3 RGB")
    group.add_argument("--patch", type=positive_int,
                       help=f"images: random square patches of this side (default: {patch})")
    group.add_argument("--patches-per-image", type=positive_int, default=1, metavar="N",
                       help="images with --patch: patches of each image an epoch "
                            "(default: %(default)s)")
    group.add_argument("--augment", action="store_true",
                       help="images with --patch: random rotations and mirror images of patches")
    group.add_argument("--image-size", type=positive_int, nargs=2, metavar=("H", "W"),
                       help="images: resize")


def add_training_arguments(parser: argparse.ArgumentParser, **defaults: Any) -> None:
    """The training options every training command takes, with its own `defaults`
    (e.g. `learning_rate=1e-4`); `training_options` turns them into `training.train`'s
    keyword arguments."""
    values = dict(epochs=10, batch_size=128, learning_rate=1e-3, lr_schedule="constant",
                  clipnorm=0.0, mixed_precision="off")
    values.update(defaults)
    group = parser.add_argument_group("training options")
    group.add_argument("--out", type=folder, required=True,
                       help="run folder (the same command again resumes an interrupted run)")
    group.add_argument("--epochs", type=positive_int, default=values["epochs"],
                       help=f"default {values['epochs']}")
    group.add_argument("--batch-size", type=positive_int, default=values["batch_size"],
                       help=f"global batch size (default {values['batch_size']})")
    group.add_argument("--learning-rate", type=positive_float, default=values["learning_rate"],
                       help=f"Adam's learning rate (default {values['learning_rate']:g})")
    group.add_argument(
        "--lr-schedule", default=values["lr_schedule"], choices=LR_SCHEDULES,
        help="cosine: down to 1%% of --learning-rate over the epochs; step: ten times lower "
        f"for the last fifth (default {values['lr_schedule']})",
    )
    group.add_argument("--warmup", type=non_negative_int, default=values.get("warmup", 0),
                       metavar="STEPS", help="raise the learning rate linearly over the first "
                       "STEPS steps")
    group.add_argument("--time-limit", type=positive_float, metavar="MINUTES",
                       help="stop after the first epoch that ends past this many minutes")
    group.add_argument("--clipnorm", type=non_negative_float, default=values["clipnorm"],
                       help="clip gradients to this global norm (0: no clipping; default "
                       f"{values['clipnorm']:g})")
    group.add_argument("--strategy", default="auto", choices=STRATEGIES,
                       help="auto: all GPUs of this machine, else the CPU; multiworker: the "
                       "cluster in TF_CONFIG")
    group.add_argument("--mixed-precision", default=values["mixed_precision"],
                       choices=MIXED_PRECISION,
                       help="16-bit compute: auto is mixed_float16 on GPUs, mixed_bfloat16 on "
                       "CPUs (the presets' recipe: 1.6-1.7x faster training of the codecs and "
                       "denoisers on a CPU with AVX512-BF16, slower on CPUs without; default "
                       f"{values['mixed_precision']})")
    group.add_argument("--jit-compile", default="auto", choices=("auto", "on", "off"),
                       help="XLA: auto turns it on for one GPU only (on this project's CPU it "
                       "halved training throughput)")
    group.add_argument("--steps-per-epoch", type=positive_int)
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--log-dir", type=Path, help="TensorBoard log folder")
    group.add_argument("--keep-checkpoints", type=positive_int, metavar="N",
                       help="keep only the newest N checkpoints/epoch_NNN.keras (default: "
                       "all; each holds the model and Adam's state, 22 MB for denoise_gray)")
    group.add_argument("--init", metavar="RUN",
                       help="start from the weights of this run folder or preset (the same "
                       "model; its builder arguments are the defaults; a codec may be given "
                       "wider --filters, a hyperprior codec a larger --latent-dim, and starts "
                       "as the same function)")


def training_options(args: argparse.Namespace) -> dict[str, Any]:
    """`aezoo.training.train`'s keyword arguments from `add_training_arguments`' options."""
    if args.log_dir is not None and args.log_dir.exists() and not args.log_dir.is_dir():
        raise NotADirectoryError(f"--log-dir {args.log_dir} is a file, not a folder.")
    return dict(
        epochs=args.epochs,
        batch_size=args.batch_size,
        out_dir=args.out,
        learning_rate=args.learning_rate,
        lr_schedule=args.lr_schedule,
        warmup=args.warmup,
        time_limit=args.time_limit,
        clipnorm=args.clipnorm or None,
        mixed_precision=args.mixed_precision,
        jit_compile={"on": True, "off": False}.get(args.jit_compile, "auto"),
        seed=args.seed,
        log_dir=args.log_dir,
        steps_per_epoch=args.steps_per_epoch,
        init=args.init,
        verbose=1 if sys.stdout.isatty() else 2,
        keep_checkpoints=args.keep_checkpoints,
    )


def _number(kind: type, text: str, check: Callable[[Any], bool], what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not check(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _number(int, text, lambda v: v > 0, "a positive integer")


def non_negative_int(text: str) -> int:
    return _number(int, text, lambda v: v >= 0, "an integer >= 0")


def steps(text: str) -> int:
    """Images along a walk or an interpolation: its two ends and what lies between."""
    return _number(int, text, lambda v: v >= 2, "an integer of at least 2")


def folder(text: str) -> Path:
    """An argparse type for --out: a path, but not an empty one, which Path would take as
    the current folder (`--out "$DIR"` with DIR unset would write results there)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder, got an empty path")
    return Path(text)


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `minimum` (`denoise --tile 128`: a tile
    that keeps a centre beyond its 32-pixel margins, checked when the options are read, not
    at the first image large enough for tiles; `explore --examples 2`: a map needs two)."""
    return lambda text: _number(int, text, lambda v: v >= minimum,
                                f"an integer of at least {minimum}")


def seed32(text: str) -> int:
    """A seed of stateless draws: a 32-bit integer (checked here, not after the model loads)."""
    return _number(int, text, lambda v: -(2**31) <= v < 2**31,
                   "an integer from -2147483648 to 2147483647")


def positive_float(text: str) -> float:
    return _number(float, text, lambda v: math.isfinite(v) and v > 0,
                   "a positive, finite number")


def non_negative_float(text: str) -> float:
    return _number(float, text, lambda v: math.isfinite(v) and v >= 0,
                   "a finite number >= 0")


# --------------------------------------------------------------------- model options

# Builder arguments that commands set themselves rather than take from the user.
_NOT_OPTIONS = ("input_shape", "name")


def _option_type(param: inspect.Parameter) -> dict[str, Any]:
    """The option's type, from the builder argument's annotation (as text), else from its
    default: `sparsity: float = 0` takes 0.01, not only integers; `tuple[float, ...]`
    takes numbers with decimals.  (The builders of an argument annotate it alike:
    tests/test_models.py.)"""
    annotation = param.annotation if isinstance(param.annotation, str) else ""
    words = set(re.findall(r"\w+", annotation))
    default = param.default
    if "bool" in words or isinstance(default, bool):
        return {"type": _boolean, "metavar": "true|false"}
    if annotation.startswith("tuple") or isinstance(default, tuple):
        floats = "float" in words or any(isinstance(v, float) for v in default or ())
        return {"type": float if floats else int, "nargs": "+",
                "metavar": "X" if floats else "N"}
    for kind, metavar in ((float, "X"), (int, "N")):
        if kind.__name__ in words or (not words & {"float", "int", "str"}
                                      and type(default) is kind):
            return {"type": _or_none(kind) if "None" in words else kind, "metavar": metavar}
    return {"type": _none_or_str, "metavar": "NAME"}


def _or_none(kind: type) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)

    convert.__name__ = kind.__name__  # argparse names the type in its errors
    return convert


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _none_or_str(text: str) -> str | None:
    return None if text.lower() == "none" else text


def add_model_arguments(parser: argparse.ArgumentParser, default_model: str,
                        own_defaults: dict[str, str] | None = None) -> None:
    """Adds `--model NAME` and one option per builder argument of any model in the table.

    A `default_model` outside the table (such as "auto", for a command that picks the model
    from the data) is one more choice.  `own_defaults`: the default, in words, of a builder
    argument that the command sets itself (`anomalies train`'s latent_dim), said in its help
    instead of the builders' own.
    """
    own_defaults = own_defaults or {}
    extra = [] if default_model in MODELS else [default_model]
    parser.add_argument(
        "--model",
        default=None,  # see resolve_model
        choices=list(MODELS) + extra,
        help=f"model of the zoo (default: {default_model}, or the --init run's model)",
    )
    parser.set_defaults(default_model=default_model)
    group = parser.add_argument_group(
        "model options", "builder arguments; each applies to the models whose builder takes it"
    )
    seen = set()
    signatures = {name: MODELS.signature(name).parameters for name in MODELS}
    for parameters in signatures.values():
        for param in parameters.values():
            if param.name in _NOT_OPTIONS or param.name in seen:
                continue
            seen.add(param.name)
            group.add_argument(
                "--" + param.name.replace("_", "-"),
                dest=f"model_{param.name}",
                default=argparse.SUPPRESS,  # absent unless given: the builder's default holds
                help=ARGUMENTS.get(param.name, "") + " " + (
                    f"(default {own_defaults[param.name]})" if param.name in own_defaults
                    else _defaults_help(param.name, signatures)),
                **_option_type(param),
            )


def _defaults_help(name: str, signatures: dict) -> str:
    """"(dense, conv; default 32)", or, where the builders' defaults differ, each default
    after the models that have it: "(defaults: dense, conv: 32; compression: 128)"."""
    by_default: dict[str, list[str]] = {}
    for model, parameters in signatures.items():
        if name in parameters:
            by_default.setdefault(repr(parameters[name].default), []).append(model)
    if len(by_default) == 1:
        [(default, users)] = by_default.items()
        return f"({', '.join(users)}; default {default})"
    return "(defaults: " + "; ".join(
        f"{', '.join(users)}: {default}" for default, users in by_default.items()) + ")"


def resolve_model(args: argparse.Namespace) -> None:
    """Sets `args.model` when `--model` was not given: the `--init` run's model when fine-
    tuning, else the command's default."""
    if args.model is None:
        if getattr(args, "init", None) is not None:
            from aezoo import runs

            args.model = runs.model_name(args.init)
        else:
            args.model = args.default_model


def model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The builder arguments given on the command line, checked against `args.model`."""
    params = MODELS.signature(args.model).parameters
    kwargs = {}
    for dest, value in vars(args).items():
        if not dest.startswith("model_"):
            continue
        name = dest[len("model_"):]
        if name not in params:
            raise ValueError(f"--{name.replace('_', '-')} does not apply to model '{args.model}'.")
        kwargs[name] = tuple(value) if isinstance(value, list) else value
    return kwargs
