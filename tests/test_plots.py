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

    def save(fig, path, **kwargs):  # where the title lies, laid out as it is saved
        fig.tight_layout(rect=(0, 0, 1, kwargs.get("top", 1)))
        text = fig.texts[0]
        boxes.append((text.get_text(), text.get_window_extent(fig.canvas.get_renderer()),
                      fig.bbox))
        real_save(fig, path, **kwargs)

    monkeypatch.setattr(plots, "save", save)
    title = "gaussian:25 noise (seed 0, 8-bit noisy images) on 2 images of ../shared/data/raw/bsd68"
    rows = [np.random.default_rng(0).random((columns, 16, 16, 1))] * 3
    plots.image_grid(rows, tmp_path / "grid.png", row_titles=["a", "b", "c"], title=title)
    text, box, figure = boxes[0]
    assert text.replace("\n", " ") == title
    assert 0 <= box.x0 and box.x1 <= figure.x1 and box.y1 <= figure.y1
    assert (tmp_path / "grid.png").stat().st_size > 0


# 125 rows: the height of 1000 samples in rows of 8.  The grid's height, and so where the
# title goes, depends on its rows alone: 2 columns give that height with a quarter of the
# axes (matplotlib lays out each one: 17 s with 8 columns, 5 s with 2).
@pytest.mark.parametrize("rows,columns", [(1, 8), (10, 8), (125, 2)])
def test_the_title_lies_above_the_images_of_a_grid_of_any_height(rows, columns, tmp_path,
                                                                 monkeypatch):
    """1000 samples (125 rows of 8) put the title on the third row: it was placed 2 % of
    the figure's height down, 4 inches there."""
    found = []
    real_save = plots.save

    def save(fig, path, **kwargs):  # laid out as it is saved
        fig.tight_layout(rect=(0, 0, 1, kwargs.get("top", 1)))
        renderer = fig.canvas.get_renderer()
        title = fig.texts[0].get_window_extent(renderer)
        found.append((title, min(ax.get_window_extent(renderer).y0 for ax in fig.axes),
                      max(ax.get_window_extent(renderer).y1 for ax in fig.axes), fig.bbox))
        real_save(fig, path, **kwargs)

    monkeypatch.setattr(plots, "save", save)
    images = np.random.default_rng(0).random((rows, columns, 28, 28, 1))
    plots.image_grid(list(images), tmp_path / "grid.png", title="1000 samples of vq_vae (seed 0)")
    title, images_bottom, images_top, figure = found[0]
    assert images_top < title.y0 and title.y1 <= figure.y1  # above the first row, inside
    assert images_bottom >= 0
