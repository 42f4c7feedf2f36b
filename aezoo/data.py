"""Every way data comes into aezoo, as `tf.data` pipelines.

Sources yield single examples (no batch axis), images as float32 in [0, 1]:

* `from_tfds(name, split)`: a tensorflow-datasets dataset (honours `data_dir` and
  `TFDS_DATA_DIR`);
* `from_directory(path)`: a folder of PNG/JPEG files, resized or cut into random patches;
* `from_arrays(x)`: a NumPy array, or a `.npy`/`.npz` file;
* `read_csv(path, label_column)`: rows of numbers (signals or records) and their labels, as
  arrays (`to_arrays` turns any source into arrays too).

`pipeline(examples, batch_size)` turns a source into what `model.fit` takes: batches of
`(x, x)` pairs, or `(noisy x, x)` for denoising, shuffled, prefetched and ready to be sharded
across workers.  Sources cache decoded data in memory where it fits, before any random
patches or noise, which stay fresh each epoch.

`read_image` is the one image decoder of aezoo: the folder pipeline and the applications use
it alike, so training and evaluation see the same pixels.  For JPEG it asks TensorFlow for the
accurate integer DCT, whose pixels equal Pillow's (TensorFlow's default fast DCT differs from
Pillow by up to 21 grey levels on BSDS500 files).
"""

from __future__ import annotations

import csv
import itertools
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from aezoo import noise as noise_lib
from aezoo._quiet import first_line
from aezoo.models.base import check_int

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
AUTOTUNE = tf.data.AUTOTUNE
# Sources keep decoded data in memory when it takes less than this.
CACHE_LIMIT_BYTES = 4 * 2**30
# The shuffle buffer holds at most this much (float32 examples).
SHUFFLE_BUFFER_BYTES = 2**30
# Rows converted to float32 this many at a time: the cells of a whole file as Python strings
# took 28 times the memory of its features (205k ECG rows: 3.2 GB for 115 MB).
CSV_CHUNK_ROWS = 4096


# ------------------------------------------------------------------------- images


def decode_image(data: tf.Tensor, channels: int) -> tf.Tensor:
    """Decodes PNG or JPEG bytes to uint8 (height, width, channels), in graph mode too.

    RGB files asked for as grayscale are converted with ITU-R 601 luma weights (as Pillow's
    "L" mode); grayscale files asked for as RGB are repeated over three channels.
    """

    def jpeg():
        return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")

    def png():
        return tf.io.decode_png(data, channels=3)

    rgb = tf.cond(tf.io.is_jpeg(data), jpeg, png)
    if channels == 3:
        return rgb
    # Pillow's "L" conversion exactly: ITU-R 601 weights in 16-bit fixed point, rounded.
    weighted = tf.cast(rgb, tf.int32) * [19595, 38470, 7471]
    luma = tf.bitwise.right_shift(tf.reduce_sum(weighted, axis=-1, keepdims=True) + 0x8000, 16)
    return tf.cast(luma, tf.uint8)


def read_image(path: str | os.PathLike, channels: int | None = None,
               upright: bool = False, full_depth: bool = False) -> np.ndarray:
    """Reads a PNG or JPEG file as uint8 (height, width, channels).

    Args:
        path: the file.
        channels: 1 or 3; None keeps the file's own (grayscale files give 1, others 3).
        upright: turn the pixels as the file's EXIF orientation says (`orientation`), as
            image viewers show them; the applications that write images do, so that a
            phone's photo does not come back on its side.  False (the default, and the
            training pipeline's way): the pixels as stored.
        full_depth: a 16-bit PNG as uint16, all its bits (a scan's, a raw developer's);
            False (the default): as every other file, uint8, the high byte of each sample.

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: if the file is not a readable PNG or JPEG image.
    """
    path = Path(path)
    if channels is None:
        channels = probe_image(path)[2]
    else:
        probe_image(path)
    try:
        if full_depth and bit_depth(path) == 16:
            rgb = tf.io.decode_png(path.read_bytes(), channels=3, dtype=tf.uint16).numpy()
            image = rgb if channels == 3 else _luma16(rgb)
        else:
            image = decode_image(tf.constant(path.read_bytes()), channels).numpy()
    except tf.errors.OpError as error:  # a truncated or damaged image: headers were fine
        raise ValueError(f"{path} is damaged or truncated ({first_line(error, 120)}).") from None
    return turn_upright(image, orientation(path)) if upright else image


def _luma16(rgb: np.ndarray) -> np.ndarray:
    """`decode_image`'s grayscale conversion of uint16 pixels (a gray file's three equal
    channels give its own values back: the weights sum to 2**16)."""
    weighted = rgb.astype(np.int64) @ np.array([19595, 38470, 7471], np.int64)
    return ((weighted[..., None] + 0x8000) >> 16).astype(np.uint16)


def orientation(path: str | os.PathLike) -> int:
    """The EXIF orientation of a readable PNG/JPEG file: 1 (as stored; also when the file
    has none) to 8, as the EXIF standard numbers them (6: the camera was turned clockwise,
    so the stored pixels must be turned clockwise to be upright)."""
    from PIL import Image

    with Image.open(path) as image:
        value = image.getexif().get(0x0112, 1)
    return value if value in range(1, 9) else 1


def turn_upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """`image` (height, width, ...) turned and mirrored as EXIF `orientation` (1-8) says,
    as Pillow's `ImageOps.exif_transpose` turns it."""
    turns = {1: lambda a: a, 2: np.fliplr, 3: lambda a: np.rot90(a, 2), 4: np.flipud,
             5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, -1),
             7: lambda a: np.rot90(np.swapaxes(a, 0, 1), 2), 8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(turns[orientation](image))


def probe_image(path: str | os.PathLike) -> tuple[int, int, int]:
    """(height, width, channels) of a PNG/JPEG file, from its header; channels is 1 for
    grayscale files and 3 for colour ones.  A palette file whose colours are all gray
    (R = G = B, as some tools write a scan) is grayscale.

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: if the file is not a readable PNG or JPEG image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such image file: {path}")
    try:
        with Image.open(path) as image:
            if image.format not in ("PNG", "JPEG"):
                raise ValueError(f"{path} is a {image.format} file; aezoo reads PNG and JPEG.")
            gray = image.mode in ("1", "L", "LA", "I", "I;16") or _gray_palette(image)
            image.verify()
            width, height = image.size
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise ValueError(f"{path} is not a readable PNG or JPEG image.") from None
    return height, width, 1 if gray else 3


def _gray_palette(image) -> bool:
    """Whether a Pillow image has an RGB palette of gray colours only (read from the PNG's
    PLTE chunk, in the header: no pixel is decoded)."""
    palette = image.palette
    if image.mode not in ("P", "PA") or palette is None \
            or (palette.rawmode or palette.mode) != "RGB":
        return False
    # (`getpalette()` would decode the pixels, after which Pillow cannot `verify` the file)
    colours = np.frombuffer(palette.palette, np.uint8)
    colours = colours[: len(colours) // 3 * 3].reshape(-1, 3)
    return bool(np.all(colours == colours[:, :1]))


def bit_depth(path: str | os.PathLike) -> int:
    """Bits per sample of a readable PNG/JPEG file: 8, or 16 for a 16-bit PNG (from its
    header), which `read_image` reads as 8 bits (the high byte of each sample) unless
    asked for its `full_depth`."""
    with open(path, "rb") as file:
        head = file.read(25)
    png = head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return 16 if png and head[24] == 16 else 8


def has_transparency(path: str | os.PathLike) -> bool:
    """Whether a readable PNG/JPEG file (see `probe_image`) has an alpha channel or a
    transparent colour, which `read_image` drops."""
    from PIL import Image

    with Image.open(path) as image:
        return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info


def list_images(directory: str | os.PathLike) -> list[Path]:
    """The PNG/JPEG files directly in `directory`, sorted by name.

    Raises:
        FileNotFoundError: if the folder does not exist.
        ValueError: if it holds no PNG or JPEG file.
    """
    return list_files(directory, IMAGE_SUFFIXES, "PNG or JPEG images")


def list_files(directory: str | os.PathLike, suffixes: Sequence[str], what: str) -> list[Path]:
    """The files directly in `directory` whose suffix is one of `suffixes` (lower case; the
    files' may be any case), sorted by name; a folder named like one is not a file, and
    hidden files are none of them: the "._photo.png" that macOS leaves beside a photo on
    a shared disk is no image, nor a killed command's ".photo.x1.partial.png".

    Raises:
        FileNotFoundError: if the folder does not exist.
        NotADirectoryError: if it is a file.
        ValueError: "{directory} holds no {what}." if it holds none.
    """
    directory = Path(directory)
    if directory.is_file():
        raise NotADirectoryError(f"{directory} is a file, not a folder of {what}.")
    if not directory.is_dir():
        raise FileNotFoundError(f"No such folder: {directory}")
    files = sorted(p for p in directory.iterdir()
                   if p.suffix.lower() in suffixes and not p.name.startswith(".")
                   and p.is_file())
    if not files:
        raise ValueError(f"{directory} holds no {what}.")
    return files


# ------------------------------------------------------------------------ sources


def from_tfds(
    name: str,
    split: str = "train",
    *,
    data_dir: str | None = None,
    key: str = "image",
    with_labels: bool = False,
) -> tf.data.Dataset:
    """Examples of a tensorflow-datasets dataset, images scaled to [0, 1].

    Args:
        name: the TFDS name, e.g. "mnist", "fashion_mnist", "cifar10".
        split: e.g. "train", "test", "train[:10%]".
        data_dir: where prepared datasets live; None means `TFDS_DATA_DIR` or tfds's default.
        key: the feature that holds the input.
        with_labels: yield `(x, label)` instead of `x`.

    Raises:
        ValueError: if the dataset is unknown, cannot be prepared, or has no such feature.
    """
    import tensorflow_datasets as tfds

    where = data_dir or os.environ.get("TFDS_DATA_DIR")
    if where and not Path(where).is_dir():
        source = "--data-dir" if data_dir else "TFDS_DATA_DIR"
        raise FileNotFoundError(f"No such folder: {where} ({source}, where "
                                "tensorflow-datasets keeps prepared datasets).")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        builder.download_and_prepare()
        ds = builder.as_dataset(split=split, shuffle_files=False)
    except Exception as error:  # tfds raises many types; all mean "cannot have it"
        where = data_dir or os.environ.get("TFDS_DATA_DIR") or "tfds's default data_dir"
        raise ValueError(
            f"Cannot load tensorflow-datasets '{name}' split '{split}' from {where}: "
            f"{first_line(error, named=True)}"
        ) from None
    if key not in ds.element_spec:
        raise ValueError(
            f"tensorflow-datasets '{name}' has no feature '{key}'; it has "
            f"{', '.join(ds.element_spec)}."
        )

    def select(example):
        return (example[key], example["label"]) if with_labels else example[key]

    ds = ds.map(select, num_parallel_calls=AUTOTUNE)
    if _decoded_bytes(builder.info, split, ds.element_spec) < CACHE_LIMIT_BYTES:
        ds = _filled(ds.cache())  # decoded, before scaling: 4x smaller than float32
    if with_labels:
        return ds.map(lambda x, y: (to_float(x), y), num_parallel_calls=AUTOTUNE)
    return ds.map(to_float, num_parallel_calls=AUTOTUNE)


def _filled(cached: tf.data.Dataset) -> tf.data.Dataset:
    """A cached dataset, read once to its end so that its in-memory cache is complete.

    The cache is shared by all iterators of the dataset, but an iterator that stops early
    (Keras takes one batch to build a model; a plot takes a few examples) throws away what it
    cached, with a warning that reads like lost data ("The calling iterator did not fully
    read the dataset being cached").  Filling it first costs the first epoch's decoding,
    done earlier, and no iterator writes to it again.
    """
    cached.reduce(np.int64(0), lambda count, _: count + 1)
    return cached


def has_split(name: str, split: str, *, data_dir: str | None = None) -> bool:
    """Whether tensorflow-datasets `name` has `split` (False for an unknown dataset, which
    `from_tfds` reports clearly)."""
    import tensorflow_datasets as tfds

    try:
        return split in tfds.builder(name, data_dir=data_dir).info.splits
    except Exception:  # tfds raises many types; all mean "cannot tell"
        return False


def _decoded_bytes(info, split: str, spec) -> float:
    """Memory the decoded split would take, or infinity when unknown."""
    try:
        examples = info.splits[split].num_examples
    except (KeyError, ValueError):
        return float("inf")
    spec = spec[0] if isinstance(spec, tuple) else spec
    if spec.shape.num_elements() is None:
        return float("inf")
    return examples * spec.shape.num_elements() * spec.dtype.size


def from_directory(
    directory: str | os.PathLike,
    *,
    channels: int | None = None,
    image_size: tuple[int, int] | None = None,
    patch_size: int | tuple[int, int] | None = None,
    patches_per_image: int = 1,
    augment: bool = False,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Images of a folder, as float32 in [0, 1].

    With `image_size` each image is resized (bilinear, with antialiasing); with `patch_size`
    each pass over the data cuts `patches_per_image` fresh random patches out of every image;
    with neither, images keep their own sizes: the examples' shape is then static if all
    are equal, and (None, None, channels) otherwise (fine one by one, not for batches).

    The decoded images are cached in memory as uint8 when they take less than
    `CACHE_LIMIT_BYTES`, so later epochs read no files.

    Args:
        directory: the folder of PNG/JPEG files.
        channels: 1 or 3; None takes the first image's own.
        image_size: (height, width) to resize to.
        patch_size: side, or (height, width), of random patches.
        patches_per_image: random patches per image per epoch.
        augment: patches only: turn each patch by a random one of the 8 rotations and
            mirror images of a square (as DnCNN trains), so a small set of photos gives
            more distinct examples.
        seed: seed of the patch positions (and of the augmentation).

    Raises:
        FileNotFoundError, ValueError: for a missing folder, no images, an image smaller than
        the patch, or a file that is not a readable image.
    """
    files = list_images(directory)
    sizes = [probe_image(path) for path in files]  # headers only: fails early on bad files
    if channels is None:
        channels = sizes[0][2]
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3. Received: channels={channels!r}")
    if image_size is not None and patch_size is not None:
        raise ValueError("Give `image_size` (resize) or `patch_size` (crop), not both.")
    if augment and patch_size is None:  # (it turns patches; whole images may not be square)
        raise ValueError("`augment` turns random patches: it needs `patch_size` (--patch).")
    patches_per_image = check_int("patches_per_image", patches_per_image)
    patch = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    if augment and patch[0] != patch[1]:  # (before any image is decoded)
        raise ValueError("`augment` needs square patches (rotations change their shape).")
    if patch is not None:
        for path, (height, width, _) in zip(files, sizes):
            if height < patch[0] or width < patch[1]:
                raise ValueError(
                    f"{path} is {height}x{width}, smaller than the "
                    f"{patch[0]}x{patch[1]} patches asked for."
                )
    shape = [None, None, channels]
    if image_size is None and patch is None and len({size[:2] for size in sizes}) == 1:
        shape = [*sizes[0][:2], channels]  # static, so that models can be built from it

    ds = tf.data.Dataset.from_tensor_slices([str(path) for path in files])
    ds = ds.map(
        lambda path: tf.ensure_shape(decode_image(tf.io.read_file(path), channels), shape),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    if sum(height * width * channels for height, width, _ in sizes) < CACHE_LIMIT_BYTES:
        try:
            ds = _filled(ds.cache())  # decoded uint8: later epochs read no files
        except tf.errors.OpError:
            for path in files:  # name the file that does not decode
                read_image(path, channels)
            raise

    if image_size is not None:
        size = list(image_size)
        return ds.map(
            lambda image: tf.image.resize(to_float(image), size, antialias=True),
            num_parallel_calls=AUTOTUNE,
        )
    if patch is None:
        return ds.map(to_float)

    if patches_per_image > 1:
        ds = ds.flat_map(
            lambda image: tf.data.Dataset.from_tensors(image).repeat(patches_per_image)
        )
        # flat_map hides the count, which pipeline() needs to split the data evenly.
        ds = ds.apply(tf.data.experimental.assert_cardinality(len(files) * patches_per_image))
    seeds = _seed_pairs(seed, rerandomize=True)

    def crop(image, crop_seed):
        shape = [patch[0], patch[1], channels]
        image = tf.image.stateless_random_crop(image, shape, seed=crop_seed)
        if augment:
            turn_seed = tf.random.experimental.stateless_fold_in(crop_seed, 1)
            k = tf.random.stateless_uniform([], turn_seed, 0, 8, dtype=tf.int32)
            image = tf.image.rot90(image, k % 4)
            image = tf.cond(k >= 4, lambda: tf.image.flip_left_right(image), lambda: image)
        return to_float(image)

    return tf.data.Dataset.zip(ds, seeds).map(crop, num_parallel_calls=AUTOTUNE)


def from_arrays(source: np.ndarray | str | os.PathLike, *, key: str | None = None) -> tf.data.Dataset:
    """Examples from a NumPy array or a `.npy`/`.npz` file (first axis = examples).

    Integer arrays are taken as 8- or 16-bit images and scaled to [0, 1] (8-bit types by 255,
    16-bit ones by 65535; wider integer types are refused, as their depth is unknown), and a
    3-axis uint8 array (N, height, width) gets a channel axis; float arrays are used as they
    are.

    Raises:
        FileNotFoundError, ValueError: missing file, unknown `.npz` key, no examples, or values
        that are NaN or infinite.
    """
    array = load_array(source, key=key)
    return tf.data.Dataset.from_tensor_slices(array)


def load_array(source: np.ndarray | str | os.PathLike, *, key: str | None = None) -> np.ndarray:
    """The array `from_arrays` uses, as float32 (see there)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"No such array file: {path}")
        try:
            loaded = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            # (an empty or truncated file raises EOFError, text raises ValueError)
            raise ValueError(f"{path} is not a .npy or .npz array file "
                             f"({first_line(error)}).") from None
        if isinstance(loaded, np.lib.npyio.NpzFile):
            names = list(loaded.keys())
            if key is None and "x" not in names and len(names) != 1:
                raise ValueError(f"{path} holds {len(names)} arrays ({', '.join(names)}); "
                                 "choose one with --key (key= in Python).")
            chosen = key or ("x" if "x" in names else names[0])
            if chosen not in names:
                raise ValueError(f"{path} has no array '{chosen}'; it has {', '.join(names)}.")
            try:
                loaded = loaded[chosen]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile):
                raise ValueError(
                    f"{path} is damaged: its array '{chosen}' cannot be read.") from None
        source = loaded
    array = np.asarray(source)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
            or array.dtype == np.bool_):
        raise ValueError(f"Expected an array of real numbers; got {array.dtype} values "
                         "(complex numbers, text and objects are not examples).")
    if array.ndim < 2 or len(array) == 0:
        raise ValueError(f"Expected an array of examples, (N, ...) with N > 0; got {array.shape}.")
    if array.dtype == np.uint8 and array.ndim == 3:
        array = array[..., None]
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32) / _integer_scale(array)
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        bad = int(np.size(array) - np.isfinite(array).sum())
        raise ValueError(f"The data holds {bad} NaN or infinite values; clean them first.")
    return array


def float_examples(examples: tf.data.Dataset) -> tf.data.Dataset:
    """A dataset of examples under `load_array`'s rules: integer pixels (what
    `tfds.load(...).map(lambda d: d["image"])` gives) scaled to [0, 1], 8-bit ones by 255 and
    16-bit ones by 65535, (height, width) uint8 images given a channel axis.  Without this,
    a model would train on 0-255 values against a sigmoid output, without a word."""
    spec = examples.element_spec
    if not isinstance(spec, tf.TensorSpec) or spec.dtype.is_floating:
        return examples  # (pairs are the caller's own)
    dtype = spec.dtype.as_numpy_dtype
    if dtype == np.bool_:
        return examples.map(lambda x: tf.cast(x, tf.float32))
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"Expected examples of real numbers; got {spec.dtype.name} values.")
    scale = _integer_scale(np.empty(0, dtype))
    channel = dtype == np.uint8 and spec.shape.rank == 2

    def scaled(x):
        x = tf.cast(x, tf.float32) / scale
        return x[..., None] if channel else x

    return examples.map(scaled, num_parallel_calls=AUTOTUNE)


def _integer_scale(array: np.ndarray) -> float:
    """255 for 8-bit integers, 65535 for 16-bit ones: what their pixels are divided by.
    Wider integers (NumPy's default int64, from lists) say nothing of their pixels' depth,
    and 0-255 pixels divided by 65535 would train on images 257 times too dark: refused."""
    if array.dtype.itemsize > 2:
        raise ValueError(f"Integer examples are taken as pixels, 8-bit (uint8, 0-255) or "
                         f"16-bit (uint16); these are {array.dtype}: convert them to one of "
                         "those, or to floats (in [0, 1] for images).")
    return 255.0 if array.dtype.itemsize == 1 else 65535.0


def to_float(image: tf.Tensor) -> tf.Tensor:
    """uint8 image -> float32 in [0, 1]."""
    return tf.cast(image, tf.float32) / 255.0


def to_arrays(examples: tf.data.Dataset, batch_size: int = 1024):
    """Stacks a source's examples into one NumPy array (a tuple of arrays for pairs).

    Raises:
        ValueError: if there are no examples.
    """
    parts = list(examples.batch(batch_size).as_numpy_iterator())
    if not parts:
        raise ValueError("The data holds no examples.")
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate(column) for column in zip(*parts))
    return np.concatenate(parts)


def read_csv(
    path: str | os.PathLike, label_column: int | str | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows of a CSV file as float32 features (N, F), and its label column as strings.

    The first row is a header when it holds text where the second row holds numbers.  The
    cells are separated by commas, tabs or semicolons (`csv.Sniffer` tells which from the
    first lines), or else by spaces (as the UCR archive's .txt files are).  The file is
    read a block of rows at a time, each turned into numbers at once, so that reading takes
    little more memory than the features it returns.

    Args:
        path: the file.
        label_column: None (no labels), a 0-based index (negative ones count from the end;
            a string of digits is an index too), or a name in the header.

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: no data rows, rows of different lengths, a label column that is not
            there, or a feature that is not a finite number.
    """
    rows = _iter_csv_rows(path)
    head = [row for _, row in zip(range(2), rows)]
    header = None
    if head and any(not _is_number(a) for a in head[0]):
        if len(head) == 1 or any(
            not _is_number(a) and _is_number(b) for a, b in zip(head[0], head[1])
        ):
            header, head = [cell.strip() for cell in head[0]], head[1:]
    if not head:
        raise ValueError(f"{path} holds no rows of data.")
    width = len(header or head[0])
    column = _column_index(path, label_column, header, width)
    if width - (column is not None) < 1:
        raise ValueError(f"{path} has no feature columns besides the label column.")

    labels, blocks, block, done = [] if column is not None else None, [], [], 0
    for i, row in enumerate(itertools.chain(head, rows)):
        if len(row) != width:
            raise ValueError(f"{path}: data row {i} has {len(row)} columns, not {width}.")
        if column is not None:
            labels.append(row[column].strip())
            row = row[:column] + row[column + 1 :]
        block.append(row)
        if len(block) == CSV_CHUNK_ROWS:
            blocks.append(_csv_features(path, block, done))
            done, block = done + len(block), []
    if block:
        blocks.append(_csv_features(path, block, done))
    features = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    del blocks
    if not np.isfinite(features).all():
        i, j = (int(k) for k in np.argwhere(~np.isfinite(features))[0])
        count = int((~np.isfinite(features)).sum())
        more = f" ({count} NaN or infinite values in all)" if count > 1 else ""
        raise ValueError(f"{path}: data row {i}, feature {j} is {features[i, j]}{more}; "
                         "clean them first.")
    return features, (None if labels is None else np.array(labels))


def _csv_features(path, rows: list[list[str]], first: int) -> np.ndarray:
    """A block of rows of cells as float32, or ValueError naming the first cell that is not
    a number (`first`: the data row number of the block's first row)."""
    try:
        return np.array(rows, dtype=np.float32)
    except ValueError:
        i, j, cell = next(
            (i, j, cell) for i, row in enumerate(rows) for j, cell in enumerate(row)
            if not _is_number(cell)
        )
        shown = cell if len(cell) <= 40 else cell[:37] + "..."
        raise ValueError(f"{path}: data row {first + i}, feature {j} is not a number: "
                         f"{shown!r}.") from None


def csv_columns(path: str | os.PathLike) -> int:
    """The number of columns of a CSV file, as `read_csv` reads it (from its first row)."""
    return len(next(_iter_csv_rows(path)))  # (a file of no rows: the stream's ValueError)


def _iter_csv_rows(path: str | os.PathLike):
    """The non-empty rows of a file of cells separated by commas, tabs or semicolons, or
    spaces (see `read_csv`), one at a time; FileNotFoundError or IsADirectoryError at once,
    ValueError (at the end) if there are none."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a CSV file.")
    if not path.is_file():
        raise FileNotFoundError(f"No such CSV file: {path}")
    return _csv_row_stream(path)


def _csv_row_stream(path: Path):
    with open(path, newline="") as f:
        sample = f.read(1 << 16)
        f.seek(0)
        lines = [line for line in sample.splitlines() if line.strip()][:5]
        try:
            delimiter = csv.Sniffer().sniff("\n".join(lines), delimiters=",\t;").delimiter
        except csv.Error:  # no such separator: spaces, or a single column
            delimiter = None
        if delimiter is None:
            rows = (line.split() for line in f)
        else:
            rows = csv.reader(f, delimiter=delimiter)
        empty = True
        for row in rows:
            if any(cell.strip() for cell in row):
                empty = False
                yield row
    if empty:
        raise ValueError(f"{path} holds no rows of data.")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _column_index(path: Path, column: int | str | None, header, width: int) -> int | None:
    if column is None:
        return None
    if isinstance(column, int) or str(column).lstrip("-").isdigit():
        index = int(column)
        if not -width <= index < width:
            raise ValueError(
                f"{path} has {width} columns (0 to {width - 1}); there is no label column "
                f"{index}."
            )
        return index % width
    if header is None:
        raise ValueError(
            f"{path} has no header row, so the label column must be a 0-based index, "
            f"not {column!r}."
        )
    if column not in header:
        raise ValueError(f"{path} has no column {column!r}; its header is {', '.join(header)}.")
    return header.index(column)


# ----------------------------------------------------------------------- pipeline


def pipeline(
    examples: tf.data.Dataset | np.ndarray,
    batch_size: int,
    *,
    noise: tuple[str, float] | None = None,
    shuffle: bool = True,
    seed: int = 0,
    drop_remainder: bool = False,
    num_replicas: int = 1,
) -> tf.data.Dataset:
    """Batches of `(x, x)`, or `(noisy x, x)` when `noise` is given, ready for `model.fit`.

    Args:
        examples: a source above (or any dataset of single examples; `(x, label)` pairs
            are reduced to `x`), or an array of examples (N, ...) already in memory (see
            `load_array`), which is shuffled and batched by index and gathered a batch at
            a time, as Keras does with arrays (see `_array_batches`).
        batch_size: the global batch size; under a tf.distribute strategy Keras splits it
            across replicas.
        noise: `(kind, level)` from `aezoo.noise.parse_noise`; fresh noise each epoch.
        shuffle: reshuffle each epoch (an array: a permutation of all its examples; a
            dataset: a buffer of up to 10,000 examples, less for large examples, so that it
            fits in `SHUFFLE_BUFFER_BYTES`).
        seed: seed of the shuffle order and of the noise.  Workers of a multi-worker job must
            share it, so that they shard one and the same order of examples.
        drop_remainder: drop the last, smaller batch.
        num_replicas: the replicas the batches will be split across
            (`strategy.num_replicas_in_sync`).  With more than one, each pass leaves out
            the fewest examples (fewer than `num_replicas`, picked anew each epoch when
            shuffling) that make the last batch split evenly: tf.distribute gives a
            replica an empty batch otherwise, which fails.

    Raises:
        ValueError: if there are fewer examples than replicas.
    """
    check_int("batch_size", batch_size)
    check_int("num_replicas", num_replicas)
    if isinstance(examples, tf.data.Dataset):
        batches = _example_batches(examples, batch_size, shuffle, seed, drop_remainder, num_replicas)
        optimize = True
    else:
        batches = _array_batches(examples, batch_size, shuffle, seed, drop_remainder, num_replicas)
        # tf.data's default graph rewrites cost the array path 3-5% of a small model's
        # training speed here (benchmarks/train_throughput.py); Keras turns them off too.
        optimize = False
    if noise is None:
        batches = batches.map(lambda x: (x, x))
    else:
        if not (isinstance(noise, (tuple, list)) and len(noise) == 2):
            raise ValueError("`noise` must be a (kind, level) pair, e.g. ('gaussian', 25 / "
                             f"255) or aezoo.noise.parse_noise('gaussian:25'). Received: "
                             f"noise={noise!r}")
        kind, level = noise
        noise_lib.check_noise(kind, level, names=("noise[0]", "noise[1]"))
        # Fresh seeds each epoch, the same on every worker: stateless noise from them is
        # reproducible and identical wherever the same batch is built.
        seeds = _seed_pairs(seed, rerandomize=shuffle)
        batches = tf.data.Dataset.zip(batches, seeds).map(
            lambda x, s: (noise_lib.add_noise(x, kind, level, s), x),
            num_parallel_calls=AUTOTUNE,
        )
    options = tf.data.Options()
    # Shard by examples, not files: every worker builds the same (seeded) sequence of global
    # batches, tf.distribute splits each into per-replica parts, and each worker keeps its
    # own parts, so the workers together train on exactly the batches one process would.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.experimental_optimization.apply_default_optimizations = optimize
    return batches.with_options(options).prefetch(AUTOTUNE)


def _replica_split(size: int, batch_size: int, num_replicas: int) -> int:
    """How many of `size` examples to keep so that the last batch splits across replicas."""
    keep = size - size % batch_size % num_replicas
    if keep == 0:
        raise ValueError(
            f"{size} examples cannot be split across {num_replicas} replicas; "
            "give at least as many examples as replicas."
        )
    return keep


def _example_batches(
    examples: tf.data.Dataset, batch_size: int, shuffle: bool, seed: int,
    drop_remainder: bool, num_replicas: int,
) -> tf.data.Dataset:
    """Batches of a dataset of single examples (shuffled in a buffer)."""
    if isinstance(examples.element_spec, tuple):
        examples = examples.map(lambda x, *_: x)
    size = int(examples.cardinality())
    if shuffle:
        buffer = _shuffle_buffer(examples.element_spec, size)
        examples = examples.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if num_replicas > 1 and not drop_remainder:
        if size == tf.data.UNKNOWN_CARDINALITY:
            drop_remainder = True  # cannot know the last batch: keep whole batches only
        elif size != tf.data.INFINITE_CARDINALITY:
            examples = examples.take(_replica_split(size, batch_size, num_replicas))
    return examples.batch(batch_size, drop_remainder=drop_remainder)


def _array_batches(
    array: np.ndarray, batch_size: int, shuffle: bool, seed: int, drop_remainder: bool,
    num_replicas: int,
) -> tf.data.Dataset:
    """Batches of an in-memory array, as Keras batches arrays: each epoch one permutation
    of all indices, cut into batches of indices, each gathered from the array at once.
    Shuffling indices example by example (a shuffle buffer, then `batch`) with tf.data's
    default rewrites on made a small model train 6% slower than Keras `fit` on the same
    arrays on 2 CPU cores; this way it is as fast (benchmarks/train_throughput.py)."""
    array = tf.convert_to_tensor(array)
    size = int(array.shape[0])
    if drop_remainder:
        keep = size - size % batch_size
    elif num_replicas > 1:
        keep = _replica_split(size, batch_size, num_replicas)
    else:
        keep = size
    full, rest = divmod(keep, batch_size)

    def epoch_batches(epoch_seed):
        order = tf.range(size, dtype=tf.int64)
        if shuffle:
            # Stateless, from a seed drawn anew each epoch: the same order on every worker.
            # (Folded, so that it differs from the noise seed of the epoch's first batch.)
            order = tf.random.experimental.stateless_shuffle(
                order, seed=tf.random.experimental.stateless_fold_in(epoch_seed, 1)
            )
        order = order[:keep]
        batches = tf.data.Dataset.from_tensor_slices(
            tf.reshape(order[: full * batch_size], [full, batch_size])
        )
        if rest:
            batches = batches.concatenate(
                tf.data.Dataset.from_tensors(order[full * batch_size:])
            )
        return batches

    indices = _seed_pairs(seed, rerandomize=shuffle).take(1).flat_map(epoch_batches)
    # flat_map hides the length, which Keras needs for its progress bar and epoch end.
    indices = indices.apply(tf.data.experimental.assert_cardinality(full + (1 if rest else 0)))
    return indices.map(lambda i: tf.gather(array, i), num_parallel_calls=AUTOTUNE)


def _seed_pairs(seed: int, *, rerandomize: bool) -> tf.data.Dataset:
    """An endless stream of [2] int64 seeds for stateless random ops, from `seed`; with
    `rerandomize` a new stream each epoch (each new iterator)."""
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=rerandomize).batch(2)


def _shuffle_buffer(spec: tf.TensorSpec, size: int) -> int:
    """Up to 10,000 examples, fewer if the data has fewer or they would not fit in memory."""
    buffer = 10_000
    if size > 0:
        buffer = min(buffer, size)
    elements = spec.shape.num_elements()
    if elements is not None:
        buffer = min(buffer, max(1, SHUFFLE_BUFFER_BYTES // (elements * spec.dtype.size)))
    return buffer
