"""Run folders: what every training command writes, and the one way to open one again.

A run folder holds, whatever the command that trained it:

| file | what |
|---|---|
| `model.keras` | the trained model (`keras.models.load_model` in a program that imports aezoo, no `custom_objects`) |
| `run.json` | what the run is: `task`, `model` (its builder), the options it was trained with, and the application's data (`application`: noise, scaling and threshold, ...) |
| `history.json`, `history.csv` | the loss and metrics per epoch |
| `loss.png`, `samples.png` | the loss curves; inputs beside outputs |
| `export/1/` | the SavedModel for TF Serving |
| `checkpoints/`, `backup/` | one checkpoint per epoch; crash recovery while unfinished |
| `started.json` | the options it was started with: a resume must give the same (`aezoo.training.check_started`) |

`run.json` is written last, so a folder is a finished run exactly when it has one: a
training killed at any point before leaves no `run.json`, and the same command resumes it
(or, if only the last steps were missing, completes it).  A `.lock` file keeps a second
process out of a folder that one is training in; the lock is the operating system's and
dies with its process.

`load_run(path)` opens any run folder (and a preset, which is a run folder shipped with
aezoo); runs written by aezoo 0.1 (`denoiser.json`, `anomaly.json`, a compression model
without `run.json`) open too.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import fcntl
import json
import os
import shutil
import tempfile
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from aezoo import export, plots, presets
from aezoo._quiet import first_line
from aezoo._version import __version__
from aezoo.models import MODELS

RUN_FILE = "run.json"
MODEL_FILE = "model.keras"
WEIGHTS_FILE = "weights.npz"  # a preset's weights (see `pack`)
EXPORT_DIR = "export"
# The task of a run -> the command that trains such runs.
COMMANDS = {"train": "aezoo train", "denoise": "aezoo denoise train",
            "compress": "aezoo compress train", "anomaly": "aezoo anomalies train"}
TASKS = tuple(COMMANDS)


@dataclass
class Run:
    """An opened run folder: its path, its `run.json` and its model (loaded on first use)."""

    path: Path
    info: dict[str, Any]
    _model: keras.Model | None = field(default=None, repr=False)

    @property
    def task(self) -> str:
        return self.info["task"]

    @property
    def application(self) -> dict[str, Any]:
        return self.info.get("application", {})

    @property
    def model(self) -> keras.Model:
        if self._model is None:
            if (self.path / MODEL_FILE).is_file() or "config" not in self.info:
                self._model = load_model(self.path / MODEL_FILE)
            else:
                self._model = model_from_weights(self.info["config"], self.path / WEIGHTS_FILE)
        return self._model


def load_run(source: str | os.PathLike, task: str | None = None) -> Run:
    """Opens a run: a preset by name, a run folder, or the folder of a `model.keras`.

    Args:
        source: a name in `aezoo.presets.PRESETS`, a run folder, or its `model.keras`.
        task: when given, the run must be of this task (e.g. "denoise").

    Raises:
        FileNotFoundError: no such folder (and no such preset).
        ValueError: not a finished run, a damaged `run.json`, a run of another task, or a
            preset whose files fail their checksums.
        TypeError: `source` is neither a str nor a path (a model, say).
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"`task` must be one of {', '.join(map(repr, TASKS))} or None. "
                         f"Received: task={task!r}")
    if not isinstance(source, (str, os.PathLike)):
        # (a model given where its run is asked for failed inside pathlib)
        raise TypeError("`source` must be a preset name or the path of a run folder. "
                        f"Received: {type(source).__name__} {source!r:.60}")
    name = str(source)  # as the user gave it, for messages (not a preset's installed path)
    if isinstance(source, str) and source in presets.PRESETS:
        source = presets.folder(source)
    path = Path(source)
    if path.is_file() and path.suffix == ".keras":
        path = path.parent
    if not path.is_dir():
        if path.suffix == ".keras":
            raise FileNotFoundError(f"No such model file: {name}")
        known = ", ".join(presets.PRESETS) or "none"
        raise FileNotFoundError(f"{name} is neither a run folder nor a preset "
                                f"(presets: {known}).")
    info_file = path / RUN_FILE
    if info_file.is_file():
        try:
            info = json.loads(info_file.read_text())
            if info.get("task") not in TASKS:
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            raise ValueError(f"{info_file} is damaged: it is not a run description.") from None
    else:
        info = _legacy_info(path)
    if task is not None and info["task"] != task:
        raise ValueError(f"{name} is a run of `{COMMANDS[info['task']]}`, not of "
                         f"`{COMMANDS[task]}`.")
    return Run(path, info)


def _legacy_info(path: Path) -> dict[str, Any]:
    """The `run.json` of a run folder written by aezoo 0.1, from its sidecar files, or of
    an `out_dir` of `aezoo.training.train` (which writes no run.json), from its
    started.json (its model's name, when it was given one, and the arguments)."""
    if (path / "backup").is_dir():
        raise ValueError(f"{path} is an unfinished run: run its training command again to "
                         "resume it.")
    if not (path / MODEL_FILE).is_file():
        raise ValueError(f"{path} is not a finished run: it has no {RUN_FILE} or {MODEL_FILE}.")
    for name, task in (("denoiser.json", "denoise"), ("anomaly.json", "anomaly")):
        if (path / name).is_file():
            try:
                legacy = json.loads((path / name).read_text())
            except ValueError:
                raise ValueError(f"{path / name} is damaged.") from None
            if task == "denoise":
                application = {k: legacy[k] for k in ("noise", "kind", "level", "channels")}
            else:
                application = {k: legacy[k] for k in
                               ("threshold", "threshold_rule", "scaling", "normal_label")}
            return {"task": task, "model": legacy.get("architecture", legacy.get("model")),
                    "options": {}, "application": application, "aezoo_version": "0.1"}
    if (path / "tables.npz").is_file():
        return {"task": "compress", "model": "compression", "options": {}, "application": {},
                "aezoo_version": "0.1"}
    started = path / "started.json"  # (`aezoo.training.train`'s, whose version it omits)
    if started.is_file():
        try:
            options = json.loads(started.read_text())
        except ValueError:
            raise ValueError(f"{started} is damaged.") from None
        model = options.get("model") if isinstance(options, dict) else None
        return {"task": "train", "model": model if isinstance(model, str) else None,
                "options": options, "application": {}, "aezoo_version": None}
    return {"task": "train", "model": None, "options": {}, "application": {},
            "aezoo_version": "0.1"}


def write_run(
    path: str | os.PathLike,
    *,
    task: str,
    model: str | None,
    options: dict[str, Any],
    application: dict[str, Any] | None = None,
    timing: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Writes `run.json`, the mark of a finished run: call it last.

    `timing` is what the training took in the process that finished it (`wall_seconds`,
    `cpu_seconds`; a resumed run counts the last process only).
    """
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {', '.join(TASKS)}. Received: task={task!r}")
    info = {
        "task": task,
        "model": model,
        "options": _jsonable(options),
        "application": _jsonable(application or {}),
        "timing": _jsonable(timing or {}),
        "aezoo_version": __version__,
    }
    write_text(Path(path) / RUN_FILE, json.dumps(info, indent=2) + "\n")
    return info


def is_finished(path: str | os.PathLike) -> bool:
    """Whether `path` holds a finished run (its run.json, written last)."""
    return (Path(path) / RUN_FILE).is_file()


def refuse_finished(path: str | os.PathLike, choose: str = "another output folder") -> None:
    """A finished run is never overwritten: FileExistsError if `path` holds one.  `choose`:
    what to do instead, in the caller's words ("another --out")."""
    if is_finished(path):
        raise FileExistsError(f"{path} already holds a finished run; choose {choose}.")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return str(value)
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    return value


# ----------------------------------------------------------------------------- models


def from_preset(name: str) -> keras.Model:
    """The trained Keras model of a preset (`aezoo.presets.PRESETS`; `aezoo presets NAME`
    shows its card).

    The model alone: a preset's application lives beside it in its run, which
    `aezoo.anomaly.Detector.load("ecg5000")` (the scaling and threshold) and
    `aezoo.codec.open_codec("codec_0.01")` (the post-filter its card names) open whole;
    `load_run(name)` gives the run itself.

    Raises:
        ValueError: no preset of that name, or a preset whose files fail their checksums.
    """
    if name not in presets.PRESETS:
        raise ValueError(f"There is no preset {name!r}; the presets are: "
                         f"{', '.join(presets.PRESETS) or 'none'}.")
    return load_run(name).model


def open_model(source: str | os.PathLike) -> keras.Model:
    """The model of a preset or run folder, or of any aezoo `.keras` file."""
    path = Path(source)
    if path.is_file():
        return load_model(path)
    return load_run(source).model


def model_name(source: str | os.PathLike) -> str:
    """The `aezoo.MODELS` name of the model of a preset, run folder or `.keras` file, read
    from its JSON alone: no TensorFlow work (a multi-worker strategy must come first)."""
    path = Path(source)
    if path.is_file() and path.suffix == ".keras" and not _stands_for_its_run(path):
        name = _configured_model_name(path)
    else:
        run = load_run(source)
        # (aezoo 0.1's runs of `aezoo train` name no model in their sidecar files)
        name = run.info.get("model") or _configured_model_name(run.path / MODEL_FILE)
    if name not in MODELS:
        raise ValueError(f"{source} is not a model of aezoo.MODELS.")
    return name


def _stands_for_its_run(path: Path) -> bool:
    """Whether a file is the `model.keras` of a finished run, which then stands for the run
    (its application, its builder's name)."""
    return path.name == MODEL_FILE and is_finished(path.parent)


def _configured_model_name(path: Path) -> str | None:
    """The builder's name in a `.keras` file's config.json (None if it has none)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))["config"].get("model")
    except (OSError, zipfile.BadZipFile, KeyError, TypeError, AttributeError, ValueError):
        return None


def open_for_export(source: str | os.PathLike) -> tuple[keras.Model, Any]:
    """The model of a preset, run folder or `.keras` file, and the edit of its SavedModel's
    endpoints that its run's application needs (None for most; see `aezoo.export`): an
    anomaly detector's signatures take examples as they come, scale them as in training and
    apply its threshold, as the run's own `export/1` does.  A run's `model.keras` counts as
    the run."""
    path = Path(source)
    if path.is_file() and not _stands_for_its_run(path):
        return load_model(path), None
    run = load_run(source)  # (a run's model.keras opens the run)
    if run.task == "anomaly":
        from aezoo.anomaly import Detector  # (the anomaly service builds on this module)

        return run.model, Detector.from_run(run).serving_endpoints
    return run.model, None


def load_model(path: str | os.PathLike) -> keras.Model:
    """Loads an aezoo `.keras` file (for inference: no optimizer), with a one-line error
    for anything that is not a whole, readable model file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a `.keras` file, truncated, damaged (bad checksum, unreadable
            weights), or a model of a newer aezoo.
    """
    path = Path(path)
    if not path.is_file():
        hint = (f" (the preset: aezoo.from_preset({str(path)!r}))"
                if str(path) in presets.PRESETS else "")
        raise FileNotFoundError(f"No such model file: {path}{hint}")
    MODELS.load()  # aezoo's classes, registered with Keras
    if path.suffix != ".keras":
        raise ValueError(f"{path} is not a Keras model file (.keras).")
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()  # reads every member, checking its CRC
    except (zipfile.BadZipFile, OSError, EOFError):
        raise ValueError(f"{path} is damaged or truncated: it is not a whole .keras "
                         "(zip) file.") from None
    if broken is not None:
        raise ValueError(f"{path} is damaged: its member {broken} fails its checksum.")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for files it cannot read
        raise ValueError(f"{path} could not be loaded as an aezoo model "
                         f"({first_line(error, named=True)}).") from None


# ---------------------------------------------------------------- packed runs (presets)


def pack(run: Run, folder: str | os.PathLike, float16: bool = True) -> dict[str, str]:
    """Writes a run as a preset folder: `run.json` (with the model's builder config) and
    `weights.npz`, every weight under its variable path, float weights as float16 when
    `float16` (half the size; the cost in quality is measured on each preset's card) and
    integer weights (a codec's tables) exactly.  No optimizer state.

    Returns:
        file name -> SHA-256 hex digest of each file written (for the card).
    """
    import hashlib
    import io

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = run.model
    arrays = {}
    for variable in model.weights:
        value = np.asarray(variable.numpy())
        if float16 and value.dtype == np.float32:
            value = value.astype(np.float16)
        arrays[variable.path] = value
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    info = {**run.info, "config": model.get_config()}
    write_bytes(folder / WEIGHTS_FILE, buffer.getvalue())
    write_text(folder / RUN_FILE, json.dumps(_jsonable(info), indent=2) + "\n")
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
            for name in (RUN_FILE, WEIGHTS_FILE)}


def model_from_weights(config: dict[str, Any], path: Path) -> keras.Model:
    """The model of a packed run: its builder called with `config`, then every weight set
    from `weights.npz` by variable path (cast back to the variable's dtype).

    Raises:
        ValueError: a damaged weights file, or weights that do not fit the model.
    """
    config = dict(config)
    model = MODELS[config.pop("model")](**config)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            stored = {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise ValueError(f"{path} is damaged: its weights cannot be read.") from None
    paths = [variable.path for variable in model.weights]
    if sorted(paths) != sorted(stored):
        raise ValueError(f"{path} holds other weights than its model ({len(stored)} arrays "
                         f"for {len(paths)} variables).")
    for variable in model.weights:
        value = stored[variable.path]
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"{path}: {variable.path} has shape {value.shape}, the model "
                             f"{tuple(variable.shape)}.")
        variable.assign(value.astype(variable.dtype))
    return model


# ------------------------------------------------------------------------ safe writes


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes a file whole or not at all: into a temporary file beside it, then renamed,
    so a kill, a crash or a full disk never leaves a truncated file under `path`."""
    with writing(path, allow_empty=True) as temporary:
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # on the disk before the rename makes it the file


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())


@contextlib.contextmanager
def writing(path: str | os.PathLike, suffix: str | None = None, *, allow_empty: bool = False):
    """A temporary path beside `path` for a library that writes files itself (Pillow,
    matplotlib, Keras); renamed to `path` when the block ends without an error, deleted
    otherwise.

    Raises:
        RuntimeError: the block wrote nothing (the temporary file is still empty) and
            `allow_empty` is False: a bug of the writer, which must not leave an empty file
            under the final name.
    """
    path = Path(path)
    suffix = suffix if suffix is not None else path.suffix
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{suffix}",
                                         dir=path.parent)
    except OSError as error:
        raise _naming(error, path) from None
    os.close(fd)
    try:
        yield Path(temporary)
        if not allow_empty and os.path.getsize(temporary) == 0:
            raise RuntimeError(f"Nothing was written to {path}.")
        os.chmod(temporary, 0o666 & ~_umask())
        pending = _together.get()
        if pending is not None:
            pending.append((Path(temporary), path))  # renamed when the set is complete
        else:
            os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        # Only an error of this file (the temporary, or none named); a writer's error about
        # another file it reads keeps that file's name.
        if isinstance(error, OSError) and error.errno is not None \
                and (error.filename is None or os.fspath(error.filename) == temporary):
            raise _naming(error, path) from None
        raise


# The files of an open `together()` block: (temporary, final name), renamed at its end.
_together: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar(
    "together", default=None)


@contextlib.contextmanager
def together():
    """Files written in this block (by `writing`, `write_bytes`, `write_text`) take their
    names together at its end, or none does: results that go together (results.md and
    results.json) are never a mix of an old run's and a new one's when a write fails
    halfway (a full disk, a bug, Ctrl-C), only the old set or the new."""
    if _together.get() is not None:  # (inside another block: that block's set)
        yield
        return
    pending: list[tuple[Path, Path]] = []

    def discard(written: list[tuple[Path, Path]]) -> None:
        for temporary, _ in written:
            temporary.unlink(missing_ok=True)

    token = _together.set(pending)
    try:
        yield
    except BaseException:
        discard(pending)
        raise
    finally:
        _together.reset(token)
    for temporary, path in pending:
        if path.is_dir():  # (the one way a rename fails here, before any is made)
            discard(pending)
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
    for number, (temporary, path) in enumerate(pending):
        try:
            os.replace(temporary, path)
        except BaseException as error:
            discard(pending[number:])
            if isinstance(error, OSError):
                raise _naming(error, path) from None
            raise


def _naming(error: OSError, path: Path) -> OSError:
    """The OSError of writing `path` as naming `path`: not the hidden temporary file, and
    not nothing (a full disk fails in write(), whose error names no file)."""
    return OSError(error.errno, error.strerror, str(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def clean_partials(folder: str | os.PathLike) -> None:
    """Deletes what a killed writer left in `folder` and its subfolders: the temporary files
    of `write_bytes` and `writing` (never a final name; ".partial." names are those of
    aezoo before 0.6.4's `training.save_model`)."""
    for path in Path(folder).rglob("*.partial*"):
        if path.is_file() and (path.name.startswith(".") or ".partial." in path.name):
            path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- locks


# The folders held here -> by which process and thread: `locked` again in that thread holds
# it already (a second flock on a new handle would be refused, as if another process held
# it); another thread, or a forked child, is refused as another process is.
_held: dict[Path, tuple[int, int]] = {}


@contextlib.contextmanager
def locked(path: str | os.PathLike):
    """Holds the run folder `path` (created if missing) for this process.

    Raises:
        ValueError: another process holds it.
    """
    path = Path(path)
    held, holder = path.resolve(), (os.getpid(), threading.get_ident())
    if _held.get(held) == holder:
        yield path  # (a command's, which then calls aezoo.training.train)
        return
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file; a run folder is needed there.")
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        with open(path / ".lock", "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ValueError(
                    f"{path} is in use by another aezoo process (a training in progress); "
                    "wait for it to finish, or stop it, before using this folder."
                ) from None
            _held[held] = holder
            try:
                yield path
            finally:
                del _held[held]
                if is_finished(path):
                    # No training goes into a finished run again (every one refuses it
                    # after taking the lock), so its folder keeps no lock file.
                    (path / ".lock").unlink(missing_ok=True)
                fcntl.flock(handle, fcntl.LOCK_UN)
    except BaseException:
        # A refusal before anything was written leaves no new folder behind.
        if created and {p.name for p in path.iterdir()} <= {".lock"}:
            shutil.rmtree(path, ignore_errors=True)
        raise


# ------------------------------------------------------------------ finishing a run


def finish_run(
    out: str | os.PathLike,
    history: dict[str, list[float]],
    *,
    task: str,
    model: str | None,
    options: dict[str, Any],
    application: dict[str, Any] | None = None,
    title: str = "",
    samples=None,
    edit_endpoints=None,
    timing: dict[str, float] | None = None,
) -> Run:
    """Completes a trained run folder (its `model.keras` saved by `aezoo.training.train`):
    history.json, loss.png, samples.png, the SavedModel `export/1/`, and `run.json` last.

    Args:
        out: the run folder.
        history: metric name -> one value per epoch.
        task, model, options, application: what `run.json` records (see `write_run`).
        title: the plots' title.
        samples: optional `samples(trained_model, png_path)` that draws samples.png.
        edit_endpoints: optional edit of the export's endpoints (see `aezoo.export`).
        timing: what the training took (see `write_run`).

    Returns:
        The finished run, opened.
    """
    out = Path(out)
    write_text(out / "history.json", json.dumps(_jsonable(history), indent=2) + "\n")
    with writing(out / "loss.png") as temporary:
        plots.plot_history(history, temporary, title=title)
    trained = load_model(out / MODEL_FILE)  # as saved: what a user of the run gets
    if samples is not None:
        with writing(out / "samples.png") as temporary:
            samples(trained, temporary)
    if not export.versions(out / EXPORT_DIR):  # a completed run may have it already
        export.export_saved_model(trained, out / EXPORT_DIR, edit_endpoints=edit_endpoints)
    info = write_run(out, task=task, model=model, options=options, application=application,
                     timing=timing)
    return Run(out, info, trained)

