"""aezoo.noise: each noise model against its definition, and the specs of the commands."""

import numpy as np
import pytest

import aezoo
from aezoo import noise

# 2**18 draws: a sample mean is within 5 standard errors of its expectation except with
# probability < 1e-6, so these bounds are the definitions' own, not tuned to the generator.
N = 2**18


def within(value, expected, standard_error):
    return abs(value - expected) < 5 * standard_error


def test_gaussian_noise_has_the_asked_mean_and_variance():
    x = np.full((N // 256, 256, 1), 0.5, np.float32)
    e = noise.add_noise(x, "gaussian", 0.1, (1, 2)).numpy() - x
    assert within(e.mean(), 0.0, 0.1 / np.sqrt(N))
    # var of a sample variance of normals: 2 sigma^4 / n
    assert within(e.var(), 0.01, np.sqrt(2 * 0.1**4 / N))


def test_salt_and_pepper_flips_the_asked_fraction_of_pixels_half_each_way():
    p = 0.2
    x = np.full((N // 256, 256, 3), 0.5, np.float32)
    y = noise.add_noise(x, "salt_pepper", p, (3, 4)).numpy()
    flipped = (y != 0.5).any(axis=-1)
    assert (y[flipped] == y[flipped][:, :1]).all(), "all channels of a pixel flip together"
    pixels = flipped.size
    assert within(flipped.mean(), p, np.sqrt(p * (1 - p) / pixels))
    salt = (y[..., 0] == 1).mean()
    assert within(salt, p / 2, np.sqrt(p / 2 * (1 - p / 2) / pixels))
    assert set(np.unique(y)) <= {0.0, 0.5, 1.0}


def test_mask_noise_zeroes_the_asked_fraction_of_pixels():
    p = 0.3
    x = np.full((N // 256, 256, 1), 0.7, np.float32)
    y = noise.add_noise(x, "mask", p, (5, 6)).numpy()
    assert set(np.unique(y)) == {0.0, np.float32(0.7)}
    assert within((y == 0).mean(), p, np.sqrt(p * (1 - p) / N))


def test_poisson_noise_has_the_mean_and_variance_of_photon_counts():
    peak, level = 30.0, 0.4  # counts ~ Poisson(12): mean 12/30, variance 12/30**2
    x = np.full((N // 256, 256, 1), level, np.float32)
    y = noise.add_noise(x, "poisson", peak, (7, 8)).numpy()
    variance = level / peak
    assert within(y.mean(), level, np.sqrt(variance / N))
    assert np.allclose(y * peak, np.round(y * peak), atol=1e-4), "whole photon counts"
    # var of a sample variance: (mu4 - var^2) / n, with mu4 = var^2 (3 + 1/lambda) for Poisson
    lam = level * peak
    assert within(y.var(), variance, np.sqrt(variance**2 * (2 + 1 / lam) / N))


def test_the_same_seed_gives_the_same_noise_and_another_seed_other_noise():
    x = np.full((4, 8, 8, 1), 0.5, np.float32)
    a = noise.add_noise(x, "gaussian", 0.1, (0, 1)).numpy()
    np.testing.assert_array_equal(a, noise.add_noise(x, "gaussian", 0.1, (0, 1)).numpy())
    assert not np.array_equal(a, noise.add_noise(x, "gaussian", 0.1, (0, 2)).numpy())


def test_noise_specs_are_parsed_on_the_8_bit_scale():
    assert noise.parse_noise("gaussian:25") == ("gaussian", 25 / 255)
    assert noise.parse_noise("salt_pepper:0.1") == ("salt_pepper", 0.1)
    assert noise.parse_noise("poisson:30") == ("poisson", 30.0)
    for bad in ("speckle:3", "gaussian", "gaussian:x", "mask:2"):
        with pytest.raises(ValueError):
            noise.parse_noise(bad)
    for bad in ("gaussian:nan", "gaussian:30-10", "gaussian:10-300", "mask:0-2", "poisson:0-5",
                "gaussian:x-20"):
        with pytest.raises(ValueError, match=f"'{bad}'"):  # the spec as given, not one end
            noise.parse_noise(bad)


def test_a_bad_kind_or_level_is_named_as_the_caller_names_it():
    x = np.zeros((4, 4, 1), np.float32)
    with pytest.raises(ValueError, match=r"`kind` must be one of .* Received: kind='gauss'"):
        noise.add_noise(x, "gauss", 0.1, (0, 0))
    with pytest.raises(ValueError, match=r"`level` is out of range .* Received: level=-1"):
        noise.add_noise(x, "gaussian", -1, (0, 0))
    # A builder's arguments are `corruption` and `corruption_level`.
    with pytest.raises(ValueError, match=r"`corruption_level` is out of range for mask"):
        aezoo.MODELS["dense"](input_shape=(4,), units=(4,), latent_dim=2, corruption="mask",
                              corruption_level=1.5)


def test_a_range_of_levels_gives_each_example_its_own_level_uniform_in_the_range():
    assert noise.parse_noise("gaussian:0-55") == ("gaussian", (0.0, 55 / 255))
    low, high = 0.05, 0.2
    x = np.full((2000, 16, 16, 1), 0.5, np.float32)
    y = noise.add_noise(x, "gaussian", (low, high), (9, 10)).numpy() - x
    sigmas = y.reshape(len(y), -1).std(axis=1)
    # Each example's 256 values have one sigma: its sample std is within a few percent.
    assert sigmas.min() > low * 0.8 and sigmas.max() < high * 1.2
    # Uniform levels: the mean is (low + high) / 2, and a quarter fall in each quarter.
    assert abs(sigmas.mean() - (low + high) / 2) < 0.005
    quarters = np.histogram(sigmas, bins=np.linspace(low, high, 5))[0] / len(sigmas)
    assert np.all(np.abs(quarters - 0.25) < 0.06), quarters
    # The same seed gives the same levels and noise; the pipeline's seeds give fresh ones.
    again = noise.add_noise(x, "gaussian", (low, high), (9, 10)).numpy() - x
    np.testing.assert_array_equal(y, again)
    other = noise.add_noise(x, "gaussian", (low, high), (9, 11)).numpy() - x
    other_sigmas = other.reshape(len(other), -1).std(axis=1)
    # Levels drawn afresh: two uniform draws on [0.05, 0.2] differ by 0.05 on average; the
    # same levels with fresh noise only by the spread of a 256-value std, about 0.006.
    assert np.abs(other_sigmas - sigmas).mean() > 0.02



@pytest.mark.parametrize("text", ["gaussian:25", "gaussian:0-55", "gaussian:7.5", "salt_pepper:0.1",
                                  "poisson:30", "mask:0.25-0.5", "salt_pepper:0.00001",
                                  "gaussian:25.50001"])
def test_spec_gives_back_the_text_that_parse_noise_read(text):
    assert noise.spec(*noise.parse_noise(text)) == text
