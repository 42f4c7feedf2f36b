"""aezoo.rate_distortion: Bjøntegaard delta rates against curves computed by hand."""

import numpy as np
import pytest

from aezoo import metrics, rate_distortion


def test_bd_rate_of_a_curve_shifted_by_a_constant_rate_factor_is_that_factor():
    anchor = [(0.2, 26.0), (0.35, 28.5), (0.6, 31.0), (1.0, 33.2), (1.6, 35.9)]
    test = [(0.8 * r, q) for r, q in anchor]
    for method in ("pchip", "cubic"):
        assert rate_distortion.bd_rate(anchor, test, method=method) == pytest.approx(-20.0, abs=1e-9)
        assert rate_distortion.bd_rate(anchor, test, method=method, rate_range=(0.25, 1.0)) == pytest.approx(
            -20.0, abs=1e-9
        )
        assert rate_distortion.bd_rate(test, anchor, method=method) == pytest.approx(25.0, abs=1e-9)


def test_a_rate_range_keeps_the_test_curve_s_points_outside_it_out_of_the_interval():
    # Below 1 bpp the test needs 1.25x the anchor's bits; above it, 4x.  Over 0.25-1.0 bpp
    # only the first part counts, so adding the tail must (nearly: pchip's slope at the
    # 1 bpp point sees its new neighbour) leave the BD-rate alone.  Limiting the interval by
    # the anchor's rates alone let the tail in: 25.2 % became 32.6 %.
    anchor = [(0.2, 26.0), (0.35, 28.5), (0.6, 31.0), (1.0, 33.2), (1.6, 35.9)]
    test = [(1.25 * r, q) for r, q in anchor[:3]] + [(1.0, 32.0)]
    tail = [(2.0, 33.0), (4.0, 34.0)]
    within = rate_distortion.bd_rate(anchor, test, rate_range=(0.25, 1.0))
    assert 20.0 < within < 30.0
    assert rate_distortion.bd_rate(anchor, test + tail, rate_range=(0.25, 1.0)) == pytest.approx(within, abs=0.5)
    assert rate_distortion.bd_rate(anchor, test + tail) > within + 5.0


def test_bd_rate_of_polynomial_curves_matches_the_integral_by_hand():
    # log10 R_anchor(q) = (q - 30) / 10 and log10 R_test(q) = log10 R_anchor(q) + 0.01 (q - 30):
    # cubic fits are exact, and over the shared interval [28, 34] the mean log-rate
    # difference is 0.01 * (31 - 30) = 0.01, so the BD-rate is 10**0.01 - 1.
    qa = np.array([26.0, 28.0, 30.0, 32.0, 34.0])
    qt = np.array([28.0, 30.0, 32.0, 34.0, 36.0])
    anchor = [(10 ** ((q - 30) / 10), q) for q in qa]
    test = [(10 ** ((q - 30) / 10 + 0.01 * (q - 30)), q) for q in qt]
    expected = 100 * (10**0.01 - 1)
    assert rate_distortion.bd_rate(anchor, test, method="cubic") == pytest.approx(expected, rel=1e-9)


def test_bd_rate_needs_overlapping_curves_of_enough_points():
    anchor = [(0.2, 26.0), (0.4, 28.0), (0.8, 30.0), (1.6, 32.0)]
    assert rate_distortion.bd_rate(anchor, [(0.1, 35.0), (0.2, 37.0)]) is None
    with pytest.raises(ValueError, match="at least 4 points"):
        rate_distortion.bd_rate(anchor, [(0.2, 27.0), (0.4, 29.0)], method="cubic")


def _point(bpp, psnr, ms_ssim=0.95, setting="s"):
    return {"bpp": bpp, "psnr": psnr, "ms_ssim": ms_ssim, "setting": setting,
            "encode_s": 0.1, "decode_s": 0.1}


@pytest.mark.parametrize("ours", [1, 3])
def test_markdown_says_why_a_bd_rate_is_missing(ours):
    # One aezoo rate point has no curve: every BD-rate is a dash, and the page says what
    # to give instead.  Three points over JPEG's range give numbers; a WebP curve entirely
    # above aezoo's qualities shares no interval with it, and only that dash is explained.
    jpeg = [_point(r, q) for r, q in [(0.2, 24.0), (0.4, 27.0), (0.8, 30.0), (1.6, 33.0)]]
    webp = [_point(r, q) for r, q in [(0.2, 40.0), (0.4, 42.0)]]
    curves = {"aezoo": [_point(r, q) for r, q in
                        [(0.3, 26.0), (0.6, 29.5), (1.2, 32.5)][:ours]],
              "jpeg": jpeg, "webp": webp}
    results = {"curves": curves, "bd_rate": rate_distortion._bd_rates(curves),
               "psnr_at_bpp": {name: {} for name in curves}}
    page = rate_distortion.markdown(results)
    section = page.split("## BD-rate")[1].split("## PSNR")[0]
    jpeg_row = next(line for line in section.splitlines() if line.startswith("| jpeg | "))
    if ours == 1:
        assert jpeg_row == "| jpeg | - | - | - | - |"
        assert "2 or more rate points of aezoo" in page
        assert "common quality" not in page
    else:
        assert float(jpeg_row.split("|")[2]) < 0  # a number, and fewer bits than JPEG
        assert "| webp | - | - |" in section
        assert "reach no common quality" in page and "rate points" not in page


def test_the_plot_keeps_aezoo_s_highest_rate_point_in_view(tmp_path, monkeypatch):
    # The axes stopped at 2 bpp: codec_0.2 on Kodak's first image (2.39 bpp) was off them.
    from aezoo import plots

    limits = []
    real_save = plots.save
    monkeypatch.setattr(plots, "save", lambda fig, path: (
        limits.extend(ax.get_xlim() for ax in fig.axes), real_save(fig, path)))
    curves = {"aezoo": [_point(0.5, 30.0), _point(2.39, 38.0)],
              "jpeg": [_point(r, q) for r, q in [(0.5, 27.0), (1.5, 32.0), (4.4, 40.0)]]}
    rate_distortion.plot(curves, tmp_path / "rd.png", "kodim01")
    assert [high for _, high in limits] == [pytest.approx(1.05 * 2.39)] * 2
    rate_distortion.plot({"aezoo": curves["aezoo"][:1], "jpeg": curves["jpeg"]},
                         tmp_path / "rd.png", "kodim01")
    assert [high for _, high in limits[2:]] == [2.0, 2.0]


def test_ms_ssim_is_tensorflows_for_images_of_any_size_in_one_graph():
    """One traced function a channel count, whatever the sizes (Kodak's two orientations,
    CLIC's), equal to TensorFlow's eager MS-SSIM; None below the 176-pixel minimum."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for shape in [(180, 200, 3), (200, 180, 3), (176, 190, 1)]:
        a = rng.integers(0, 256, shape, dtype=np.uint8)
        b = np.clip(a + rng.normal(0, 8, shape), 0, 255).astype(np.uint8)
        expected = float(tf.image.ssim_multiscale(a[None].astype(np.float32),
                                                  b[None].astype(np.float32), 255.0)[0])
        assert rate_distortion.ms_ssim(a, b) == pytest.approx(expected, abs=1e-5)
    assert rate_distortion._MS_SSIM[3].experimental_get_tracing_count() == 1
    assert rate_distortion.ms_ssim(a[:175], b[:175]) is None


def test_quality_at_rate_interpolates_in_log_rate_and_only_inside_the_curve():
    """The equal-rate PSNR table of `compress evaluate` (and the ends of a BD-rate's
    rate_range): a curve linear in log10(rate) is read back exactly (PCHIP reproduces a
    line), at its points and between them; outside it, or from no curve, nothing."""
    def line(rate):
        return 30.0 + 10.0 * np.log10(rate)

    points = [(r, line(r)) for r in (1.6, 0.2, 0.8, 0.4)]  # (in any order)
    for rate in (0.2, 0.25, 0.5, 1.0, 1.6):
        assert rate_distortion.quality_at_rate(points, rate) == pytest.approx(line(rate),
                                                                             abs=1e-9)
    assert rate_distortion.quality_at_rate(points, 0.19) is None
    assert rate_distortion.quality_at_rate(points, 1.7) is None
    assert rate_distortion.quality_at_rate(points[:1], 0.2) is None
    assert rate_distortion.quality_at_rate([(0.5, 30.0), (0.5, 31.0)], 0.5) is None
    # A monotone curve stays between its neighbouring points (no overshoot).
    bent = [(0.25, 27.0), (0.5, 30.0), (1.0, 30.2), (2.0, 34.0)]
    assert 30.0 <= rate_distortion.quality_at_rate(bent, 0.7) <= 30.2


def test_the_classical_codecs_code_at_the_asked_rate_and_chroma():
    """The anchors of `compress evaluate`: JPEG 2000 at its target rate (bits per pixel of
    the file, colour or gray: OpenJPEG's ratio is of the raw 8 bits a sample), JPEG in
    4:2:0, a grayscale image decoded to one channel; a higher quality costs more bits."""
    import io

    from conftest import shared_data
    from PIL import Image, JpegImagePlugin

    with Image.open(shared_data("raw", "kodak", "kodim23.png")) as image:
        colour = np.asarray(image.convert("RGB"))[100:356, 200:456]
    gray = np.round(colour.mean(axis=-1, keepdims=True)).astype(np.uint8)
    for image in (colour, gray):
        for target in (0.25, 1.0):
            data, decoded, _, _ = rate_distortion.classical_codec("jpeg2000", image, target)
            # (measured: within 2 % of the target, its headers included)
            assert 8 * len(data) / 256**2 == pytest.approx(target, rel=0.05)
            assert decoded.shape == image.shape and decoded.dtype == np.uint8
        low, high = (rate_distortion.classical_codec("jpeg", image, q)[:2] for q in (10, 90))
        assert len(low[0]) < len(high[0])
        assert metrics.psnr(image, low[1]) < metrics.psnr(image, high[1])
        assert rate_distortion.classical_codec("webp", image, 50)[1].shape == image.shape
    with Image.open(io.BytesIO(rate_distortion.classical_codec("jpeg", colour, 50)[0])) as jpeg:
        assert JpegImagePlugin.get_sampling(jpeg) == 2  # 4:2:0
    with pytest.raises(ValueError, match="`codec` must be one of"):
        rate_distortion.classical_codec("png", colour, 50)
