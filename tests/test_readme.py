"""README stays true to the code: its model table and its commands."""

import re
import subprocess
import sys

import aezoo
from conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_readme_model_table_lists_exactly_the_models_of_the_zoo():
    table = README.split("<!-- models-table -->", 1)[1].split("\n\n", 1)[0]
    names = re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)
    assert names == list(aezoo.MODELS)


def test_ci_runs_the_test_command_written_in_the_readme():
    block = README.split("<!-- test-command -->", 1)[1]
    command = block.split("```bash\n", 1)[1].split("\n```", 1)[0]
    assert "pip install" in command and "pytest" in command
    printed = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run"), "--print-command"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert printed == command


def test_readme_training_command_names_real_options():
    from aezoo import train

    command = next(line for line in README.splitlines() if "python -m aezoo.train" in line)
    argv = command.split("python -m aezoo.train", 1)[1].split()
    args = train.parse_args(argv)
    assert args.model == "conv" and args.dataset == "mnist" and args.model_latent_dim == 32
    assert sys.modules["aezoo.train"] is train
