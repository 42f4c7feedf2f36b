"""A training killed with SIGKILL at random points (in an epoch, while it saves a checkpoint
or its backup, while it finishes the run) always resumes, completes or says in one line what
to do; it never leaves a `model.keras` that does not load, or a finished run that is not."""

import json
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from workers import environment

from aezoo import runs


# A minute and more of waiting for processes to start and be killed: `-m slow`.  The
# default run keeps test_apps_train.py's kill within an epoch and its resume.
@pytest.mark.slow
def test_random_kills_end_in_a_finished_run_that_loads(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((512, 8, 8, 1), np.float32))
    command = [sys.executable, "-m", "aezoo", "train", "--arrays", "x.npy", "--filters", "4",
               "8", "--latent-dim", "4", "--batch-size", "16", "--epochs", "4", "--out", "run"]
    run = tmp_path / "run"
    rng = random.Random(0)
    kills = 0
    for _ in range(12):  # a few kills, then let it finish
        process = subprocess.Popen(command, cwd=tmp_path, env=environment(),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if kills < 5:
            # TensorFlow takes a few seconds to start; then an epoch takes about a second.
            time.sleep(rng.uniform(3.0, 12.0))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.communicate()
                kills += 1
                model = run / "model.keras"
                if model.exists():  # whatever was killed, a saved model is whole
                    runs.load_model(model)
                continue
        out, err = process.communicate(timeout=600)
        if process.returncode == 0:
            break
        # Not finished: it must say why in one line, and say what to do.
        assert process.returncode == 2 and err.count("\n") == 1, err
        if "finished run" in err:  # a kill after run.json, written last: the run is complete
            break
        assert "delete" in err and "backup" in err, err
        __import__("shutil").rmtree(run / "backup")  # the way out it names
    else:
        raise AssertionError("the run never finished")
    finished = runs.load_run(run, task="train")
    assert finished.model.input_shape == (None, 8, 8, 1)
    history = json.loads((run / "history.json").read_text())
    assert len(history["loss"]) == 4 and np.isfinite(history["loss"]).all()
    assert (run / "export" / "1" / "saved_model.pb").is_file()
    assert not list(run.rglob("*.partial*"))  # no temporary file under the run
