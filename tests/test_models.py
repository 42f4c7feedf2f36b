"""One helper run over every model in `aezoo.MODELS`, on tiny and deliberately odd shapes."""

import inspect
import json

import keras
import numpy as np
import pytest

import aezoo

# Shapes each model is tried on: odd sizes (not multiples of 2**depth, H != W) catch
# hard-coded sizes.  Every model of the table must appear here (see the test below).
EXAMPLE_SHAPES = {
    "dense": [(12, 20, 3), (5, 7, 1), (13,)],
    "conv": [(12, 20, 3), (5, 7, 1)],
    "denoising": [(12, 20, 3), (5, 7, 1)],
    "sequence": [(140, 1), (13, 2)],
    "sequence_lstm": [(140, 1), (13, 2)],
    "compression": [(12, 20, 3), (5, 7, 1)],
    "compression_hyperprior": [(12, 20, 3), (5, 7, 1)],
    "compression_meanscale": [(12, 20, 3), (5, 7, 1)],
    "vae": [(12, 20, 3), (5, 7, 1)],
    "vae_dense": [(12, 20, 3), (5, 7, 1), (13,)],
    "vq_vae": [(12, 20, 3), (5, 7, 1)],
}

# count_params() of MODELS[name](input_shape=shape, latent_dim=8) with all other defaults.
# A change here means a change of architecture: update deliberately, never to make a test pass.
GOLDEN_PARAMS = {
    ("dense", (12, 20, 3)): 437720,
    ("dense", (5, 7, 1)): 86315,
    ("dense", (13,)): 75029,  # 13*256+256 + 256*128+128 + 128*8+8, mirrored: checked by hand
    ("conv", (12, 20, 3)): 347019,
    ("conv", (5, 7, 1)): 334985,
    ("denoising", (12, 20, 3)): 220403,
    ("denoising", (5, 7, 1)): 219249,
    ("sequence", (140, 1)): 96073,
    # 13 steps padded to 16, halved twice to 4 x 64 = 256 features; kernels of 7:
    # 7*2*32+32 + 7*32*64+64 + 256*8+8 (encoder) + 8*256+256 + 7*64*64+64 + 7*64*32+32
    # + 7*32*2+2 (decoder): checked by hand.
    ("sequence", (13, 2)): 62794,
    ("sequence_lstm", (140, 1)): 36169,
    # LSTM(64) on 2 channels 4*(64*(2+64)+64), latent 64*8+8, LSTM(64) on the repeated code
    # 4*(64*(8+64)+64), per-step output 64*2+2: checked by hand (the length does not count).
    ("sequence_lstm", (13, 2)): 36490,
    # 4 convolutions 5x5 (3->128->128->128->8) with 3 GDNs (128 + 128**2 each), mirrored;
    # the entropy model: 43 parameters and 256 + 2 table entries per latent channel.
    ("compression", (12, 20, 3)): 1811059,
    # One channel instead of 3: 2 * 25 * 128 fewer weights in down1_conv and in up1_deconv,
    # and 2 fewer biases in up1_deconv.
    ("compression", (5, 7, 1)): 1798257,
    # The factorized model's transforms (904328 + 904323), then the hyperprior: hyper-analysis
    # 3*3*8*128+128 + 2 * (25*128*128+128) = 828800; the factorized prior of z's 128 channels
    # 128 * (43 + 258) = 38528; hyper-synthesis 2 * (25*128*128+128) + 3*3*128*8+8 = 828680,
    # twice (its integer copy) plus 3 fractional-bit counts; the Gaussian tables
    # 64 * (2561 + 1) counts + 64 offsets + 64 lengths + 63 thresholds = 164159.
    ("compression_hyperprior", (12, 20, 3)): 4497501,
    # One channel: 12802 fewer, as for `compression`.
    ("compression_hyperprior", (5, 7, 1)): 4484699,
    # Means and scales: the last 3x3 convolution gives 16 channels, 9*128*8+8 = 9224 more
    # parameters, twice.
    ("compression_meanscale", (12, 20, 3)): 4515949,
    ("compression_meanscale", (5, 7, 1)): 4503147,
    # Convolutions 3x3 (3->32->64) down to 3x5x64 = 960 features, z_mean and z_log_var
    # 2 * (960*8+8), project 8*960+960, transposed convolutions 3x3 (64->64->32), output
    # 3x3 (32->3): 896 + 18496 + 15376 + 8640 + 36928 + 18464 + 867, checked by hand.
    ("vae", (12, 20, 3)): 99667,
    # Padded to 8x8, so 2x2x64 = 256 features; one channel: 320 + 18496 + 2 * 2056 + 2304
    # + 36928 + 18464 + 289, checked by hand.  (A Bernoulli likelihood has no parameters.)
    ("vae", (5, 7, 1)): 80913,
    # d inputs: d*512+512 + 512*256+256 + 2 * (256*8+8) + 8*256+256 + 256*512+512 + 512*d+d
    # = 1025 d + 269840, checked by hand for d = 720, 35 and 13.
    ("vae_dense", (12, 20, 3)): 1007840,
    ("vae_dense", (5, 7, 1)): 305715,
    ("vae_dense", (13,)): 283165,
    # Convolutions 3x3 (3->32->64), pre_quantize 1x1 (64->8): 896 + 18496 + 520; codebook
    # 128*8 and the prior's epoch count, 1; the PixelCNN prior: embedding 128*64, input_conv
    # 5x5x64x64+64, 3 blocks of 3x3x64x128+128 and 64*64+64, logits 64*128+128 = 353024;
    # transposed convolutions 3x3 (8->64->32), output 3x3 (32->3): 4672 + 18464 + 867;
    # checked by hand.
    ("vq_vae", (12, 20, 3)): 397964,
    # One channel: 9 * 32 * 2 fewer weights in down1_conv and in output_conv, 2 fewer biases.
    ("vq_vae", (5, 7, 1)): 396810,
}

CASES = [(name, shape) for name, shapes in EXAMPLE_SHAPES.items() for shape in shapes]
IDS = [f"{name}-{'x'.join(map(str, shape))}" for name, shape in CASES]


def build(name, shape, **kwargs):
    keras.utils.set_random_seed(1)
    return aezoo.MODELS[name](input_shape=shape, latent_dim=8, **kwargs)


def batch(shape, n=3, seed=0):
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def infer(model, x):
    """The model's inference output as NumPy, from a direct (eager) call: `predict` would
    trace a tf.function for each of the many small models here, which took most of the
    time of these tests; `test_reconstruction_has_the_input_shape` keeps `predict`."""
    return keras.tree.map_structure(np.asarray, model(x, training=False))


def max_weight_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a.get_weights(), b.get_weights()))


def test_every_model_is_covered_by_these_tests():
    missing = set(aezoo.MODELS) - set(EXAMPLE_SHAPES)
    assert not missing, (f"add shapes for {sorted(missing)} to EXAMPLE_SHAPES and their counts "
                         "to GOLDEN_PARAMS in tests/test_models.py (test_export.py and "
                         "test_training.py take their models from there too)")
    assert set(EXAMPLE_SHAPES) <= set(aezoo.MODELS), "EXAMPLE_SHAPES names models not in MODELS"


def test_an_unknown_model_is_a_key_error_that_lists_the_models():
    with pytest.raises(KeyError, match=r"no model 'convv'; the models are: dense, conv, "):
        aezoo.MODELS["convv"]
    assert "convv" not in aezoo.MODELS and aezoo.MODELS.get("convv") is None


def test_each_builder_makes_a_model_that_names_itself_by_its_builder():
    """A builder copied from another family and left calling make_autoencoder("dense", ...)
    would save files that reopen with the other builder."""
    for name, shapes in EXAMPLE_SHAPES.items():
        assert build(name, shapes[0]).builder_name == name


@pytest.mark.parametrize("name,shape", CASES, ids=IDS)
def test_reconstruction_has_the_input_shape(name, shape):
    ae = build(name, shape)
    x = batch(shape)
    assert ae.predict(x, verbose=0).shape == x.shape
    assert ae.encoder.name == "encoder" and ae.decoder.name == "decoder"


@pytest.mark.parametrize("name,shape", CASES, ids=IDS)
def test_encoder_then_decoder_equals_the_whole_model(name, shape):
    ae = build(name, shape)
    x = batch(shape)
    # The same float32 ops in the same order, but kernels may fuse differently: allow
    # float32 round-off only.
    np.testing.assert_allclose(infer(ae.decoder, infer(ae.encoder, x)), infer(ae, x),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,shape", CASES, ids=IDS)
def test_keras_file_round_trip_needs_no_custom_objects(name, shape, tmp_path):
    ae = build(name, shape)
    ae.compile(run_eagerly=True)  # eager: no train function to trace (see `infer`)
    x = batch(shape)
    ae.fit(x, x, epochs=1, verbose=0)  # so the optimizer has state to save and restore
    ae.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, aezoo.Autoencoder)
    assert loaded.get_config() == ae.get_config()
    assert max_weight_difference(ae, loaded) == 0.0
    assert loaded.optimizer.iterations.numpy() == 1
    expected = infer(ae, x)
    np.testing.assert_allclose(infer(loaded, x), expected, atol=1e-6)
    z = infer(loaded.encoder, x)
    np.testing.assert_allclose(infer(loaded.decoder, z), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,shape", CASES, ids=IDS)
def test_encoder_and_decoder_save_and_load_alone(name, shape, tmp_path):
    ae = build(name, shape)
    x = batch(shape)
    ae.encoder.save(tmp_path / "encoder.keras")
    ae.decoder.save(tmp_path / "decoder.keras")
    encoder = keras.models.load_model(tmp_path / "encoder.keras")
    decoder = keras.models.load_model(tmp_path / "decoder.keras")
    np.testing.assert_allclose(infer(decoder, infer(encoder, x)), infer(ae, x),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,shape", CASES, ids=IDS)
def test_training_the_whole_updates_the_submodels_variables(name, shape):
    ae = build(name, shape)
    encoder_before = [w.copy() for w in ae.encoder.get_weights()]
    decoder_before = [w.copy() for w in ae.decoder.get_weights()]
    ids = {id(v) for v in ae.trainable_variables}
    assert all(id(v) in ids for v in ae.encoder.trainable_variables + ae.decoder.trainable_variables)
    ae.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=True)
    x = batch(shape, n=8)
    ae.fit(x, x, epochs=1, batch_size=8, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(encoder_before, ae.encoder.get_weights()))
    assert any(not np.array_equal(a, b) for a, b in zip(decoder_before, ae.decoder.get_weights()))


@pytest.mark.parametrize("name", ["compression", "compression_hyperprior",
                                  "compression_meanscale", "vae", "vae_dense", "vq_vae"])
def test_a_model_with_its_own_loss_refuses_sample_weights(name):
    """A VAE's, VQ-VAE's or codec's loss is its formula's mean over the batch: weights given
    to fit were silently ignored."""
    shape = EXAMPLE_SHAPES[name][0]
    ae = build(name, shape)
    assert any("compute_loss" in vars(c) for c in type(ae).__mro__[:-1]
               if c.__module__.startswith("aezoo"))
    ae.compile(optimizer="adam", run_eagerly=True)
    x = batch(shape, n=4)
    with pytest.raises(ValueError, match=r"takes no sample weights"):
        ae.fit(x, x, sample_weight=np.array([1, 1, 1, 0.0]), epochs=1, verbose=0)
    ae.fit(x, x, epochs=1, verbose=0)  # (unweighted, as before)


@pytest.mark.parametrize("name,shape", CASES, ids=IDS)
def test_parameter_count_matches_the_golden_value(name, shape):
    count = build(name, shape).count_params()
    assert (name, shape) in GOLDEN_PARAMS, (
        f"GOLDEN_PARAMS has no count for {(name, shape)}: the model has {count} parameters; "
        "check that number by hand (as the comments there do) before adding it")
    assert count == GOLDEN_PARAMS[(name, shape)]


@pytest.mark.parametrize("name", list(EXAMPLE_SHAPES))
@pytest.mark.parametrize(
    "argument,value",
    [("latent_dim", 0), ("latent_dim", 2.5), ("input_shape", (0, 4, 1)), ("input_shape", "28x28"),
     ("activation", "no_such_activation")],
)
def test_bad_arguments_raise_a_value_error_naming_them(name, argument, value):
    kwargs = {"input_shape": EXAMPLE_SHAPES[name][0], "latent_dim": 8, argument: value}
    with pytest.raises(ValueError, match=f"`{argument}`.*Received: {argument}="):
        aezoo.MODELS[name](**kwargs)


@pytest.mark.parametrize("name", ["conv", "vae", "vq_vae"])
def test_more_levels_than_the_input_has_are_refused_by_name(name):
    """28 pixels halve 5 times (to 1, from a pad to 32); a 6th level would pad to 64."""
    aezoo.MODELS[name](input_shape=(28, 20, 1), filters=(4,) * 5)
    with pytest.raises(ValueError, match=r"`filters` has 6 levels, each halving the image: a "
                                         r"28x20 input has at most 5 .*Received: filters="):
        aezoo.MODELS[name](input_shape=(28, 20, 1), filters=(4,) * 6)


BOOLEANS = [(name, argument) for name in EXAMPLE_SHAPES
            for argument, p in inspect.signature(aezoo.MODELS[name]).parameters.items()
            if isinstance(p.default, bool)]


@pytest.mark.parametrize("name,argument", BOOLEANS)
def test_boolean_arguments_refuse_numbers_and_strings(name, argument):
    # 1 == True, so a membership test would take it: the check is the type.
    for value in (1, "true"):
        kwargs = {"input_shape": EXAMPLE_SHAPES[name][0], "latent_dim": 8, argument: value}
        with pytest.raises(ValueError, match=f"`{argument}` must be True or False. Received: "
                                             f"{argument}={value!r}"):
            aezoo.MODELS[name](**kwargs)


def numpy_typed(value):
    """A default argument as a sweep over NumPy arrays would give it."""
    if isinstance(value, bool):
        return np.bool_(value)
    if isinstance(value, int):
        return np.int64(value)
    if isinstance(value, float):
        return np.float32(value)
    if isinstance(value, tuple):
        return tuple(numpy_typed(v) for v in value)
    return value


def same_config(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_config(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same_config, a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-6)  # (float32's 0.01 is 0.009999999776...)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("name", list(EXAMPLE_SHAPES))
def test_numpy_numbers_are_taken_as_the_python_numbers_they_are(name):
    """np.int64(8), np.float32(0.5), np.bool_(True): before, a TypeError from the config's
    JSON, or a valid value refused (`beta` must be a finite number)."""
    given = {k: p.default for k, p in inspect.signature(aezoo.MODELS[name]).parameters.items()
             if isinstance(p.default, (bool, int, float, tuple))}
    given.update(input_shape=EXAMPLE_SHAPES[name][0], latent_dim=8)
    expected = aezoo.MODELS[name](**given).get_config()
    config = aezoo.MODELS[name](**{k: numpy_typed(v) for k, v in given.items()}).get_config()
    assert json.loads(json.dumps(config)) == config  # plain Python numbers
    assert same_config(config, expected)


@pytest.mark.parametrize("name", list(EXAMPLE_SHAPES))
def test_every_builder_takes_the_shared_vocabulary(name):
    params = inspect.signature(aezoo.MODELS[name]).parameters
    for argument in ("input_shape", "latent_dim", "activation", "output_activation", "name"):
        assert argument in params
    assert "units" in params or "filters" in params


def test_every_builder_argument_is_in_the_vocabulary_and_annotated_alike():
    """`aezoo.models.ARGUMENTS` says what each argument means (the commands' --help), and
    an argument's annotation sets its option's type (`sparsity: float = 0` must take
    0.01): so one name is one meaning and one type in every builder."""
    from aezoo.models import ARGUMENTS

    annotations = {}
    for name in aezoo.MODELS:
        for argument, p in aezoo.MODELS.signature(name).parameters.items():
            assert argument in ARGUMENTS, (
                f"builder `{name}` takes `{argument}`, which aezoo.models.ARGUMENTS does not "
                "describe: add its line there (it is the option's --help)")
            assert p.annotation is not inspect.Parameter.empty, (name, argument)
            if argument != "input_shape":  # (each family's rank)
                annotations.setdefault(argument, {})[name] = p.annotation
    for argument, given in annotations.items():
        assert len(set(given.values())) == 1, f"`{argument}` is annotated differently: {given}"
    taken = {a for n in aezoo.MODELS for a in aezoo.MODELS.signature(n).parameters}
    assert set(ARGUMENTS) == taken, f"no builder takes {sorted(set(ARGUMENTS) - taken)}"


@pytest.mark.parametrize("name", list(EXAMPLE_SHAPES))
def test_a_models_config_holds_its_builders_arguments_as_given(name):
    """The config is what the builder was called with ("auto" stays "auto"), so that a file
    rebuilds the same model in a later version: `kwargs = dict(locals())` taken first."""
    shape = EXAMPLE_SHAPES[name][0]
    given = {k: p.default for k, p in inspect.signature(aezoo.MODELS[name]).parameters.items()}
    given.update(input_shape=shape, latent_dim=8)
    config = build(name, shape).get_config()
    assert config.pop("model") == name
    assert config == json.loads(json.dumps(given)), (
        f"`{name}`'s config is not its arguments as given: take kwargs = dict(locals()) as "
        "the builder's first statement")


def test_make_autoencoder_refuses_what_a_builder_got_wrong():
    """The two mistakes of a new builder that passed every test before: kwargs taken after
    its checks (locals of its own in the config), and a `corruption` argument with no
    corruption layer (silently never applied)."""
    from aezoo.models.base import corruption_layer, make_autoencoder

    x = keras.Input((4,), name="x")
    encoder = keras.Model(x, keras.layers.Dense(2, name="latent")(x), name="encoder")
    z = keras.Input((2,), name="z")
    decoder = keras.Model(z, keras.layers.Dense(4, name="reconstruction")(z), name="decoder")
    arguments = {k: p.default for k, p in inspect.signature(aezoo.MODELS["dense"]).parameters.items()}
    with pytest.raises(TypeError, match=r"kwargs must be the builder's arguments .*take kwargs "
                                        r"= dict\(locals\(\)\) as the builder's first"):
        make_autoencoder("dense", {**arguments, "depth": 2}, encoder, decoder)
    noisy = {**arguments, "corruption": "gaussian"}
    with pytest.raises(TypeError, match=r"corruption='gaussian' but no corruption layer"):
        make_autoencoder("dense", noisy, encoder, decoder)
    ae = make_autoencoder("dense", noisy, encoder, decoder, corruption_layer("gaussian", 0.1))
    assert ae.get_layer("corruption") is not None


@pytest.mark.parametrize("name", [n for n in EXAMPLE_SHAPES if "corruption" in inspect.signature(aezoo.MODELS[n]).parameters])
def test_corruption_is_active_in_training_only(name):
    shape = EXAMPLE_SHAPES[name][0]
    ae = build(name, shape, corruption="gaussian", corruption_level=0.5)
    x = batch(shape)
    corruption = ae.get_layer("corruption")
    np.testing.assert_array_equal(corruption(x, training=False), x)
    noisy = np.asarray(corruption(x, training=True))
    # sigma 0.5 on 3*shape elements: the noise's std is 0.5 within a few percent.
    assert abs(float(np.std(noisy - x)) - 0.5) < 0.05
    np.testing.assert_allclose(ae(x, training=False), ae.decoder(ae.encoder(x)), atol=1e-6)


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
@pytest.mark.parametrize("height,width", [(1, 1), (2, 3), (5, 7), (13, 16), (16, 9)])
def test_pad_to_multiple_pads_as_numpy_does(mode, height, width):
    """The bottom and right pads of every mode, against `np.pad`, including pads longer
    than the image (a reflection folds again, as numpy's does)."""
    from aezoo.models.layers import PadToMultiple

    x = np.random.default_rng(height * width).random((2, height, width, 3)).astype("float32")
    pads = [(0, 0), (0, -height % 16), (0, -width % 16), (0, 0)]
    expected = np.pad(x, pads, mode=mode)
    np.testing.assert_array_equal(np.asarray(PadToMultiple(16, mode=mode)(x)), expected)
    # The same through a graph of unknown height and width, as a fully convolutional model
    # traces it.
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, PadToMultiple(16, mode=mode)(inputs))
    np.testing.assert_array_equal(np.asarray(model.predict(x, verbose=0)), expected)


@pytest.mark.parametrize("multiple", [16, 64])
@pytest.mark.parametrize("height,width", [(1, 1), (2, 3), (13, 16), (16, 9), (70, 33)])
def test_the_blur_pad_is_the_last_row_then_column_blurred_by_its_distance(multiple, height,
                                                                         width):
    """The codecs' pad, against scipy: each padded row is the image's last row filtered by
    a Gaussian of sigma its distance from the image (ends extended, truncated at 3 sigma),
    then each padded column is the last column of that, filtered the same way."""
    from scipy.ndimage import gaussian_filter1d

    from aezoo.models.layers import PadToMultiple

    def pad_rows(a, n):
        rows = [gaussian_filter1d(a[:, -1], sigma=d, axis=1, mode="nearest", truncate=3.0)
                for d in range(1, n + 1)]
        return np.concatenate([a, *(row[:, None] for row in rows)], axis=1)

    x = np.random.default_rng(height * width).random((2, height, width, 3)).astype("float32")
    expected = pad_rows(x.astype(np.float64), -height % multiple)
    expected = pad_rows(expected.transpose(0, 2, 1, 3), -width % multiple).transpose(0, 2, 1, 3)
    padded = PadToMultiple(multiple, mode="blur")(x)
    np.testing.assert_allclose(np.asarray(padded), expected, atol=2e-6)
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, PadToMultiple(multiple, mode="blur")(inputs))
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=2e-6)
