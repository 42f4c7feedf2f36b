"""aezoo.runs: files appear whole under their final names, or not at all; runs open by name."""

import pytest

from aezoo import runs


def test_writing_renames_a_written_file_into_place_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "plot.png"
    with runs.writing(target) as temporary:
        assert temporary.parent == tmp_path and temporary != target
        temporary.write_bytes(b"\x89PNG data")
        assert not target.exists()  # not under its name before the block ends
    assert target.read_bytes() == b"\x89PNG data"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_writing_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "plot.png"
    target.write_bytes(b"old")
    with pytest.raises(ZeroDivisionError), runs.writing(target) as temporary:
        temporary.write_bytes(b"half")
        1 / 0  # noqa: B018
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_writing_refuses_to_put_an_empty_file_under_the_name(tmp_path):
    target = tmp_path / "samples.png"
    with pytest.raises(RuntimeError, match="Nothing was written"), runs.writing(target):
        pass  # a writer that forgot to write
    assert list(tmp_path.iterdir()) == []


def test_a_disk_error_names_the_file_being_written_not_its_temporary(tmp_path, monkeypatch):
    # A full disk fails in write(), whose OSError names no file; a read-only one in making
    # the hidden temporary file beside it: either way the line names the output.
    import errno
    import os

    target = tmp_path / "kodim01.aez"
    with pytest.raises(OSError) as raised, runs.writing(target) as temporary:
        temporary.write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(target))
    assert list(tmp_path.iterdir()) == []

    def read_only(*args, dir, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), f"{dir}/.kodim01.x1.partial.aez")

    monkeypatch.setattr(runs.tempfile, "mkstemp", read_only)
    with pytest.raises(OSError) as raised:
        runs.write_bytes(target, b"data")
    assert (raised.value.errno, raised.value.filename) == (errno.EROFS, str(target))
    monkeypatch.undo()
    # An error about another file the writer reads (a font, say) keeps that file's name.
    with pytest.raises(FileNotFoundError) as raised, runs.writing(target):
        open(tmp_path / "missing.ttf")
    assert raised.value.filename == str(tmp_path / "missing.ttf")


def test_write_bytes_writes_even_an_empty_file(tmp_path):
    runs.write_bytes(tmp_path / "empty.bin", b"")
    assert (tmp_path / "empty.bin").read_bytes() == b""


def test_a_task_that_no_command_has_is_refused_by_name():
    with pytest.raises(ValueError, match=r"`task` must be one of 'train', .* Received: "
                                         r"task='bogus'"):
        runs.load_run("conv_mnist", task="bogus")


def test_a_preset_name_given_as_a_model_file_is_pointed_to_from_preset(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No such model file: conv_mnist \(the "
                                                r"preset: aezoo.from_preset\('conv_mnist'\)\)"):
        runs.load_model("conv_mnist")
    with pytest.raises(FileNotFoundError, match=r"No such model file: .*gone.keras$"):
        runs.load_model(tmp_path / "gone.keras")


def test_a_folder_another_thread_holds_is_refused_as_another_process_s(tmp_path):
    import threading

    outcome = []

    def second():
        try:
            with runs.locked(tmp_path):
                outcome.append("held")
        except ValueError as error:
            outcome.append(str(error))

    with runs.locked(tmp_path), runs.locked(tmp_path):  # this thread: held already
        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
    assert outcome == [f"{tmp_path} is in use by another aezoo process (a training in "
                       "progress); wait for it to finish, or stop it, before using this folder."]
    second()  # released: the other thread may hold it now
    assert outcome[-1] == "held"


def test_together_renames_nothing_where_a_name_is_a_folder(tmp_path):
    (tmp_path / "results.md").mkdir()
    (tmp_path / "results.json").write_text("old")
    with pytest.raises(IsADirectoryError) as raised, runs.together():
        runs.write_text(tmp_path / "results.json", "new")
        runs.write_text(tmp_path / "results.md", "new")
    assert raised.value.filename == str(tmp_path / "results.md")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.md"]
    assert (tmp_path / "results.json").read_text() == "old"


def test_files_written_together_take_their_names_together_or_not_at_all(tmp_path):
    old = {"results.md": b"old table", "results.json": b"old json", "samples.png": b"old"}
    for name, content in old.items():
        (tmp_path / name).write_bytes(content)
    with pytest.raises(OSError, match="No space left"), runs.together():
        runs.write_text(tmp_path / "results.md", "new table")
        with runs.writing(tmp_path / "samples.png") as temporary:
            temporary.write_bytes(b"new")
        assert (tmp_path / "results.md").read_bytes() == b"old table"  # not yet
        raise OSError(28, "No space left on device")  # as the third write would
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == old  # no temporaries
    with runs.together():
        runs.write_text(tmp_path / "results.md", "new table")
        with runs.together():  # (a block inside another belongs to the outer one)
            runs.write_text(tmp_path / "results.json", "new json")
        assert (tmp_path / "results.json").read_bytes() == b"old json"
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {
        "results.md": b"new table", "results.json": b"new json", "samples.png": b"old"}


def test_an_out_dir_of_training_train_loads_with_its_model_and_arguments(tmp_path):
    """Python's `training.train(out_dir=...)` writes no run.json: its folder was read as a
    run of aezoo 0.1 with no model."""
    import numpy as np

    from aezoo import training

    x = np.random.default_rng(0).random((16, 6), dtype=np.float32)
    training.train("dense", x, model_kwargs={"units": (4,), "latent_dim": 2}, epochs=1,
                   batch_size=8, out_dir=tmp_path / "run", seed=3, verbose=0)
    run = runs.load_run(tmp_path / "run")
    assert (run.task, run.info["model"], run.info["aezoo_version"]) == ("train", "dense", None)
    assert run.info["options"]["model_kwargs"] == {"units": [4], "latent_dim": 2}
    assert run.info["options"]["seed"] == 3
    assert run.model.encoder.output.shape == (None, 2)
    assert runs.model_name(tmp_path / "run") == "dense"
