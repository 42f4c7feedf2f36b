"""README and docs stay true to the code: the model table, the test command, and every
command they show parses with the options it names."""

import re
import shlex
import subprocess

import pytest
from conftest import ROOT

import aezoo
from aezoo.apps import main as aezoo_command

README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").glob("*.md"))


def test_readme_model_table_lists_exactly_the_models_of_the_zoo():
    table = README.split("<!-- models-table -->", 1)[1].split("\n\n", 1)[0]
    names = re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)
    assert set(names) == set(aezoo.MODELS), "README's model table and MODELS differ"
    assert names == list(aezoo.MODELS), "README's model table lists the models in MODELS' order"


def test_ci_runs_the_test_command_written_in_the_readme():
    block = README.split("<!-- test-command -->", 1)[1]
    command = block.split("```bash\n", 1)[1].split("\n```", 1)[0]
    assert "pip install" in command and "pytest" in command
    printed = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run"), "--print-command"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert printed == command


def shell_blocks(text: str) -> list[str]:
    """The code blocks fenced as bash, sh or with no language."""
    blocks, current, language = [], None, None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current, language = [], line[3:].strip()
            else:
                if language in ("", "bash", "sh"):
                    blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def aezoo_commands(text: str) -> list[list[str]]:
    """Every `aezoo ...` command of the text's shell code blocks and tables, as argument
    lists.

    Continued lines are joined, a quoted string may span lines, variables set in the block
    (`COMMON="..."`) are expanded, and others (a loop's `$L`) stand for "1".
    """
    commands = []
    for block in shell_blocks(text):
        variables: dict[str, str] = {}
        pending = ""
        for line in block.replace("\\\n", " ").splitlines():
            line = pending + line
            try:
                shlex.split(line, comments=True)
            except ValueError:  # a quotation that goes on in the next line
                pending = line + " "
                continue
            pending = ""
            assignment = re.match(r"^(\w+)=(\"[^\"]*\"|'[^']*'|\S*)$", line.strip())
            if assignment:
                variables[assignment[1]] = assignment[2].strip("\"'")
                continue
            line = re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m[1], "1"), line)
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
            lexer.whitespace_split = True
            words: list[str] = []
            for word in [*lexer, ";"]:  # commands end at ;, &&, | (outside quotes)
                if word.strip(";&|"):
                    words.append(word)
                    continue
                while words and "=" in words[0] and not words[0].startswith("-"):
                    words = words[1:]  # VAR=value prefixes
                if words[:1] == ["aezoo"] and len(words) > 1:
                    commands.append(words[1:])
                words = []
    for row in (line for line in text.splitlines() if line.startswith("|")):
        commands += [shlex.split(code)[1:] for code in re.findall(r"`(aezoo [^`]+)`", row)]
    return commands


def assert_parse(commands: list[list[str]], where: str) -> None:
    import importlib

    for argv in commands:
        name = argv[0]
        assert name in aezoo_command.COMMANDS, f"{where}: no command {name!r}"
        module = importlib.import_module(f"aezoo.apps.{aezoo_command.COMMANDS[name][0]}")
        try:
            module.build_parser().parse_args(argv[1:])
        except SystemExit as error:
            raise AssertionError(f"{where}: `aezoo {' '.join(argv)}` does not parse") \
                from error


@pytest.mark.parametrize("document", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_every_documented_command_parses(document):
    commands = aezoo_commands(document.read_text())
    # (an extractor that found nothing would pass every page: each shows commands but this)
    assert commands or document.name == "development.md", f"no aezoo command in {document.name}"
    assert_parse(commands, document.name)


def test_every_command_of_a_model_card_parses():
    """A card's `trained_with` and `measured_with` are how a preset is made again: their
    aezoo commands (in prose: each ends at ";", "(", ")", ", " or " then ") must stay
    commands of this version when an option is renamed."""
    from aezoo import presets

    commands = []
    for name, card in presets.PRESETS.items():
        for field in ("trained_with", "measured_with"):
            for match in re.finditer(r"\baezoo ([a-z]+)\b([^;()]*)", card.get(field, "")):
                words = shlex.split(re.split(r",\s| then ", match[2])[0])
                commands.append((name, field, [match[1], *words]))
    assert len(commands) > 2 * len(presets.PRESETS)
    for name, field, argv in commands:
        assert_parse([argv], f"{name}'s card.json ({field})")


@pytest.mark.parametrize("name", list(aezoo_command.COMMANDS))
def test_every_command_in_a_commands_docstring_parses(name):
    import importlib

    module = importlib.import_module(f"aezoo.apps.{aezoo_command.COMMANDS[name][0]}")
    # The docstring's examples are its paragraphs indented by 4 spaces.
    blocks = [block for block in re.split(r"\n\s*\n", module.__doc__)
              if all(line.startswith("    ") for line in block.strip("\n").splitlines())]
    commands = aezoo_commands("".join(f"```bash\n{block}\n```\n" for block in blocks))
    assert any(argv[0] == name for argv in commands)
    assert_parse(commands, module.__name__)


def test_readme_presets_table_is_the_cards_headlines():
    from aezoo import presets

    table = README.split("<!-- presets-table -->", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `([\w.]+)` \| (\w+) \| (.*) \|$", table, flags=re.MULTILINE)
    assert [name for name, _, _ in rows] == sorted(presets.PRESETS)
    for name, task, headline in rows:
        assert (task, headline) == (presets.PRESETS[name]["task"], presets.PRESETS[name]["headline"])


def test_docs_presets_page_shows_every_card_as_it_is():
    from aezoo import presets

    page = (ROOT / "docs" / "presets.md").read_text()
    cards = page.split("<!-- presets-cards -->\n\n", 1)[1]
    assert cards == presets.markdown(), "run: python benchmarks/presets.py docs"


def subcommand_options(argv: list[str]) -> set[str]:
    """The option strings of the (sub)command that `aezoo ARGV` runs."""
    import argparse
    import importlib

    parser = importlib.import_module(
        f"aezoo.apps.{aezoo_command.COMMANDS[argv[0]][0]}").build_parser()
    for word in argv[1:]:
        actions = [action for action in parser._actions
                   if isinstance(action, argparse._SubParsersAction)]
        if not actions or word not in actions[0].choices:
            break
        parser = actions[0].choices[word]
    return {option for action in parser._actions for option in action.option_strings}


@pytest.mark.parametrize("document", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_every_option_of_a_command_in_the_prose_exists(document):
    """The `aezoo ...` code spans of the prose are often parts of commands, which do not
    parse alone (`aezoo denoise evaluate --8-bit`); every option they name must still be
    one of that command's.  A span may hold several commands, joined by ";", "then" or
    parentheses."""
    prose = re.sub(r"^```.*?^```", "", document.read_text(), flags=re.S | re.M)
    for span in re.findall(r"`(aezoo [^`]+)`", prose):
        for part in re.split(r";|\bthen\b|[()]", span):
            words = part.split()
            words = words[words.index("aezoo") + 1:] if "aezoo" in words else []
            if not words or words[0] not in aezoo_command.COMMANDS:
                continue
            options = subcommand_options(words)
            for word in words:
                option = word.split("=")[0].rstrip(",.")
                if option.startswith("--"):
                    assert option in options, \
                        f"{document.name}: `{part.strip()}` has no {option}"


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped,
    spaces made hyphens, a repeated heading numbered."""
    anchors, seen, fenced = set(), {}, False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"#+\s+(.*)", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading[1].strip().lower()).replace(" ", "-")
            anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


MARKDOWN = [ROOT / "README.md", *DOCS, ROOT / "benchmarks" / "README.md"]


@pytest.mark.parametrize("document", MARKDOWN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_relative_link_and_script_of_the_docs_exists(document):
    """Links to files and headings (`training.md#the-run-folder`) resolve, and every
    `python benchmarks/X.py` the page runs is there."""
    text = document.read_text()
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", link):  # (https:, mailto:)
            continue
        path, _, anchor = link.partition("#")
        target = document.parent / path if path else document
        assert target.exists(), f"{document.name}: the link {link} leads nowhere"
        if anchor and target.suffix == ".md":
            assert anchor in heading_anchors(target.read_text()), \
                f"{document.name}: {target.name} has no heading for #{anchor}"
    for script in re.findall(r"python (benchmarks/[\w/]+\.py)", text):
        assert (ROOT / script).is_file(), f"{document.name}: no {script}"


@pytest.mark.slow
def test_the_quick_start_runs_as_written(tmp_path):
    """README's Python quick start, in a fresh process in an empty folder (about 3 minutes):
    it must run, and its classifier must reach the accuracy README promises."""
    import sys

    code = README.split("## Quick start", 1)[1].split("```python\n", 1)[1].split("\n```", 1)[0]
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    mse = float(re.search(r"test MSE ([0-9.e-]+)", result.stdout)[1])
    assert mse < 0.0035
    loss, accuracy = map(float, re.findall(r"\[([0-9.e-]+), ([0-9.e-]+)\]", result.stdout)[-1])
    assert accuracy > 0.85
    assert (tmp_path / "mnist_conv16.keras").is_file()
