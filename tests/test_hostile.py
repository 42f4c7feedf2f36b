"""Hostile input and faults, over every command: each is refused with exit status 2 and one
line on stderr naming the file or option, with no traceback and nothing left under a final
name (issue 18's table)."""

import errno
import os
import zipfile
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from PIL import Image

import aezoo
from aezoo import runs
from aezoo.anomaly import Detector
from aezoo.apps import anomalies, compress, denoise, explore, export, generate, train


def write_png(path, shape=(32, 32), seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def damaged_zip(source: Path, target: Path) -> Path:
    """A copy of a .keras file whose weights member fails its CRC (the zip still opens)."""
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = archive.getinfo("model.weights.h5")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Small runs of every task, good inputs, and damaged copies of them."""
    root = tmp_path_factory.mktemp("world")
    keras.utils.set_random_seed(0)
    (root / "images").mkdir()
    for i in range(3):
        write_png(root / "images" / f"{i}.png", seed=i)
    jpeg = root / "images" / "3.jpg"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(jpeg, quality=90)
    (root / "truncated").mkdir()
    for i in range(2):
        write_png(root / "truncated" / f"{i}.png", seed=i)
    (root / "truncated" / "2.jpg").write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    (root / "tiny").mkdir()  # a good image, then one too small for SSIM
    write_png(root / "tiny" / "0.png")
    write_png(root / "tiny" / "1.png", shape=(5, 5))

    def run(name, model, task, application=None):
        folder = root / name
        folder.mkdir()
        model.save(folder / "model.keras")
        runs.write_run(folder, task=task, model=model.get_config()["model"], options={},
                       application=application)
        return folder

    run("denoiser", aezoo.MODELS["denoising"](filters=(4, 8), latent_dim=8), "denoise",
        {"noise": "gaussian:25", "kind": "gaussian", "level": 0.1, "channels": 1})
    codec = aezoo.MODELS["compression"](input_shape=(None, None, 1), filters=(4, 4),
                                        latent_dim=4)
    codec.entropy_bottleneck.finalise()
    run("codec", codec, "compress")
    run("plain", aezoo.MODELS["conv"](input_shape=(28, 28, 1), latent_dim=4, filters=(4, 8)),
        "train")
    rows = np.sin(np.linspace(0, 6, 40) + np.arange(32)[:, None]).astype(np.float32)
    np.savetxt(root / "rows.csv", rows, delimiter=",", fmt="%.5f")
    (root / "one_row.csv").write_text(",".join(["0.5"] * 40) + "\n")
    Detector(epochs=1, latent_dim=2).fit(rows).save(root / "detector")

    for name in ("denoiser", "codec", "plain"):
        (root / f"{name}_crc").mkdir()
        (root / f"{name}_crc" / "run.json").write_text((root / name / "run.json").read_text())
        damaged_zip(root / name / "model.keras", root / f"{name}_crc" / "model.keras")
        (root / f"{name}_text").mkdir()
        (root / f"{name}_text" / "run.json").write_text((root / name / "run.json").read_text())
        (root / f"{name}_text" / "model.keras").write_text("not a zip")
        (root / f"{name}_short").mkdir()
        (root / f"{name}_short" / "run.json").write_text((root / name / "run.json").read_text())
        whole = (root / name / "model.keras").read_bytes()
        (root / f"{name}_short" / "model.keras").write_bytes(whole[: len(whole) // 2])
    (root / "bad_json").mkdir()
    (root / "bad_json" / "model.keras").write_bytes((root / "plain" / "model.keras").read_bytes())
    (root / "bad_json" / "run.json").write_text("{not json")
    return root


W = "{w}"  # stands for the world folder in the table below
OUT = "{out}"  # a fresh output folder of the test

# name -> (command, argv, words of the one-line message)
CASES = {
    # image files
    "train truncated jpeg": (train, ["--images", f"{W}/truncated", "--patch", "8", "--out", OUT],
                             "truncated"),
    "denoise truncated jpeg": (denoise, ["denoise", "--model", f"{W}/denoiser",
                                         f"{W}/truncated", "--out", OUT], "truncated"),
    "evaluate truncated jpeg": (denoise, ["evaluate", "--model", f"{W}/denoiser", "--images",
                                          f"{W}/truncated", "--noise", "gaussian:25",
                                          "--methods", "aezoo", "--out", OUT], "truncated"),
    "compress truncated jpeg": (compress, ["compress", "--model", f"{W}/codec",
                                           f"{W}/truncated/0.png", f"{W}/truncated/2.jpg",
                                           "--out", OUT], "truncated"),
    "codec training truncated jpeg": (compress, ["train", "--images", f"{W}/truncated",
                                                 "--patch", "16", "--out", OUT], "truncated"),
    # model files: a zip whose weights fail their CRC, not a zip, half a file, bad run.json
    **{f"{command} {model} {kind}": (module, [*argv(model + "_" + kind)], words)
       for kind, words in (("crc", "fails its checksum"), ("text", "damaged or truncated"),
                           ("short", "damaged or truncated"))
       for command, module, model, argv in (
           ("denoise", denoise, "denoiser",
            lambda m: ["denoise", "--model", f"{W}/{m}", f"{W}/images/0.png", "--out", OUT]),
           ("compress", compress, "codec",
            lambda m: ["compress", "--model", f"{W}/{m}", f"{W}/images/0.png", "--out", OUT]),
           ("export", export, "plain", lambda m: [f"{W}/{m}", OUT]),
           ("explore", explore, "plain",
            lambda m: ["--model", f"{W}/{m}", "--dataset", "mnist", "--out", OUT]),
           ("train --init", train, "plain",
            lambda m: ["--images", f"{W}/images", "--patch", "8", "--init", f"{W}/{m}",
                       "--out", OUT]),
       )},
    "damaged run.json": (export, [f"{W}/bad_json", OUT], "is damaged"),
    # impossible options
    "learning rate 0": (train, ["--images", f"{W}/images", "--learning-rate", "0", "--out", OUT],
                        "--learning-rate"),
    "learning rate nan": (denoise, ["train", "--images", f"{W}/images", "--noise",
                                    "gaussian:25", "--learning-rate", "nan", "--out", OUT],
                          "--learning-rate"),
    "negative learning rate": (compress, ["train", "--images", f"{W}/images",
                                          "--learning-rate", "-1", "--out", OUT],
                               "--learning-rate"),
    "zero steps": (train, ["--images", f"{W}/images", "--steps-per-epoch", "0", "--out", OUT],
                   "--steps-per-epoch"),
    "zero patch": (train, ["--images", f"{W}/images", "--patch", "0", "--out", OUT], "--patch"),
    "zero image size": (train, ["--images", f"{W}/images", "--image-size", "0", "0",
                                "--out", OUT], "--image-size"),
    "zero time limit": (train, ["--images", f"{W}/images", "--time-limit", "0", "--out", OUT],
                        "--time-limit"),
    "contamination 0": (anomalies, ["train", "--csv", f"{W}/rows.csv", "--threshold",
                                    "contamination:0", "--out", OUT], "threshold must be"),
    "contamination 1": (anomalies, ["train", "--csv", f"{W}/rows.csv", "--threshold",
                                    "contamination:1", "--out", OUT], "threshold must be"),
    "test size 1.5": (anomalies, ["train", "--csv", f"{W}/rows.csv", "--split", "train",
                                  "--test-size", "1.5", "--out", OUT], "test size"),
    "one-row csv": (anomalies, ["train", "--csv", f"{W}/one_row.csv", "--out", OUT],
                    "at least 2"),
    "export version beyond int64": (export, [f"{W}/plain", OUT, "--version", str(2**63)],
                                    "below 2**63"),
    "log dir is a file": (train, ["--images", f"{W}/images", "--log-dir", f"{W}/rows.csv",
                                  "--out", OUT], "is a file"),
    "missing tfds folder": (train, ["--dataset", "mnist", "--data-dir", f"{W}/nowhere",
                                    "--out", OUT], "No such folder"),
    "noise range in evaluate": (denoise, ["evaluate", "--model", f"{W}/denoiser", "--images",
                                          f"{W}/images", "--noise", "gaussian:0-50",
                                          "--methods", "aezoo", "--out", OUT],
                                "one noise level"),
    "walk out of range": (explore, ["--model", f"{W}/plain", "--dataset", "mnist",
                                    "--examples", "20", "--probe-train", "20", "--walk", "0",
                                    "99", "--out", OUT], "outside the 20 examples"),
    "tile too small": (denoise, ["denoise", "--model", f"{W}/denoiser", f"{W}/images",
                                 "--tile", "10", "--out", OUT], "--tile"),
    "image too small for ssim": (denoise, ["evaluate", "--model", f"{W}/denoiser", "--images",
                                           f"{W}/tiny", "--noise", "gaussian:25", "--methods",
                                           "aezoo", "--out", OUT], "1.png is 5x5 pixels"),
    "empty out": (denoise, ["denoise", "--model", f"{W}/denoiser", f"{W}/images/0.png",
                            "--out", ""], "empty path"),
    "one example to map": (explore, ["--model", f"{W}/plain", "--dataset", "mnist",
                                     "--examples", "1", "--out", OUT], "--examples"),
    "walk of one step": (explore, ["--model", f"{W}/plain", "--dataset", "mnist", "--steps",
                                   "1", "--out", OUT], "--steps"),
    "score a denoiser as a detector": (anomalies, ["score", "--model", f"{W}/denoiser",
                                                   "--csv", f"{W}/rows.csv", "--out", OUT],
                                       "not of `aezoo anomalies train`"),
}


def fill(argv, world, out):
    return [a.replace(W, str(world)).replace(OUT, str(out)) for a in argv]


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")} if folder.exists() else set()


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_is_one_line_status_two_and_writes_nothing(case, world, tmp_path,
                                                                 capsys):
    module, argv, words = CASES[case]
    out = tmp_path / "out"
    before = files_under(world)
    status = module.main(fill(argv, world, out))
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err, err
    assert not out.exists(), f"{case}: left {sorted(files_under(out))}"
    assert files_under(world) == before


@pytest.mark.parametrize("where", ["file", "file/sub", "read-only/sub"])
@pytest.mark.parametrize("command", ["denoise evaluate", "compress evaluate", "anomalies score",
                                     "explore", "generate", "denoise", "compress", "export"])
def test_a_file_in_the_place_of_the_out_folder_is_refused_before_any_work(command, where,
                                                                          world, tmp_path,
                                                                          capsys, monkeypatch):
    """--out naming a file (or a folder under one, or under a folder that cannot be written)
    is refused before a model is loaded, not after minutes of evaluation (or of decoding
    every input) when the results are written."""

    def loaded(*args, **kwargs):
        raise AssertionError("a model was loaded before --out was checked")

    monkeypatch.setattr(runs, "load_run", loaded)
    monkeypatch.setattr(runs, "open_for_export", loaded)
    (tmp_path / "file").write_text("mine")
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    # A read-only disk, as os.access and statvfs see it (a test cannot mount one, and root
    # may write any folder).
    access, statvfs = os.access, os.statvfs
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        Path(path) != read_only and access(path, mode, **kw)))
    monkeypatch.setattr(os, "statvfs", lambda path: (
        SimpleNamespace(f_flag=os.ST_RDONLY) if Path(path) == read_only else statvfs(path)))
    out = str(tmp_path / where)
    module, argv = {
        "denoise evaluate": (denoise, ["evaluate", "--model", f"{world}/denoiser", "--images",
                                       f"{world}/images", "--noise", "gaussian:25"]),
        "compress evaluate": (compress, ["evaluate", "--model", f"{world}/codec", "--images",
                                         f"{world}/images"]),
        "anomalies score": (anomalies, ["score", "--model", f"{world}/detector", "--csv",
                                        f"{world}/rows.csv"]),
        "explore": (explore, ["--model", f"{world}/plain", "--dataset", "mnist"]),
        "generate": (generate, ["--model", f"{world}/plain"]),
        "denoise": (denoise, ["denoise", "--model", f"{world}/denoiser",
                              f"{world}/images/0.png"]),
        "compress": (compress, ["compress", "--model", f"{world}/codec",
                                f"{world}/images/0.png"]),
        "export": (export, ["--model", f"{world}/plain"]),
    }[command]
    assert module.main([*argv, "--out", out]) == 2
    err = capsys.readouterr().err
    expected = (f"Read-only file system ({read_only})" if where.startswith("read-only")
                else f"{tmp_path / 'file'} is a file; a folder is needed")
    assert err.count("\n") == 1 and expected in err, err
    assert (tmp_path / "file").read_text() == "mine" and not any(read_only.iterdir())


@pytest.mark.parametrize("code,words", [(errno.ENOSPC, "No space left on device"),
                                        (errno.EROFS, "Read-only file system")])
@pytest.mark.parametrize("command", ["denoise", "compress", "anomalies", "explore"])
def test_a_full_or_read_only_disk_is_one_line_and_no_final_file(command, code, words, world,
                                                                 tmp_path, capsys,
                                                                 monkeypatch):
    # Every output goes through runs.write_bytes / runs.writing: make the disk refuse them.
    def refuse(*args, **kwargs):
        raise OSError(code, words, str(tmp_path / "out" / "file"))

    monkeypatch.setattr(runs.tempfile, "mkstemp", refuse)
    out = tmp_path / "out"
    argv = {
        "denoise": (denoise, ["denoise", "--model", f"{W}/denoiser", f"{W}/images/0.png",
                              "--out", OUT]),
        "compress": (compress, ["compress", "--model", f"{W}/codec", f"{W}/images/0.png",
                                "--out", OUT]),
        "anomalies": (anomalies, ["score", "--model", f"{W}/detector", "--csv",
                                  f"{W}/rows.csv", "--out", OUT]),
        "explore": (explore, ["--model", f"{W}/plain", "--dataset", "mnist", "--examples",
                              "20", "--probe-train", "20", "--out", OUT]),
    }[command]
    status = argv[0].main(fill(argv[1], world, out))
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and words in err, err
    assert not [p for p in files_under(out) if p.is_file()]


def test_sigterm_stops_a_command_as_ctrl_c_does_and_leaves_no_temporary_file(tmp_path, capsys,
                                                                             monkeypatch):
    """`kill`, `timeout` and job schedulers send SIGTERM, which Python's default ends on the
    spot: `aezoo generate` left a hidden `.samples.*.partial.png` of 0 bytes.  Now it stops
    as after Ctrl-C: one line, status 143 (128 + SIGTERM), no temporary file, and the
    process's own SIGTERM handler back as it was."""
    import signal

    import matplotlib.figure

    savefig = matplotlib.figure.Figure.savefig

    def killed_while_saving(figure, path, *args, **kwargs):
        savefig(figure, path, *args, **kwargs)
        assert Path(path).name.startswith(".") and ".partial" in Path(path).name
        os.kill(os.getpid(), signal.SIGTERM)  # the handler raises before this returns
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", killed_while_saving)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out"
    status = generate.main(["--model", "vae_mnist", "--samples", "8", "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 128 + signal.SIGTERM and err == "aezoo generate: interrupted\n", err
    assert not [p for p in files_under(out) if p.is_file()], sorted(files_under(out))
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("code,status,said", [(None, 0, ""), (0, 0, ""), (3, 3, ""),
                                              ("no such preset: x", 2,
                                               "prog: error: no such preset: x\n")])
def test_a_guarded_main_that_exits_says_why(code, status, said, capsys):
    """sys.exit("why") in a command (or a benchmark) said nothing and gave status 2: the
    guard dropped the message."""
    import sys

    from aezoo.apps import cli

    @cli.guarded("prog")
    def main(argv=None):
        sys.exit(code)

    assert main([]) == status
    assert capsys.readouterr().err == said


def test_a_second_sigterm_does_not_cut_the_cleanup_short(capsys):
    """Schedulers, and `kill` of a process group, may send SIGTERM again: the first stops
    the command, and its cleanup (deleting temporaries) runs to its end."""
    import signal
    import time

    from aezoo.apps import cli

    cleaned = []

    @cli.guarded("prog")
    def main(argv=None):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)  # (where a second handler would run)
            cleaned.append(True)

    assert main([]) == 143 and cleaned == [True]
    assert capsys.readouterr().err == "prog: interrupted\n"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_sigterm_the_caller_ignores_stays_ignored():
    import signal

    from aezoo.apps import cli

    @cli.guarded("prog")
    def main(argv=None):
        os.kill(os.getpid(), signal.SIGTERM)
        return 0

    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        assert main([]) == 0
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_command_stuck_in_an_op_is_killed_after_the_grace(tmp_path):
    """Python runs its SIGTERM handler only between bytecodes: a command blocked in a
    TensorFlow op (a collective waiting for a dead peer) would never stop, where Python's
    default SIGTERM ended it.  The watchdog kills it after cli.TERMINATE_GRACE seconds."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "stuck.py"
    script.write_text(
        "import sys\n"
        "from aezoo.apps import cli\n"
        "cli.TERMINATE_GRACE = 1.0\n"
        "@cli.guarded('prog')\n"
        "def main(argv=None):\n"
        "    import tensorflow as tf\n"
        "    queue = tf.queue.FIFOQueue(1, tf.float32)\n"
        "    print('blocked', flush=True)\n"
        "    queue.dequeue()  # never fed\n"
        "sys.exit(main())\n")
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert process.stdout.readline() == "blocked\n"
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert time.monotonic() - started >= 0.9
