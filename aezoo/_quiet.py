"""Keeps TensorFlow's start-up chatter off the terminal, and other libraries' errors to the
one line that a command prints."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile


@contextlib.contextmanager
def stderr_captured():
    """Sends file descriptor 2 to a temporary file; replays it only if the body fails (not
    when it is interrupted).

    TensorFlow's C++ code writes oneDNN, CPU-feature and CUDA-probe notices straight to fd 2
    when it loads, before any log level applies; they are not actionable, and they would bury
    the one-line errors of aezoo's commands.  TF_CPP_MIN_LOG_LEVEL=0 shows them.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except KeyboardInterrupt:  # (Ctrl-C, SIGTERM: stopped, not failed; nothing to show)
            raise
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def first_line(error: BaseException, limit: int = 200, named: bool = False) -> str:
    """The gist of another library's error (TensorFlow, Keras, tfds, NumPy) for a one-line
    message: its first line, without TensorFlow's graph-node names, at most `limit`
    characters; its class name when it says nothing.  `named`: after its class name
    ("OSError: ..."), which is then said once."""
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", getattr(error, "message", None) or str(error))
    name = type(error).__name__
    if not text.strip():
        return name
    line = text.strip().splitlines()[0][:limit]
    return f"{name}: {line}" if named else line
