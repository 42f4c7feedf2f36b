"""Exports an autoencoder as a SavedModel for TF Serving: no Python, no aezoo needed to serve.

    aezoo export runs/mnist_conv exports/mnist_conv          # the command (aezoo.apps.export)
    saved_model_cli show --dir exports/mnist_conv/1 --all
    docker run -p 8501:8501 -v "$PWD/exports/mnist_conv:/models/mnist_conv" \\
        -e MODEL_NAME=mnist_conv tensorflow/serving

From Python (every training command does this for its run, into RUN_DIR/export):

    from aezoo.export import export_saved_model
    export_saved_model(model, "exports/mnist_conv")  # -> exports/mnist_conv/<next version>

`BASE_DIR/<version>/` is the layout TF Serving's `model_base_path` expects: it serves the
highest all-digit folder and ignores others.  A version is written into a hidden temporary
folder of BASE_DIR (`.export-*`, never all digits) and renamed into place once complete, so
TF Serving never sees half a model and a crash leaves no numbered folder.  Existing versions
are never overwritten.

Signatures (names of inputs -> outputs; every tensor has a dynamic batch axis):

| signature           | inputs                          | outputs                              |
|---------------------|---------------------------------|--------------------------------------|
| `serving_default`   | `x`                             | `reconstruction` (denoised output)   |
| `encode`            | `x`                             | the decoder's inputs, by name        |
| `decode`            | the decoder's inputs, by name   | `reconstruction`                     |
| `score`             | `x`                             | `score`: each example's mean squared |
|                     |                                 | error over all its non-batch axes    |
| `reconstruct_image` | `image_bytes`: PNG/JPEG strings | `image_bytes`: PNG strings           |

Everything is derived from the model's own specs, so a new model of `aezoo.MODELS` exports with
no change here: `encode` returns what the encoder returns, named as the decoder's inputs
(`z` for `dense`/`conv`; `latent`, `skip1..N`, `image` for `denoising`), so its response is a
ready `decode` request.  Height and width are dynamic exactly where the model's input shape is
None (the fully convolutional `denoising` model by default).  A model built for one size takes
only that size: `dense` flattens its input, and `conv` sizes its padding margins and (with
`latent="dense"`) its dense latent at build time.  For those, `reconstruct_image` resizes each
picture to the model's size and the reconstruction back to the picture's size.  `reconstruct_image` exists for image models
(inputs of shape (height, width, 1 or 3)); it decodes as `aezoo.data.decode_image` does.
Custom aezoo layers trace to standard TensorFlow ops, and Corruption layers are inactive
(inference), so the SavedModel loads with `tf.saved_model.load` alone.

The hook for models that serve differently: after building the endpoints above, export calls
`model.serving_endpoints(endpoints)` (`aezoo.Autoencoder` defines it and returns them
unchanged).  `endpoints` maps signature names to `Endpoint(inputs, fn)`: `inputs` is a dict of
named `tf.TensorSpec`s (batch axis None) and `fn` takes a dict of those tensors and returns a
dict of named output tensors, using only TensorFlow ops (it is traced with autograph off).  A
subclass overrides the method to replace, add or drop signatures, e.g. a compression model whose
`encode` returns rounded integer codes and whose `decode` takes them; `image_endpoint(fn, spec)`
rebuilds `reconstruct_image` around another reconstruction function.  `serving_default` must
stay.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from aezoo import data
from aezoo.models.base import Endpoint, check_int


def export_saved_model(
    model: keras.Model,
    base_dir: str | os.PathLike,
    version: int | None = None,
    edit_endpoints: Callable[[dict[str, Endpoint]], dict[str, Endpoint]] | None = None,
) -> Path:
    """Writes `model` as the SavedModel `base_dir/<version>/` for TF Serving.

    Args:
        model: an autoencoder: a Keras model with `.encoder` and `.decoder` submodels.
        base_dir: the model's folder (TF Serving's `model_base_path`); created if missing.
        version: positive integer; None takes one more than the highest existing version,
            or 1.
        edit_endpoints: edits the endpoints after `model.serving_endpoints`, for this export
            only: an application adds what it fitted around the model (the scaling and the
            threshold of an anomaly detector, say).

    Returns:
        The path of the new version folder.

    Raises:
        FileExistsError: if that version already exists (it is left as it was).
        ValueError: for a bad version, or a model without an encoder and a decoder.
    """
    if not all(hasattr(model, part) for part in ("encoder", "decoder", "input")):
        raise ValueError(
            "Only autoencoders (Keras models with .encoder and .decoder) can be exported. "
            f"Received: {type(model).__name__}"
        )
    base_dir = Path(base_dir)
    version = new_version(base_dir, version)
    target = base_dir / str(version)

    endpoints = default_endpoints(model)
    hook = getattr(model, "serving_endpoints", None)
    if hook is not None:
        endpoints = hook(endpoints)
    if edit_endpoints is not None:
        endpoints = edit_endpoints(endpoints)
    if "serving_default" not in endpoints:
        raise ValueError("A model's serving_endpoints() must keep 'serving_default'.")

    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, endpoint in endpoints.items():
        archive.add_endpoint(name, endpoint.fn, input_signature=[endpoint.inputs])

    made = [folder for folder in (base_dir, *base_dir.parents) if not folder.exists()]
    base_dir.mkdir(parents=True, exist_ok=True)
    # Hidden and not all digits: TF Serving never takes it for a version.  Made by mkdir
    # (not tempfile.mkdtemp, which is private to its owner) so a server running as another
    # user can read it.
    temporary = base_dir / f".export-{uuid.uuid4().hex}"
    try:
        temporary.mkdir()
        try:
            archive.write_out(temporary, verbose=False)
        except tf.errors.OpError as error:
            raise _os_error(error, target) from None
        if target.exists():  # another export took this version meanwhile
            raise FileExistsError(f"Version {version} appeared in {base_dir} meanwhile.")
        temporary.rename(target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        for folder in made:  # the folders this export made, deepest first, if still empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return target


# What TensorFlow's file system says where Python would raise an OSError (the words of
# strerror, which its messages carry).
_DISK_ERRORS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES)


def _os_error(error: Exception, target: Path) -> Exception:
    """TensorFlow's error of writing `target` as the OSError Python would raise (a full
    disk: "No space left on device"), so that commands answer it in one line; any other
    error as it is."""
    for number in _DISK_ERRORS:
        if os.strerror(number) in str(error):
            return OSError(number, os.strerror(number), str(target))
    return error


def new_version(base_dir: str | os.PathLike, version: int | None = None) -> int:
    """The version an export to `base_dir` writes: `version`, or the next one when None.

    Raises:
        FileExistsError: if `version` exists already.
        NotADirectoryError: if `base_dir` is a file.
        ValueError: if `version` is not a positive integer.
    """
    base_dir = Path(base_dir)
    if base_dir.exists() and not base_dir.is_dir():
        raise NotADirectoryError(f"{base_dir} is a file, not a folder of model versions.")
    existing = versions(base_dir)
    following = max(existing, default=0) + 1
    version = check_int("version", following if version is None else version)
    if version >= 2**63:  # TF Serving reads versions as int64
        raise ValueError(f"`version` must be below 2**63. Received: version={version}")
    if version in existing or (base_dir / str(version)).exists():
        raise FileExistsError(
            f"Version {version} already exists in {base_dir}; versions are never overwritten. "
            f"Leave out the version to write {following}."
        )
    return version


def versions(base_dir: str | os.PathLike) -> list[int]:
    """The versions in `base_dir`: its all-digit folder names, which TF Serving loads."""
    base_dir = Path(base_dir)
    if not base_dir.is_dir():
        return []
    return sorted(int(p.name) for p in base_dir.iterdir() if p.name.isdigit() and p.is_dir())


def signature_names(export_dir: str | os.PathLike) -> list[str]:
    """The serving signatures of a SavedModel folder, read from its saved_model.pb."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel.FromString(
        (Path(export_dir) / "saved_model.pb").read_bytes()
    )
    names = saved_model.meta_graphs[0].signature_def
    return sorted(name for name in names if not name.startswith("__"))


# ---------------------------------------------------------------------------- endpoints


def default_endpoints(model: keras.Model) -> dict[str, Endpoint]:
    """The endpoints every autoencoder gets, derived from its input and submodels' specs."""
    (x_tensor,) = keras.tree.flatten(model.input)  # autoencoders have one input
    x = {"x": _spec("x", x_tensor)}
    decoder_input = model.decoder.input
    codes = {  # named as the decoder's inputs: `encode`'s response is a `decode` request
        name: _spec(name, tensor)
        for name, tensor in (
            decoder_input.items()
            if isinstance(decoder_input, dict)
            else ((t.name, t) for t in keras.tree.flatten(decoder_input))
        )
    }

    # One function for serving_default, score and reconstruct_image: traced once for each
    # input shape, where three Python closures traced the whole model three times.
    @tf.function
    def reconstruct(x):
        return model(x, training=False)  # inference: Corruption layers pass x through

    def encode(inputs):
        outputs = model.encoder(inputs["x"], training=False)
        if not isinstance(outputs, dict):
            outputs = dict(zip(codes, keras.tree.flatten(outputs)))
        # Cast to what decode takes (under mixed precision the encoder may emit float16).
        return {name: tf.cast(outputs[name], spec.dtype) for name, spec in codes.items()}

    def decode(inputs):
        if isinstance(decoder_input, dict):
            arguments = inputs
        elif isinstance(decoder_input, (list, tuple)):
            arguments = [inputs[name] for name in codes]
        else:
            (arguments,) = inputs.values()
        return {"reconstruction": model.decoder(arguments, training=False)}

    def score(inputs):
        x = tf.cast(inputs["x"], tf.float32)
        error = tf.square(x - tf.cast(reconstruct(inputs["x"]), tf.float32))
        return {"score": tf.reduce_mean(error, axis=list(range(1, x.shape.rank)))}

    endpoints = {
        "serving_default": Endpoint(x, lambda i: {"reconstruction": reconstruct(i["x"])}),
        "encode": Endpoint(x, encode),
        "decode": Endpoint(codes, decode),
        "score": Endpoint(x, score),
    }
    if is_image_spec(x["x"]):
        endpoints["reconstruct_image"] = image_endpoint(reconstruct, x["x"])
    return endpoints


def _spec(name: str, tensor: Any) -> tf.TensorSpec:
    """The signature spec of a Keras tensor: its dtype and shape, any batch size."""
    return tf.TensorSpec((None, *tensor.shape[1:]), tensor.dtype, name=name)


def is_image_spec(spec: tf.TensorSpec) -> bool:
    """Whether a model input (batch, height, width, 1 or 3) of floats takes images."""
    return spec.shape.rank == 4 and spec.shape[-1] in (1, 3) and spec.dtype.is_floating


def image_endpoint(
    reconstruct: Callable[[tf.Tensor], tf.Tensor], spec: tf.TensorSpec
) -> Endpoint:
    """`reconstruct_image`: PNG/JPEG strings in, PNG strings of the same sizes out.

    Each picture is decoded (JPEG with the accurate integer DCT, as `aezoo.data` reads files),
    scaled to [0, 1], resized (bilinear, antialiased, as `aezoo.data.from_directory`) to the
    model's height and width where those are fixed, reconstructed, resized back, clipped to
    [0, 1] and written as an 8-bit PNG with the model's channels.  Pictures are processed one by
    one, so a batch may mix sizes.  Named `*_bytes` so TF Serving's REST API returns
    `{"b64": ...}` objects.
    """
    height, width, channels = spec.shape[1:]

    def one(encoded):
        image = data.decode_image(encoded, channels)
        size = tf.shape(image)[:2]
        x = tf.cast(image, tf.float32) / 255.0
        if height is not None or width is not None:
            model_size = tf.stack([height or size[0], width or size[1]])
            x = _resize(x, size, model_size)
        x = tf.ensure_shape(x, [height, width, channels])
        y = tf.cast(reconstruct(tf.cast(x, spec.dtype)[None])[0], tf.float32)
        if height is not None or width is not None:
            y = _resize(y, model_size, size)
        pixels = tf.cast(tf.round(tf.clip_by_value(y, 0.0, 1.0) * 255.0), tf.uint8)
        return tf.io.encode_png(pixels)

    def fn(inputs):
        images = tf.map_fn(
            one, inputs["image_bytes"], fn_output_signature=tf.TensorSpec([], tf.string)
        )
        return {"image_bytes": images}

    return Endpoint({"image_bytes": tf.TensorSpec([None], tf.string, name="image_bytes")}, fn)


def _resize(image: tf.Tensor, size: tf.Tensor, new_size: tf.Tensor) -> tf.Tensor:
    return tf.cond(
        tf.reduce_all(tf.equal(size, new_size)),
        lambda: image,
        lambda: tf.image.resize(image, new_size, antialias=True),
    )
