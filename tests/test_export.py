"""SavedModel export: every model of the table, served by a process without aezoo or Keras."""

import inspect
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from test_models import EXAMPLE_SHAPES

import aezoo
from aezoo import export, runs
from aezoo.apps import export as export_command

SERVER_SCRIPT = Path(__file__).with_name("serve_without_aezoo.py")
SITE_PACKAGES = Path(tf.__file__).parents[1]
SAVED_MODEL_CLI = Path(sys.executable).with_name("saved_model_cli")


# Their other shapes add what the first shapes lack: vectors, a fixed one-channel size, and
# one-channel images of any size (PNG decoding to one channel, padding and cropping in the
# graph).  The codecs' first shape pads already: 12 x 20 is no multiple of their stride 16.
EVERY_SHAPE = ("dense", "denoising")


def _cases():
    """(case id, model name, shape the model is built for, shape of the data fed to it).

    Every model at the first shape of test_models.EXAMPLE_SHAPES, and the models of
    EVERY_SHAPE at their others too; the other models share those endpoints, and every
    shape's .keras round trip is test_models.py's.  Models whose default input shape has
    None (any height and width, like `denoising`) are built that way and fed those shapes.
    """
    cases = []
    for name, shapes in EXAMPLE_SHAPES.items():
        default = inspect.signature(aezoo.MODELS[name]).parameters["input_shape"].default
        for shape in shapes if name in EVERY_SHAPE else shapes[:1]:
            built = shape
            if len(shape) == len(default):
                built = tuple(None if d is None else s for d, s in zip(default[:-1], shape))
                built += shape[-1:]  # channels are the data's own
            case = f"{name}-{'x'.join('any' if d is None else str(d) for d in built)}"
            if built != shape:
                case += f"-fed-{'x'.join(map(str, shape))}"
            cases.append((case, name, built, shape))
    return cases


CASES = _cases()
IDS = [case[0] for case in CASES]


def build(name, shape):
    keras.utils.set_random_seed(1)
    return aezoo.MODELS[name](input_shape=shape, latent_dim=8)


def named_codes(model, codes):
    """Encoder outputs (or decoder inputs) by the names `encode` gives them: the decoder's."""
    if isinstance(codes, dict):
        return codes
    names = [t.name for t in keras.tree.flatten(model.decoder.input)]
    return dict(zip(names, keras.tree.flatten(codes)))


def smooth_image(height, width, channels, seed):
    """A picture with gradients and texture, so PNG and JPEG both have something to code."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 128 + 90 * np.sin(xx[..., None] / 3.0 + yy[..., None] / 5.0 + np.arange(channels))
    return np.clip(base + rng.normal(0, 20, (height, width, channels)), 0, 255).astype(np.uint8)


def write_image(path, pixels, fmt):
    gray = pixels.shape[-1] == 1
    Image.fromarray(pixels[..., 0] if gray else pixels, "L" if gray else "RGB").save(path, fmt)
    return path


def read_picture(data, channels):
    """Pixels of PNG/JPEG bytes decoded by Pillow (independent of TensorFlow), in [0, 1]."""
    image = Image.open(io.BytesIO(data)).convert("L" if channels == 1 else "RGB")
    pixels = np.asarray(image, np.float32) / 255.0
    return pixels[..., None] if channels == 1 else pixels


def expected_picture(model, data):
    """What reconstruct_image should return, computed with Pillow, tf.image and Keras."""
    height, width, channels = model.input_shape[1:]
    x = read_picture(data, channels)
    size = x.shape[:2]
    model_size = (height or size[0], width or size[1])
    if model_size != size:
        x = tf.image.resize(x, model_size, antialias=True).numpy()
    y = model.predict(x[None], verbose=0)[0]
    if model_size != size:
        y = tf.image.resize(y, size, antialias=True).numpy()
    return np.round(np.clip(y, 0.0, 1.0) * 255.0).astype(np.uint8)


def run_without_aezoo(manifest, arrays, work_dir):
    """Calls every signature of the manifest's SavedModels in one isolated process, run
    from another folder; returns (outputs, specs) as serve_without_aezoo.py writes them."""
    work_dir.mkdir()
    (work_dir / "manifest.json").write_text(json.dumps(manifest))
    np.savez(work_dir / "inputs.npz", **arrays)
    command = [sys.executable, "-I", "-S", str(SERVER_SCRIPT), str(SITE_PACKAGES)]
    command += ["manifest.json", "inputs.npz", "outputs.npz", "specs.json"]
    result = subprocess.run(command, cwd=work_dir, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(work_dir / "outputs.npz") as outputs:
        return dict(outputs), json.loads((work_dir / "specs.json").read_text())


def serve(entries, work_dir):
    """Serves exported models in one isolated process; adds what it returned to each entry.

    `entries` maps case names to namespaces of model, x, export_dir and images (files sent to
    reconstruct_image).  Adds `outputs` ("SIGNATURE/OUTPUT" -> array; PNG strings as
    "SIGNATURE/OUTPUT/INDEX" byte arrays) and `specs` (serve_without_aezoo.py's).
    """
    manifest, arrays = {}, {}
    for case, entry in entries.items():
        arrays[f"{case}/x"] = entry.x
        codes = named_codes(entry.model, entry.model.encoder.predict(entry.x, verbose=0))
        arrays.update({f"{case}/{name}": value for name, value in codes.items()})
        manifest[case] = {"dir": str(entry.export_dir), "images": [str(p) for p in entry.images]}
    outputs, specs = run_without_aezoo(manifest, arrays, work_dir)
    for case, entry in entries.items():
        prefix = f"{case}/"
        entry.outputs = {k[len(prefix):]: v for k, v in outputs.items() if k.startswith(prefix)}
        entry.specs = specs[case]
    return entries


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Every case exported, then served by one process that cannot import aezoo."""
    root = tmp_path_factory.mktemp("served")
    entries = {}
    for case, name, shape, data_shape in CASES:
        model = build(name, shape)
        images = []
        if len(data_shape) == 3:
            height, width, channels = data_shape
            # A PNG of another size than the model's, and a JPEG of the model's own size.
            other = smooth_image(height + 3, width + 6, channels, seed=1)
            same = smooth_image(height, width, channels, seed=2)
            images = [
                write_image(root / f"{case}.png", other, "PNG"),
                write_image(root / f"{case}.jpg", same, "JPEG"),
            ]
        entries[case] = SimpleNamespace(
            model=model,
            x=np.random.default_rng(0).random((3, *data_shape), dtype=np.float32),
            export_dir=export.export_saved_model(model, root / case),
            images=images,
        )
    return serve(entries, root / "server")


# The SavedModel runs the same float32 kernels as Keras, but Grappler may fuse ops (conv +
# bias + activation) and reorder sums: float32 round-off, relative 1e-5, absolute 1e-5 for
# values near 0.
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def replaced_signatures(model):
    """The signatures a model's `serving_endpoints` hook adds or replaces (a VAE's `sample`
    and `encode`, a VQ-VAE's integer `encode` and `decode`): its family's tests check what
    they return (tests/test_vae.py); here they must exist, and the defaults it keeps are
    checked as every model's."""
    defaults = export.default_endpoints(model)
    endpoints = model.serving_endpoints(dict(defaults))
    return {name for name, endpoint in endpoints.items() if defaults.get(name) is not endpoint}


def assert_agrees_with_keras(entry):
    """Every default signature's outputs against Keras's predict on the same inputs."""
    model, x, outputs = entry.model, entry.x, entry.outputs
    replaced = replaced_signatures(model)
    reconstruction = model.predict(x, verbose=0)
    served_reconstruction = outputs["serving_default/reconstruction"]
    np.testing.assert_allclose(served_reconstruction, reconstruction, **TOLERANCE)
    differences = {"reconstruction": np.abs(served_reconstruction - reconstruction).max()}

    codes = named_codes(model, model.encoder.predict(x, verbose=0))
    if "encode" not in replaced:
        served_codes = {k[len("encode/"):]: v for k, v in outputs.items()
                        if k.startswith("encode/")}
        assert set(served_codes) == set(codes)
        for name, value in codes.items():
            np.testing.assert_allclose(served_codes[name], value, **TOLERANCE, err_msg=name)
        differences["codes"] = max(np.abs(served_codes[k] - v).max() for k, v in codes.items())

    if "decode" not in replaced:
        if isinstance(model.decoder.input, dict):
            decoder_input = codes
        elif isinstance(model.decoder.input, list):  # by name: the encoder may return more
            decoder_input = [codes[t.name] for t in model.decoder.input]
        else:
            decoder_input = list(codes.values())[0]
        decoded = model.decoder.predict(decoder_input, verbose=0)
        np.testing.assert_allclose(outputs["decode/reconstruction"], decoded, **TOLERANCE)
        differences["decode"] = np.abs(outputs["decode/reconstruction"] - decoded).max()

    # The mean over all non-batch axes of float32 squares: relative round-off only.
    score = np.mean((x - reconstruction) ** 2, axis=tuple(range(1, x.ndim)))
    assert outputs["score/score"].shape == (len(x),)
    np.testing.assert_allclose(outputs["score/score"], score, rtol=1e-4, atol=1e-8)
    differences["score"] = np.abs(outputs["score/score"] - score).max()
    return differences


def test_every_model_of_the_table_is_exported():
    # The models come from test_models.EXAMPLE_SHAPES: a new model is added there.
    assert {name for _, name, _, _ in CASES} == set(aezoo.MODELS), "see test_models.EXAMPLE_SHAPES"


@pytest.mark.parametrize("case", IDS)
def test_every_signature_agrees_with_keras_predict(served, case):
    assert_agrees_with_keras(served[case])


def assert_images_round_trip(entry):
    """reconstruct_image's PNGs against Pillow's decoding, tf.image resizing and Keras."""
    channels = entry.model.input_shape[-1]
    worst = 0
    for i, path in enumerate(entry.images):
        sent = Path(path).read_bytes()
        returned = entry.outputs[f"reconstruct_image/image_bytes/{i}"].tobytes()
        assert returned.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(returned)) as image:
            assert image.mode == ("L" if channels == 1 else "RGB")
            pixels = np.asarray(image)
        pixels = pixels[..., None] if channels == 1 else pixels
        expected = expected_picture(entry.model, sent)
        assert pixels.shape == expected.shape == read_picture(sent, channels).shape
        # 8-bit output: float round-off can move a value sitting on a rounding boundary by
        # one grey level, never more.
        difference = np.max(np.abs(pixels.astype(int) - expected.astype(int)))
        assert difference <= 1, path
        worst = max(worst, difference)
    return worst


@pytest.mark.parametrize("case", [case for case, _, _, shape in CASES if len(shape) == 3])
def test_image_endpoint_round_trips_a_png_and_a_jpeg(served, case):
    assert len(served[case].images) == 2
    assert_images_round_trip(served[case])


# ------------------------------------------------------------------ signatures


def expected_signatures(model):
    """{signature: {"inputs"|"outputs": {name: (dtype, shape)}}} from the Keras model."""
    x = {"x": ("float32", model.input_shape)}
    codes = {  # float32, or int32 for a size passed along (compression's image_size)
        name: (tensor.dtype, tensor.shape)
        for name, tensor in named_codes(model, model.decoder.input).items()
    }
    reconstruction = {"reconstruction": ("float32", model.output_shape)}
    expected = {
        "serving_default": {"inputs": x, "outputs": reconstruction},
        "encode": {"inputs": x, "outputs": codes},
        "decode": {"inputs": codes, "outputs": reconstruction},
        "score": {"inputs": x, "outputs": {"score": ("float32", (None,))}},
    }
    if len(model.input_shape) == 4:  # images: (batch, height, width, channels)
        image = {"image_bytes": ("string", (None,))}
        expected["reconstruct_image"] = {"inputs": image, "outputs": image}
    return expected


@pytest.mark.parametrize("case", IDS)
def test_signatures_have_the_expected_names_dtypes_and_shapes(served, case):
    entry = served[case]
    specs = {
        signature: {
            kind: {name: (dtype, tuple(shape)) for name, (dtype, shape) in tensors.items()}
            for kind, tensors in parts.items()
        }
        for signature, parts in entry.specs.items()
    }
    replaced = replaced_signatures(entry.model)
    assert replaced <= set(specs)
    expected = expected_signatures(entry.model)
    assert {k: v for k, v in specs.items() if k not in replaced} == {
        k: v for k, v in expected.items() if k not in replaced
    }


def test_saved_model_cli_lists_the_signatures(served):
    # One run (TensorFlow's start-up is slow): the fully convolutional model whose codes
    # are a dict, with dynamic height and width, and serves the default signatures.
    entry = served[[case for case, name, _, _ in CASES if name == "compression"][-1]]
    text = subprocess.run(
        [str(SAVED_MODEL_CLI), "show", "--dir", str(entry.export_dir), "--all"],
        capture_output=True, text=True, check=True,
    ).stdout
    pattern = re.compile(
        r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: DT_(\w+)\s+shape: \(([^)]*)\)"
    )
    dtypes = {"FLOAT": "float32", "INT32": "int32", "STRING": "string"}
    listed = {}
    for block in text.split("signature_def['")[1:]:
        name = block.split("'", 1)[0]
        if name.startswith("__"):  # TensorFlow's own __saved_model_init_op
            continue
        parts = listed.setdefault(name, {"inputs": {}, "outputs": {}})
        for kind, tensor, dtype, shape in pattern.findall(block):
            dims = tuple(None if d.strip() == "-1" else int(d) for d in shape.split(","))
            parts[kind][tensor] = (dtypes[dtype], dims)
    assert listed == expected_signatures(entry.model)


# ------------------------------------------------------------------ versions


@pytest.fixture(scope="module")
def small_model():
    return build("dense", (13,))


def listing(base_dir):
    """Every file under base_dir with its bytes, to show that nothing changed."""
    files = (p for p in base_dir.rglob("*") if p.is_file())
    return {str(p.relative_to(base_dir)): p.read_bytes() for p in files}


def test_exporting_twice_gives_versions_1_and_2_then_the_next_after_the_highest(
    small_model, tmp_path
):
    base = tmp_path / "models" / "small"  # created with its parents
    assert export.export_saved_model(small_model, base) == base / "1"
    assert export.export_saved_model(small_model, base) == base / "2"
    assert export.export_saved_model(small_model, base, version=7) == base / "7"
    assert export.export_saved_model(small_model, base) == base / "8"
    assert sorted(p.name for p in base.iterdir()) == ["1", "2", "7", "8"]
    assert export.versions(base) == [1, 2, 7, 8]
    # Readable as any folder made here is (a server may run as another user).
    (tmp_path / "plain").mkdir()
    assert (base / "8").stat().st_mode == (tmp_path / "plain").stat().st_mode


def test_an_existing_version_is_never_overwritten(small_model, tmp_path):
    export.export_saved_model(small_model, tmp_path, version=3)
    before = listing(tmp_path)
    other = build("dense", (13,))
    other.set_weights([w + 1 for w in other.get_weights()])
    with pytest.raises(FileExistsError, match="Version 3 already exists.*write 4"):
        export.export_saved_model(other, tmp_path, version=3)
    assert listing(tmp_path) == before  # same files, same bytes, no temporary folder left


def test_an_interrupted_export_leaves_no_numbered_folder(small_model, tmp_path, monkeypatch):
    # (Patched on the archive: TensorFlow swaps the module object of tf.saved_model on its
    # first save, so a patched tf.saved_model.save held only after another test had saved.)
    archive_class = type(keras.export.ExportArchive())  # (the backend's class)
    real_write_out = archive_class.write_out

    def save_then_crash(archive, export_dir, *args, **kwargs):
        real_write_out(archive, export_dir, *args, **kwargs)  # the files are written...
        raise RuntimeError("simulated crash")  # ...but the export does not finish

    monkeypatch.setattr(archive_class, "write_out", save_then_crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        export.export_saved_model(small_model, tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    # A hard kill leaves the hidden temporary folder behind: it is not taken for a version.
    (tmp_path / ".export-killed").mkdir()
    assert export.export_saved_model(small_model, tmp_path) == tmp_path / "1"


def test_a_full_disk_is_one_line_and_leaves_no_folder_the_export_made(small_model, tmp_path,
                                                                      capsys, monkeypatch):
    # TensorFlow's file system raises its own error for a full disk (ResourceExhaustedError,
    # whose message ends in strerror's words): the command must answer it as it answers
    # Python's OSError, and the folders it made for the export go again.
    small_model.save(tmp_path / "model.keras")

    def full(archive, export_dir, *args, **kwargs):
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{export_dir}/saved_model.pb.tmp; No space left on device")

    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", full)
    base = tmp_path / "exports" / "small"
    assert export_command.main([str(tmp_path / "model.keras"), str(base)]) == 2
    err = capsys.readouterr().err
    assert err == f"aezoo export: error: No space left on device ({base / '1'})\n"
    assert not (tmp_path / "exports").exists()
    (base / "2").mkdir(parents=True)  # a folder that was there stays
    assert export_command.main([str(tmp_path / "model.keras"), str(base)]) == 2
    assert [p.name for p in base.iterdir()] == ["2"]


@pytest.mark.parametrize("version", [0, -1, 1.5, True, "2"])
def test_a_bad_version_is_rejected(small_model, tmp_path, version):
    with pytest.raises(ValueError, match="`version` must be a positive integer"):
        export.export_saved_model(small_model, tmp_path, version=version)
    assert list(tmp_path.iterdir()) == []


def test_a_model_without_encoder_and_decoder_is_rejected(tmp_path):
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="Only autoencoders"):
        export.export_saved_model(plain, tmp_path)


# ------------------------------------------------------------------ the model's hook


class RoundingDense(aezoo.Autoencoder):
    """A model serving integer codes, as a compression model would."""

    def serving_endpoints(self, endpoints):
        encode = endpoints["encode"]
        endpoints = dict(endpoints)
        endpoints["encode"] = export.Endpoint(
            encode.inputs,
            lambda inputs: {"z": tf.cast(tf.round(encode.fn(inputs)["z"]), tf.int32)},
        )
        del endpoints["score"]
        return endpoints


def test_a_model_can_replace_and_drop_endpoints(tmp_path):
    model = build("dense", (13,))
    model.__class__ = RoundingDense
    x = np.random.default_rng(0).random((4, 13), dtype=np.float32)
    loaded = tf.saved_model.load(str(export.export_saved_model(model, tmp_path)))
    assert set(loaded.signatures) == {"serving_default", "encode", "decode"}
    z = loaded.signatures["encode"](x=tf.constant(x))["z"]
    assert z.dtype == tf.int32
    np.testing.assert_array_equal(z, np.round(model.encoder.predict(x, verbose=0)))


def test_a_model_must_keep_serving_default(tmp_path):
    model = build("dense", (13,))
    model.serving_endpoints = lambda endpoints: {"encode": endpoints["encode"]}
    with pytest.raises(ValueError, match="serving_default"):
        export.export_saved_model(model, tmp_path)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ the command


def test_the_command_exports_a_keras_file(small_model, tmp_path, capsys):
    small_model.save(tmp_path / "model.keras")
    args = [str(tmp_path / "model.keras"), str(tmp_path / "export")]
    assert export_command.main(args) == 0
    assert export_command.main(args + ["--version", "5"]) == 0
    assert export.versions(tmp_path / "export") == [1, 5]
    out = capsys.readouterr().out
    assert "serving_default" in out and str(tmp_path / "export" / "5") in out
    loaded = tf.saved_model.load(str(tmp_path / "export" / "5"))
    x = np.random.default_rng(0).random((2, 13), dtype=np.float32)
    np.testing.assert_allclose(
        loaded.signatures["serving_default"](x=tf.constant(x))["reconstruction"],
        small_model.predict(x, verbose=0), **TOLERANCE,
    )


def test_the_command_takes_the_words_of_the_other_commands(small_model, tmp_path, capsys):
    """`--model` and `--out`, as every other command names them, or the positionals; a
    part missing or given twice is one line and exit status 2, with nothing written."""
    small_model.save(tmp_path / "model.keras")
    model, base = str(tmp_path / "model.keras"), str(tmp_path / "export")
    assert export_command.main(["--model", model, "--out", base]) == 0
    assert export_command.main(["--out", base, model]) == 0
    assert export.versions(base) == [1, 2]
    capsys.readouterr()
    for argv, message in (([model], "the base_dir is required"),
                          (["--out", base], "the model is required"),
                          ([model, base, "--model", model], "the model is given twice"),
                          ([model, base, "--out", base], "the base_dir is given twice")):
        assert export_command.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
    assert export.versions(base) == [1, 2]


@pytest.mark.parametrize(
    "problem,message",
    [
        ("missing", "No such model file"),
        ("text", "is damaged or truncated"),
        ("zip", "could not be loaded as an aezoo model"),
        ("existing", "Version 1 already exists"),
        ("version", "expected a positive integer, got '0'"),
        ("base is a file", "is a file; a folder is needed there"),  # (cli.check_folder)
    ],
)
def test_the_command_rejects_bad_input_with_one_line(
    small_model, tmp_path, capsys, problem, message
):
    model_file = tmp_path / "model.keras"
    base = tmp_path / "export"
    args = [str(model_file), str(base)]
    if problem == "text":
        model_file.write_text("not a model")
    elif problem == "zip":
        shutil.make_archive(str(tmp_path / "archive"), "zip", root_dir=tmp_path, base_dir=".")
        (tmp_path / "archive.zip").rename(model_file)
    elif problem in ("existing", "version"):
        small_model.save(model_file)
        export.export_saved_model(small_model, base)
        args += ["--version", "1" if problem == "existing" else "0"]
    elif problem == "base is a file":
        small_model.save(model_file)
        base.write_text("a file")
    before = listing(tmp_path)
    assert export_command.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert listing(tmp_path) == before


# ------------------------------------------------------------------ as it will be checked


@pytest.mark.slow
def test_a_trained_mnist_model_serves_without_aezoo(tfds_dir, tmp_path, capsys):
    """The train command's model.keras, exported by the command, served without aezoo."""
    from aezoo import data
    from aezoo.apps import train

    run = tmp_path / "run"
    assert train.main(["--model", "conv", "--dataset", "mnist", "--epochs", "1",
                       "--steps-per-epoch", "50", "--out", str(run)]) == 0
    assert export_command.main([str(run / "model.keras"), str(tmp_path / "export")]) == 0
    model = runs.load_model(run / "model.keras")
    digits = np.stack([np.asarray(e) for e in data.from_tfds("mnist", "test").take(16)])
    pixels = np.round(digits[:2] * 255).astype(np.uint8)
    enlarged = np.kron(pixels[1], np.ones((3, 3, 1), np.uint8))  # 84x84: resized both ways
    images = [
        write_image(tmp_path / "digit.png", pixels[0], "PNG"),
        write_image(tmp_path / "digit.jpg", enlarged, "JPEG"),
    ]
    entries = {
        "mnist": SimpleNamespace(
            model=model, x=digits, export_dir=tmp_path / "export" / "1", images=images
        )
    }
    entry = serve(entries, tmp_path / "server")["mnist"]
    differences = assert_agrees_with_keras(entry)
    differences["image (grey levels)"] = assert_images_round_trip(entry)
    with capsys.disabled():
        print("\nmax abs differences, SavedModel without aezoo vs Keras:", differences)
