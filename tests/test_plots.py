"""aezoo.plots: figures that show all they hold."""

import numpy as np
import pytest

from aezoo import plots


@pytest.mark.parametrize("columns", [1, 2, 4])
def test_a_long_title_stays_within_a_narrow_grid(columns, tmp_path, monkeypatch):
    # `denoise evaluate` of 2 images titled its 4.2-inch grid with 66 characters, cut off
    # at both sides.
    boxes = []
    real_save = plots.save

    def save(fig, path):  # where the title lies, laid out as it is saved
        fig.tight_layout()
        text = fig.texts[0]
        boxes.append((text.get_text(), text.get_window_extent(fig.canvas.get_renderer()),
                      fig.bbox))
        real_save(fig, path)

    monkeypatch.setattr(plots, "save", save)
    title = "gaussian:25 noise (seed 0, 8-bit noisy images) on 2 images of ../shared/data/raw/bsd68"
    rows = [np.random.default_rng(0).random((columns, 16, 16, 1))] * 3
    plots.image_grid(rows, tmp_path / "grid.png", row_titles=["a", "b", "c"], title=title)
    text, box, figure = boxes[0]
    assert text.replace("\n", " ") == title
    assert 0 <= box.x0 and box.x1 <= figure.x1 and box.y1 <= figure.y1
    assert (tmp_path / "grid.png").stat().st_size > 0
