"""The package as a whole: import without side effects or TensorFlow, imports that only go
downwards, installed commands that answer --help at once, and one vocabulary of options."""

import ast
import inspect
import os
import signal
import subprocess
import sys

import pytest
from conftest import ROOT

import aezoo
from aezoo.apps import cli

PACKAGE = ROOT / "aezoo"
# The layers, from the bottom: a module may import only its own layer or lower ones.
LAYERS = {
    "foundation": ["aezoo._version", "aezoo._quiet", "aezoo._keras_fixes", "aezoo.noise",
                   "aezoo.metrics"],
    "models": ["aezoo.models"],
    "services": ["aezoo.data", "aezoo.plots", "aezoo.baselines", "aezoo.export",
                 "aezoo.presets", "aezoo.runs", "aezoo.training", "aezoo.codec",
                 "aezoo.refinement", "aezoo.rate_distortion", "aezoo.denoise",
                 "aezoo.anomaly", "aezoo.latent", "aezoo.generative"],
    "commands": ["aezoo.apps", "aezoo.__main__"],
}


def layer_of(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS.items()):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} belongs to no layer of LAYERS")


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        yield name.removesuffix(".__init__"), path


def imported(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_imports_only_go_downwards():
    known = {name for name, _ in modules()}
    for name, path in modules():
        if name == "aezoo":
            continue  # the package names its public API, of every layer, lazily
        for target in imported(path):
            # (`from aezoo import data` names the package too: only its modules count)
            if target.startswith("aezoo.") and target in known:
                assert layer_of(target) <= layer_of(name), f"{name} imports {target} (upwards)"


def test_import_aezoo_loads_no_tensorflow_and_changes_nothing():
    script = (
        "import os, sys; env = dict(os.environ); err = sys.stderr\n"
        "import aezoo, aezoo.apps.main\n"
        "assert dict(os.environ) == env and sys.stderr is err\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
        "print(sorted(aezoo.MODELS))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_import_after_tensorflow_and_first_model_print_nothing_and_set_nothing():
    script = (
        "import os, sys\nimport tensorflow, keras\n"
        "env = dict(os.environ); err = sys.stderr\n"
        "import aezoo\n"
        "ae = aezoo.MODELS['dense'](input_shape=(4,), latent_dim=2)\n"
        "assert dict(os.environ) == env and sys.stderr is err\n"
        "print('built', ae.count_params(), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # TensorFlow's import prints its own notices; building the first model adds none (in
    # particular no "failed call to cuInit" line on machines without a GPU).
    after_import = result.stderr.split("built", 1)[0]
    assert "cuInit" not in result.stderr and after_import.count("\n") <= 12


def test_the_operating_systems_errors_are_told_in_words(tmp_path):
    (tmp_path / "a").write_text("a file")
    (tmp_path / "d").mkdir()
    errors = {}
    for name, call in {"mkdir": lambda: os.mkdir(tmp_path / "a"),
                       "replace": lambda: os.replace(tmp_path / "a", tmp_path / "d"),
                       "open": lambda: open(tmp_path / "missing")}.items():
        with pytest.raises(OSError) as caught:
            call()
        errors[name] = cli.user_message(caught.value)
    assert errors == {
        "mkdir": f"{tmp_path / 'a'} is a file; a folder is needed there.",
        "replace": f"Is a directory: {tmp_path / 'a'} -> {tmp_path / 'd'}",
        "open": f"No such file or directory: {tmp_path / 'missing'}",
    }
    assert cli.user_message(ValueError("aezoo's own words")) == "aezoo's own words"


@pytest.fixture(scope="module")
def saved_vae(tmp_path_factory):
    """A model of one of aezoo's own Model classes with its own layers, saved."""
    path = tmp_path_factory.mktemp("saved") / "vae.keras"
    aezoo.MODELS["vae_dense"](input_shape=(6,), latent_dim=2).save(path)
    return path


@pytest.mark.parametrize("imports", ["import aezoo, keras", "import keras, aezoo",
                                     "import aezoo, tensorflow, keras",
                                     "from aezoo import data\nimport keras",
                                     "import aezoo\naezoo.Autoencoder\nimport keras",
                                     "from aezoo import codec\nimport keras",
                                     "from aezoo.models import conv\nimport keras",
                                     "from aezoo import noise\nimport keras"])
def test_keras_load_model_reads_aezoo_files_in_a_fresh_process(saved_vae, imports):
    """Without aezoo's classes registered, Keras says "Could not locate class"; the
    post-import hook registers them in whichever order the modules come, also when one of
    aezoo's model modules is what imports Keras (codec starts with models.compression)."""
    script = (
        f"{imports}\n"
        f"model = keras.models.load_model({str(saved_vae)!r})\n"
        "print(type(model).__name__, type(model.encoder).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["VariationalAutoencoder", "Functional"]


@pytest.mark.parametrize("command", [["presets"], ["--help"], ["presets", "denoise_gray"],
                                     ["presets", "--help"], ["compress", "--help"]])
def test_a_reader_that_goes_away_ends_the_command_quietly(command):
    """`aezoo presets | head -2`: the pipe closes before the command writes; no traceback
    (Python would print one, and another at exit), the status of a SIGPIPE ending.  Output
    is buffered, as in a terminal session (PYTHONUNBUFFERED would hide the flush at exit)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    process = subprocess.Popen([sys.executable, "-m", "aezoo", *command], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # before the interpreter has even started
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141, stderr
    assert stderr == ""


@pytest.mark.parametrize("argv,fast", [(["presets"], False), (["train", "--help"], False),
                                       (["anomalies", "score"], True),
                                       (["denoise", "denoise"], True), (["train"], False),
                                       (["compress", "train"], False)])
def test_the_console_script_ends_at_once_after_a_command_but_a_training(argv, fast,
                                                                         monkeypatch):
    """Python's exit collects TensorFlow's objects for a second: once a command that loaded
    TensorFlow has written its outputs, the script flushes its streams and ends with the
    command's status; a training (its cluster, TensorBoard's writers) keeps the normal
    exit, as does a command that never loaded TensorFlow."""
    import types

    from aezoo.apps import main as aezoo_main

    flushed = []
    monkeypatch.setattr(sys, "argv", ["aezoo", *argv])
    monkeypatch.setattr(aezoo_main, "main", lambda given: 7 if given == argv else 1)
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    monkeypatch.setattr(sys, "stdout", types.SimpleNamespace(flush=lambda: flushed.append(1)))

    def exited(status):
        raise SystemExit(("fast", status))

    monkeypatch.setattr(os, "_exit", exited)
    # TensorFlow's exit functions delete the files AutoGraph wrote in /tmp: they run.
    ran = []
    monkeypatch.setattr(aezoo_main.atexit, "_run_exitfuncs", lambda: ran.append(True))
    if argv == ["presets"]:  # (a command that never loads TensorFlow)
        monkeypatch.delitem(sys.modules, "tensorflow")
    handler = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as ended:
            aezoo_main.console()
        assert ended.value.code == (("fast", 7) if fast else 7)
        assert bool(flushed) == fast and bool(ran) == fast
        if not fast:  # a SIGTERM while Python exits ends it with the command's status
            with pytest.raises(SystemExit) as ended:
                signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
            assert ended.value.code == ("fast", 7)
    finally:
        signal.signal(signal.SIGTERM, handler)


def test_tensorflows_start_up_notices_are_shown_on_a_failure_not_on_an_interrupt(capfd):
    """Stopped at start-up (Ctrl-C, SIGTERM), a command printed TensorFlow's captured oneDNN
    and CUDA notices above its "interrupted" line; a failure still shows them."""
    from aezoo._quiet import stderr_captured

    for stop, shown in ((KeyboardInterrupt, False), (RuntimeError, True)):
        with pytest.raises(stop), stderr_captured():
            os.write(2, b"notice from C++\n")
            raise stop()
        assert ("notice from C++" in capfd.readouterr().err) == shown


@pytest.mark.parametrize("command", ["", "train", "denoise", "denoise train", "compress",
                                     "compress evaluate", "anomalies train", "explore",
                                     "generate", "export", "presets"])
def test_help_answers_before_tensorflow_loads(command):
    script = (
        "import sys\nfrom aezoo.apps.main import main\n"
        f"status = main({command.split() + ['--help']!r})\n"
        "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n"
        "sys.exit(status)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage: aezoo" in result.stdout


def test_builder_signatures_read_from_source_equal_the_builders():
    for name in aezoo.MODELS:
        read = aezoo.MODELS.signature(name).parameters
        real = inspect.signature(aezoo.MODELS[name]).parameters
        assert list(read) == list(real), name
        for key, parameter in real.items():
            assert read[key].default == parameter.default, (name, key)
            assert read[key].annotation == parameter.annotation, (name, key)


def test_a_builder_the_table_cannot_read_is_named_with_its_file(tmp_path):
    from aezoo.models import ModelTable

    (tmp_path / "family.py").write_text(
        "WIDTH = 8\n\n"
        "def good(input_shape, *, latent_dim=4, units=(8, 4), name='good'):\n    pass\n\n"
        "def bad(input_shape, latent_dim=WIDTH):\n    pass\n")
    table = ModelTable({"good": "family", "bad": "family", "gone": "family"}, folder=tmp_path)
    good = table.signature("good").parameters  # keyword-only arguments are options too
    assert {key: p.default for key, p in good.items()} == {
        "input_shape": inspect.Parameter.empty, "latent_dim": 4, "units": (8, 4),
        "name": "good"}
    with pytest.raises(ValueError, match=r"family.py:6: the default of `latent_dim` in "
                                         r"builder `bad` must be a literal \('WIDTH'"):
        table.signature("bad")
    with pytest.raises(ValueError, match=r"family.py has no top-level builder `def gone"):
        table.signature("gone")


def test_the_commands_option_choices_are_the_services():
    from aezoo import anomaly, rate_distortion, training
    from aezoo.apps import anomalies, compress

    assert cli.STRATEGIES == training.STRATEGIES
    assert cli.MIXED_PRECISION == training.MIXED_PRECISION
    assert cli.LR_SCHEDULES == training.LR_SCHEDULES
    assert anomalies.SCALINGS == anomaly.SCALINGS
    assert compress.CODECS == rate_distortion.CODECS


def test_every_application_script_is_a_thin_entry_point():
    from aezoo.apps.main import COMMANDS

    runs = set()
    for script in sorted((ROOT / "applications").glob("*.py")):
        lines = [line for line in script.read_text().splitlines() if line.strip()]
        assert len(lines) <= 8 and any("import main" in line for line in lines), script
        runs |= {line.split()[1] for line in lines if line.startswith("from aezoo.apps.")}
    # One script per command (README: `applications/<job>.py` run the same code).
    assert runs == {f"aezoo.apps.{module}" for module, _ in COMMANDS.values()}


def test_the_license_file_matches_the_metadata():
    setup = (ROOT / "setup.cfg").read_text()
    assert "license = Apache-2.0" in setup
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    summary = next(line for line in setup.splitlines() if line.startswith("description ="))
    assert summary.rstrip().endswith(".")  # one sentence, not cut off
    assert os.path.exists(ROOT / "README.md")


def test_an_errors_first_line_names_its_class_once():
    """A library's error in a one-line message: "(OSError: OSError)" said the name twice
    when the error had no message."""
    from aezoo._quiet import first_line

    assert first_line(OSError(), named=True) == "OSError"
    assert first_line(ValueError("bad\nmore"), named=True) == "ValueError: bad"
    assert first_line(ValueError("x" * 300), limit=10) == "x" * 10
    # TensorFlow's graph-node names ({{node ...}}) are not for users.
    assert first_line(RuntimeError("{{node decode}} Invalid PNG data")) == "Invalid PNG data"
