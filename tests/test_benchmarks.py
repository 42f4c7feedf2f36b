"""benchmarks/: every script answers a user's error in one line, as the commands do."""

import ast
import importlib.util
import json
import sys

import numpy as np
import pytest
from conftest import ROOT

SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))
# offline.py is a module; the others are left as they were: compressai_peer and
# train_throughput run PyTorch in subprocesses and refuse a missing PyTorch themselves,
# training_strategies runs `aezoo train` subprocesses (which answer in one line), and
# bias_gradient takes no path or size a user could get wrong.
UNGUARDED = {"offline.py", "compressai_peer.py", "train_throughput.py", "training_strategies.py",
             "bias_gradient.py"}


def guarded(path):
    tree = ast.parse(path.read_text())
    mains = [node for node in tree.body
             if isinstance(node, ast.FunctionDef) and node.name == "main"]
    return bool(mains) and any(ast.unparse(d).startswith("cli.guarded(")
                               for d in mains[0].decorator_list)


@pytest.mark.parametrize("path", [p for p in SCRIPTS if p.name not in UNGUARDED],
                         ids=lambda p: p.name)
def test_a_benchmarks_main_is_guarded(path):
    """A missing folder, an unknown preset, --epochs 0: one line and status 2, not a
    traceback and status 1 (codec_padding, denoise_8bit, denoise_correlated, postfilter,
    generative_mnist, generative_samples and presets were not)."""
    assert guarded(path), f"decorate {path.name}'s main with @cli.guarded"


def load(name):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_compression_kodak_takes_presets_and_sizes_it_can_use(tmp_path, capsys):
    """Its --runs takes presets, which keep no history.json: the training columns are
    dashes (it failed after the whole evaluation); --repeats 0 is refused before it."""
    from aezoo import runs

    module = load("compression_kodak")
    assert module.training_time(runs.load_run("codec_0.01")) == {
        "epochs": None, "wall_hours": None, "cpu_hours": None}
    (tmp_path / "history.json").write_text(json.dumps(
        {"loss": [3.0, 2.0], "wall_seconds": [7200.0], "cpu_seconds": [3600.0]}))
    assert module.training_time(runs.Run(tmp_path, {}, None)) == {
        "epochs": 2, "wall_hours": 2.0, "cpu_hours": 1.0}
    assert module.main(["--runs", "codec_0.01", "--repeats", "0", "--out", str(tmp_path)]) == 2
    assert "argument --repeats: expected a positive integer, got '0'" in capsys.readouterr().err


@pytest.mark.parametrize("script,argv,message", [
    ("denoise_correlated", ["--rhos", "1.5"],
     "argument --rhos: expected a correlation in [0, 1], got '1.5'"),  # (sqrt(1 - rho): NaN)
    ("mnist_quality", ["denoise_rgb", "--limit", "10"],
     "MNIST's images have shape (28, 28, 1), but model"),  # (ten lines of Keras's before)
    ("anomaly_mnist", ["--digits", "11"], "argument --digits: invalid choice: 11"),
    # (read as 2 test rows; --csv: without the check, a missing file ends it quickly)
    ("anomaly_ecg5000", ["--test-size", "2", "--csv", "missing.csv"],
     "argument --test-size: expected a fraction in (0, 1), got '2'"),
    ("anomaly_ecg5000", ["--test-size", "0"],
     "argument --test-size: expected a fraction in (0, 1), got '0'"),
])
def test_values_a_benchmark_cannot_use_are_told_in_words(script, argv, message, capsys):
    assert load(script).main(argv) == 2
    error = capsys.readouterr().err  # (argparse's usage lines, then the error line)
    assert message in error.splitlines()[-1] and "Traceback" not in error


# The scripts whose --json went through Path.write_text: a kill or a full disk left half a
# JSON (generative_mnist and generative_samples already used aezoo.runs.write_text).
JSON_WRITERS = ("anomaly_ecg5000", "anomaly_mnist", "compressai_peer", "denoise_architectures",
                "inference", "latent_channels", "mnist_quality", "training_strategies")


def plain_writes(script):
    """A script's `X.write_text(...)` calls but aezoo.runs' (whole or not at all) and a child
    process's result file (`args.result`: compressai_peer's PyTorch children have no aezoo.runs,
    and their parent reads the file only after the child has ended)."""
    tree = ast.parse((ROOT / "benchmarks" / f"{script}.py").read_text())
    return [ast.unparse(node) for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "write_text"
            and ast.unparse(node.func.value) not in ("runs", "args.result")]


@pytest.mark.parametrize("script", JSON_WRITERS)
def test_a_benchmarks_json_is_written_by_the_one_atomic_writer(script):
    assert plain_writes(script) == []
    assert "write_json(" in (ROOT / "benchmarks" / f"{script}.py").read_text()


def test_a_json_the_disk_cannot_hold_leaves_the_old_one(tmp_path, monkeypatch, capsys):
    """latent_channels.py's --json on a full disk: one line, status 2, the old file as it
    was and no partial file beside it (Path.write_text truncated it, then wrote what fitted)."""
    import errno
    import os

    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / "images" / "a.png")
    out = tmp_path / "results" / "channels.json"
    out.parent.mkdir()
    out.write_text("old\n")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    module = load("latent_channels")
    assert module.main(["--images", str(tmp_path / "images"), "--json", str(out)]) == 2
    assert capsys.readouterr().err == ("latent_channels.py: error: No space left on device "
                                       f"({out})\n")
    assert out.read_text() == "old\n" and list(out.parent.iterdir()) == [out]

    monkeypatch.undo()  # a disk with room; a folder that is not there yet is made
    out = tmp_path / "new" / "channels.json"
    assert module.main(["--images", str(tmp_path / "images"), "--json", str(out)]) == 0
    assert [row["model"] for row in json.loads(out.read_text())] == ["codec_0.01"]


@pytest.mark.parametrize("script,option,value", [
    ("anomaly_ecg5000", "--learning-rate", "0"),
    ("anomaly_ecg5000", "--learning-rate", "-1e-3"),
    ("anomaly_ecg5000", "--learning-rate", "nan"),
    ("generative_mnist", "--learning-rate", "0"),
    ("generative_mnist", "--learning-rate", "inf"),
    ("generative_mnist", "--time-limit", "-5"),
    ("generative_mnist", "--time-limit", "nan"),
])
def test_a_rate_or_time_limit_that_is_not_positive_is_refused_with_the_options(
        script, option, value, monkeypatch, capsys):
    """They were plain floats: 0, a negative number or NaN started TensorFlow and the data,
    and a training that learned nothing or stopped after its first epoch."""
    from aezoo.apps import cli

    def started():  # (without the check: fail here, not train)
        raise ValueError("TensorFlow started")

    monkeypatch.setattr(cli, "start_tensorflow", started)
    argv = ["--out", "vae"] if script == "generative_mnist" else []
    assert load(script).main([*argv, f"{option}={value}"]) == 2
    error = capsys.readouterr().err  # (argparse's usage lines, then the error line)
    assert error.splitlines()[-1].endswith(
        f" error: argument {option}: expected a positive, finite number, got {value!r}")


GOOD_CARD = {"summary": "s", "task": "denoise", "model": "m", "data": "d",
             "trained_with": "aezoo denoise train A", "training_time": "1 minute",
             "machine": "2 CPU cores", "headline": "h", "figures": ["f"], "measured_with": "w",
             "check": {"kind": "denoise", "images": "raw/set12", "files": ["01.png"],
                       "noise": "gaussian:25", "seed": 0, "psnr": 30.0}}


@pytest.mark.parametrize("card,message", [
    ({k: v for k, v in GOOD_CARD.items() if k != "check"}, "card.json lacks check."),
    ({**GOOD_CARD, "check": {"kind": "sharpen"}}, "its check needs a kind of denoise, "),
    ({**GOOD_CARD, "check": {"kind": "denoise", "images": "raw/set12"}},
     "its denoise check lacks files, noise, seed."),
    (["not", "a", "card"], "card.json is not a card: a JSON object is needed."),
], ids=["no check", "unknown kind", "check without its fields", "not an object"])
def test_presets_pack_refuses_a_bad_card_before_writing_anything(card, message, tmp_path,
                                                                 monkeypatch, capsys):
    """`pack` wrote run.json and weights.npz, then failed on the card (a KeyError's
    traceback with --compare) and left a preset whose card did not match its files."""
    from aezoo import presets

    module = load("presets")
    run = str(presets.folder("denoise_gray"))  # (a run folder: the preset's, before the patch)
    monkeypatch.setattr(presets, "PRESET_DIR", tmp_path / "presets")
    (tmp_path / "card.json").write_text(json.dumps(card))
    assert module.main(["pack", "tiny", run, "--card", str(tmp_path / "card.json"),
                        "--compare"]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.splitlines()) == 1
    assert not (tmp_path / "presets").exists() and "tiny" not in presets.PRESETS


def test_presets_pack_names_what_it_refuses(tmp_path, capsys):
    """A name that is not a preset yet, without --card, was a SystemExit whose message
    the guarded main dropped: status 2 and nothing said."""
    module = load("presets")
    assert module.main(["pack", "not_a_preset_yet", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "presets.py: error: not_a_preset_yet is not a preset yet: give its card with --card.\n")


def test_every_shipped_card_would_pack():
    """`pack`'s card check asks no more than the shipped cards hold."""
    from aezoo import presets

    module = load("presets")
    for name, card in presets.PRESETS.items():
        module.check_card(card, name, compare=False)


def evaluated(settings, codecs=("jpeg", "webp", "jpeg2000")):
    """A results.json of `aezoo compress evaluate` of the codec presets `settings`."""
    point = {"ms_ssim": 0.95, "encode_s": 0.1, "decode_s": 0.2}
    ours = [{**point, "setting": name, "bpp": 0.25 * (i + 1), "psnr": 29.0 + 2 * i}
            for i, name in enumerate(settings)]
    rates = {f"{quality}_0.25-1.0bpp": -10.0 for quality in ("psnr", "ms_ssim_db")}
    curves = {codec: [{**point, "bpp": b, "psnr": 26.0 + 6 * b} for b in (0.2, 0.5, 1.0, 1.5)]
              for codec in codecs}
    return {"images": ["kodim01"], "curves": {"aezoo": ours, **curves},
            "bd_rate": {codec: dict(rates) for codec in codecs}}


def test_presets_codec_figures_writes_every_card_or_none(tmp_path, monkeypatch, capsys):
    """It rewrote the cards one by one with write_text: a failure at the second left the
    first rewritten (and a kill, a half-written card.json)."""
    from aezoo import presets

    module = load("presets")
    monkeypatch.setattr(presets, "PRESET_DIR", tmp_path)
    (tmp_path / "codec_0.0018").mkdir()
    (tmp_path / "codec_0.0018" / "card.json").write_text("old")
    (tmp_path / "codec_0.004" / "card.json").mkdir(parents=True)  # cannot be written
    (tmp_path / "results.json").write_text(json.dumps(evaluated(["codec_0.0018",
                                                                 "codec_0.004"])))
    assert module.main(["codec-figures", str(tmp_path / "results.json"),
                        "--beside", "alone"]) == 2
    assert "Is a directory" in capsys.readouterr().err
    assert (tmp_path / "codec_0.0018" / "card.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "card.json", "card.json", "codec_0.0018", "codec_0.004", "results.json"]

    (tmp_path / "codec_0.004" / "card.json").rmdir()
    assert module.main(["codec-figures", str(tmp_path / "results.json"),
                        "--beside", "alone"]) == 0
    for name in ("codec_0.0018", "codec_0.004"):
        card = json.loads((tmp_path / name / "card.json").read_text())
        assert card["headline"].startswith("Kodak 0.")


def test_presets_docs_writes_readme_and_the_cards_page_together_or_neither(tmp_path,
                                                                         monkeypatch, capsys):
    """`docs` wrote README.md, then docs/presets.md, with Path.write_text: a full disk at
    the second left the README's table new and the page's cards old (and a kill, half a
    file)."""
    import errno
    import tempfile

    from aezoo import presets

    module = load("presets")
    monkeypatch.setattr(module, "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    readme = "# aezoo\n<!-- presets-table -->\n| old table |\n\nthe rest\n"
    page = "# Presets\n<!-- presets-cards -->\n\nold cards\n"
    (tmp_path / "README.md").write_text(readme)
    (tmp_path / "docs" / "presets.md").write_text(page)
    mkstemp = tempfile.mkstemp

    def full_docs(*args, **kwargs):  # (its disk is full: README's is not)
        if kwargs.get("dir") == tmp_path / "docs":
            raise OSError(errno.ENOSPC, "No space left on device")
        return mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", full_docs)
    assert module.main(["docs"]) == 2
    assert capsys.readouterr().err == ("presets.py: error: No space left on device "
                                       f"({tmp_path / 'docs' / 'presets.md'})\n")
    assert (tmp_path / "README.md").read_text() == readme
    assert (tmp_path / "docs" / "presets.md").read_text() == page
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["README.md", "docs", "presets.md"]

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    assert module.main(["docs"]) == 0
    written = (tmp_path / "README.md").read_text()
    assert "old table" not in written and written.endswith("\n\nthe rest\n")
    assert all(f"| `{name}` |" in written for name in presets.PRESETS)
    assert (tmp_path / "docs" / "presets.md").read_text() == (
        "# Presets\n<!-- presets-cards -->\n\n" + presets.markdown())


def test_presets_codec_figures_refuses_an_evaluation_without_a_classical_codec(tmp_path,
                                                                               capsys):
    """An evaluation run with `--codecs jpeg` (or where Pillow had no WebP or JPEG 2000
    encoder) holds no BD-rates against them: one line before any work, not a KeyError."""
    module = load("presets")
    (tmp_path / "results.json").write_text(json.dumps(evaluated(["codec_0.01"], ("jpeg",))))
    assert module.main(["codec-figures", str(tmp_path / "results.json"),
                        "--beside", "alone"]) == 2
    error = capsys.readouterr().err
    assert "has no webp and no jpeg2000 curve" in error and len(error.splitlines()) == 1


def test_training_strategies_leaves_no_worker_running_when_one_fails(tmp_path, monkeypatch):
    """Of two workers, the first failed: the script exited while the second (which waits
    for its peer for ever in a real multi-worker run) went on running."""
    import subprocess

    module = load("training_strategies")
    started = []

    class Recorded(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(module.subprocess, "Popen", Recorded)
    worker = ("import json, os, sys, time; index = json.loads(os.environ['TF_CONFIG'])"
              "['task']['index']; print('worker', index, 'fails' if index == 0 else 'waits',"
              " file=sys.stderr, flush=True); sys.exit(3) if index == 0 else time.sleep(60)")
    configs = [json.dumps({"task": {"index": i}}) for i in range(2)]
    try:
        with pytest.raises(SystemExit, match="worker 0 fails"):
            module.run([sys.executable, "-c", worker, "--out", "mw"], tmp_path, configs)
        assert len(started) == 2 and all(p.poll() is not None for p in started)
    finally:
        for process in started:  # (without the fix, the waiting one)
            process.kill()
            process.wait()


def test_training_strategies_removes_its_temporary_folder_when_a_run_fails(tmp_path,
                                                                          monkeypatch):
    module = load("training_strategies")
    monkeypatch.setattr(module.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(module, "command", lambda args, epochs, out, *extra: [
        sys.executable, "-c", "import sys; sys.exit('no training here')", "--out", out])
    with pytest.raises(SystemExit, match="no training here"):
        module.main(["--runs", "auto"])
    assert list(tmp_path.iterdir()) == []


HEAVY = ("tensorflow", "keras", "torch", "jax")


@pytest.mark.parametrize("path", [p for p in SCRIPTS if p.name != "offline.py"],
                         ids=lambda p: p.name)
def test_a_benchmarks_help_imports_no_tensorflow(path):
    """--help and usage errors answer at once: TensorFlow (5-8 s here) is imported after
    the options are read (bias_gradient, codec_padding, denoise_8bit, denoise_correlated,
    generative_mnist and generative_samples imported it first)."""
    import os
    import subprocess

    # As `python benchmarks/X.py --help` runs it, then the heavy modules it imported (not
    # `-X importtime`: cli.start_tensorflow() keeps the import's stderr off the terminal).
    script = (f"import runpy, sys; sys.argv = [{str(path)!r}, '--help']; "
              f"sys.path.insert(0, {str(path.parent)!r})\n"
              f"try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
              f"except SystemExit as exit_:\n    assert exit_.code in (0, None), exit_.code\n"
              f"print(sorted(set(m.split('.')[0] for m in sys.modules) & set({HEAVY!r})))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "[]"


def relative_path_defaults(path):
    """The options of a script whose default is a relative path, as "--images '../x'"."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_argument"):
            continue
        for keyword in node.keywords:
            value = keyword.value
            if (keyword.arg == "default" and isinstance(value, ast.Call)
                    and ast.unparse(value.func) == "Path" and value.args):
                value = value.args[0]  # Path("../x")
            if (keyword.arg == "default" and isinstance(value, ast.Constant)
                    and isinstance(value.value, str) and "/" in value.value
                    and not value.value.startswith("/")):
                found.append(f"{ast.unparse(node.args[0])} {value.value!r}")
    return found


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_a_benchmarks_default_paths_do_not_depend_on_the_current_folder(path):
    """"../shared/data/raw/cbsd68" was found only from the repository's root (codec_padding,
    denoise_8bit, denoise_correlated): the offline data is `offline.DATA`, found from the
    script's own place."""
    assert relative_path_defaults(path) == []


def test_the_offline_data_is_found_beside_this_checkout():
    from conftest import SHARED_DATA

    assert load("offline").DATA == SHARED_DATA.resolve() and SHARED_DATA.is_absolute()


def test_no_benchmark_option_takes_any_float():
    """A plain `type=float` takes 0, negative numbers and NaN, which a benchmark reads as a
    training that learns nothing, a time limit already past, a noise of NaN: every number
    option goes through aezoo.apps.cli's checked types (postfilter's --learning-rate,
    --minutes and --step-seconds, denoise_8bit's --sigmas and four more did not)."""
    import ast

    for path in SCRIPTS:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                for keyword in node.keywords:
                    assert not (keyword.arg == "type" and ast.unparse(keyword.value) == "float"), \
                        f"{path.name}:{node.lineno}: use a checked type of aezoo.apps.cli"
