"""The data sources (tfds, image folders, arrays) and the training pipeline of aezoo.data."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import shared_data
from PIL import Image

from aezoo import data


def examples(ds):
    return np.stack([np.asarray(x) for x in ds])


def write_images(folder, sizes, mode, suffix, seed=0):
    """Random images of the given (height, width), saved with Pillow; returns their pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = []
    for i, (height, width) in enumerate(sizes):
        shape = (height, width) if mode == "L" else (height, width, 3)
        array = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(array, mode).save(folder / f"im{i:02d}{suffix}", quality=90)
        pixels.append(np.asarray(Image.open(folder / f"im{i:02d}{suffix}")))
    return pixels


# ------------------------------------------------------------------------- sources


def test_tfds_source_gives_the_split_scaled_to_unit_range(tfds_dir):
    import tensorflow_datasets as tfds

    ds = data.from_tfds("mnist", "test[:50]", data_dir=tfds_dir)
    x = examples(ds)
    # Independent: the same split straight from tfds, as uint8.
    split = tfds.load("mnist", split="test[:50]", data_dir=tfds_dir)
    raw = np.stack([e["image"] for e in tfds.as_numpy(split)])
    assert x.shape == (50, 28, 28, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(x, raw.astype(np.float32) / 255)
    assert x.min() == 0.0 and x.max() == 1.0


def test_tfds_source_can_keep_the_labels(tfds_dir):
    ds = data.from_tfds("mnist", "test[:20]", data_dir=tfds_dir, with_labels=True)
    labels = [int(y) for _, y in ds]
    assert len(labels) == 20 and set(labels) <= set(range(10))


def test_unknown_tfds_dataset_is_a_value_error(tfds_dir):
    with pytest.raises(ValueError, match="no_such_dataset"):
        data.from_tfds("no_such_dataset", data_dir=tfds_dir)


def test_jpeg_is_read_with_pillows_pixels():
    path = shared_data("raw", "cbsd432", "100007.jpg")
    with Image.open(path) as image:
        rgb, gray = np.asarray(image), np.asarray(image.convert("L"))
    np.testing.assert_array_equal(data.read_image(path), rgb)
    np.testing.assert_array_equal(data.read_image(path, channels=1)[..., 0], gray)


def test_gray_png_folder_is_resized_to_the_asked_size(tmp_path):
    pixels = write_images(tmp_path, [(20, 30), (24, 18), (20, 30)], "L", ".png")
    x = examples(data.from_directory(tmp_path, image_size=(20, 30)))
    assert x.shape == (3, 20, 30, 1) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 1
    # An image already of that size passes unchanged (resizing by 1 is the identity).
    np.testing.assert_allclose(x[0, ..., 0], pixels[0] / 255, atol=1e-6)
    # Another is resized bilinearly with antialiasing, as Pillow's float images are (its
    # triangle filter widens when it shrinks, 24 -> 20 rows here): float32 round-off only.
    # (Without antialiasing the values differ by up to 0.13, nearest-neighbour by 0.57.)
    floats = Image.fromarray(pixels[1].astype(np.float32) / 255, "F")
    expected = np.asarray(floats.resize((30, 20), Image.Resampling.BILINEAR))
    np.testing.assert_allclose(x[1, ..., 0], expected, atol=1e-5)


def test_equal_sized_images_need_no_resizing_and_have_a_static_shape(tmp_path):
    pixels = write_images(tmp_path, [(12, 20)] * 3, "RGB", ".png")
    ds = data.from_directory(tmp_path)
    assert tuple(ds.element_spec.shape) == (12, 20, 3)
    np.testing.assert_allclose(examples(ds), np.stack(pixels) / 255, atol=1e-7)


def test_images_of_different_sizes_keep_them_one_by_one(tmp_path):
    pixels = write_images(tmp_path, [(12, 20), (14, 20)], "L", ".png")
    ds = data.from_directory(tmp_path)
    assert tuple(ds.element_spec.shape) == (None, None, 1)
    for image, expected in zip(ds, pixels):
        np.testing.assert_allclose(image[..., 0], expected / 255, atol=1e-7)


def test_rgb_jpeg_patches_are_real_crops_drawn_afresh_each_epoch(tmp_path):
    pixels = write_images(tmp_path, [(40, 50), (45, 40)], "RGB", ".jpg")
    ds = data.from_directory(tmp_path, patch_size=16, patches_per_image=3, seed=1)
    assert int(ds.cardinality()) == 6
    first, second = examples(ds), examples(ds)
    assert first.shape == (6, 16, 16, 3) and first.dtype == np.float32
    for i, patch in enumerate(first):
        image = pixels[i // 3].astype(np.float32) / 255  # Pillow's pixels (same decoder)
        windows = np.lib.stride_tricks.sliding_window_view(image, (16, 16, 3))[..., 0, :, :, :]
        assert np.any(np.all(np.abs(windows - patch) < 1e-6, axis=(-3, -2, -1)))
    assert not np.array_equal(first, second)


def test_gray_images_read_as_rgb_and_rgb_as_gray(tmp_path):
    gray = write_images(tmp_path / "gray", [(8, 8)], "L", ".png")[0]
    rgb = write_images(tmp_path / "rgb", [(8, 8)], "RGB", ".png")[0]
    as_rgb = examples(data.from_directory(tmp_path / "gray", channels=3))[0]
    np.testing.assert_allclose(as_rgb, np.repeat(gray[..., None], 3, axis=-1) / 255, atol=1e-7)
    as_gray = examples(data.from_directory(tmp_path / "rgb", channels=1))[0]
    luma = np.asarray(Image.fromarray(rgb).convert("L"))
    np.testing.assert_allclose(as_gray[..., 0], luma / 255, atol=1e-7)


def test_a_palette_file_of_gray_colours_is_grayscale_and_one_of_colours_is_not(tmp_path):
    """A palette PNG is probed (and read, with no `channels`) as grayscale when all its
    palette's colours are gray: its pixels are then the palette's gray levels."""
    levels = np.random.default_rng(0).integers(0, 256, (9, 11), dtype=np.uint8)
    Image.fromarray(levels).convert("P").save(tmp_path / "gray.png")
    with Image.open(tmp_path / "gray.png") as image:
        assert image.mode == "P"
    colour = np.stack([levels, levels[::-1], levels], axis=-1)
    Image.fromarray(colour).convert("P", palette=Image.Palette.ADAPTIVE).save(
        tmp_path / "colour.png")
    assert data.probe_image(tmp_path / "gray.png") == (9, 11, 1)
    assert data.probe_image(tmp_path / "colour.png") == (9, 11, 3)
    np.testing.assert_array_equal(data.read_image(tmp_path / "gray.png")[..., 0], levels)
    assert data.read_image(tmp_path / "colour.png").shape == (9, 11, 3)


def test_missing_or_empty_folders_are_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such folder"):
        data.from_directory(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no PNG or JPEG"):
        data.from_directory(tmp_path / "empty")


def test_a_folders_files_are_listed_by_suffix_in_any_case_and_subfolders_are_not(tmp_path):
    for name in ("b.PNG", "a.jpeg", "c.JPG", "notes.txt", "d.aez", "e.AEZ",
                 "._b.PNG", ".d.x1.partial.aez"):  # hidden: macOS's, a killed run's
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder.png").mkdir()  # named like an image, but no file
    assert [p.name for p in data.list_images(tmp_path)] == ["a.jpeg", "b.PNG", "c.JPG"]
    assert [p.name for p in data.list_files(tmp_path, (".aez",), ".aez files")] == [
        "d.aez", "e.AEZ"]
    with pytest.raises(ValueError, match=r"folder.png holds no \.aez files\."):
        data.list_files(tmp_path / "folder.png", (".aez",), ".aez files")
    with pytest.raises(NotADirectoryError, match=r"b.PNG is a file, not a folder of PNG or"):
        data.list_images(tmp_path / "b.PNG")


def test_patches_larger_than_an_image_are_rejected(tmp_path):
    write_images(tmp_path, [(10, 30)], "L", ".png")
    with pytest.raises(ValueError, match="smaller than the 16x16 patches"):
        data.from_directory(tmp_path, patch_size=16)


def test_augmenting_whole_images_is_refused_rather_than_ignored(tmp_path):
    write_images(tmp_path, [(16, 16)], "L", ".png")
    with pytest.raises(ValueError, match="it needs `patch_size`"):
        data.from_directory(tmp_path, augment=True)


def test_augmenting_oblong_patches_is_refused_before_any_image_is_decoded(tmp_path,
                                                                         monkeypatch):
    """Rotations change an oblong patch's shape; the refusal came after every image of the
    folder was decoded into the cache."""
    write_images(tmp_path, [(16, 24)], "L", ".png")

    def decoded(*args, **kwargs):
        raise AssertionError("an image was decoded before the options were checked")

    monkeypatch.setattr(data, "decode_image", decoded)
    with pytest.raises(ValueError, match="`augment` needs square patches"):
        data.from_directory(tmp_path, augment=True, patch_size=(8, 16))


def test_uint8_npy_gets_a_channel_axis_and_unit_range(tmp_path):
    raw = np.random.default_rng(0).integers(0, 256, (7, 5, 6), dtype=np.uint8)
    np.save(tmp_path / "x.npy", raw)
    x = examples(data.from_arrays(tmp_path / "x.npy"))
    assert x.shape == (7, 5, 6, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(x[..., 0], raw.astype(np.float32) / 255)


def test_integers_wider_than_16_bits_are_refused_for_their_unknown_depth():
    pixels = np.random.default_rng(0).integers(0, 256, (4, 3, 3, 1))  # int64, as from lists
    with pytest.raises(ValueError, match="these are int64: convert them"):
        data.load_array(pixels)
    np.testing.assert_allclose(data.load_array(pixels.astype(np.uint8)), pixels / 255, rtol=1e-6)
    signed = np.array([[-32768, 0, 32767]], np.int16)  # 16-bit signals: by 65535, as before
    np.testing.assert_allclose(data.load_array(signed), signed / 65535, rtol=1e-6)


def test_npz_arrays_are_chosen_by_key_and_16_bit_scaled(tmp_path):
    signals = np.random.default_rng(0).normal(size=(9, 140)).astype(np.float64)
    depth = np.full((4, 3, 3, 1), 65535, dtype=np.uint16)
    np.savez(tmp_path / "d.npz", signals=signals, depth=depth)
    x = examples(data.from_arrays(tmp_path / "d.npz", key="signals"))
    assert x.shape == (9, 140) and x.dtype == np.float32
    np.testing.assert_allclose(x, signals, rtol=1e-6)  # float data is used as it is
    np.testing.assert_array_equal(examples(data.from_arrays(tmp_path / "d.npz", key="depth")), 1.0)
    with pytest.raises(ValueError, match="no array 'x'"):
        data.from_arrays(tmp_path / "d.npz", key="x")


@pytest.mark.parametrize(
    "array,message",
    [
        (np.zeros((0, 4, 4, 1), np.float32), "N > 0"),
        (np.array([[0.5, np.nan], [0.1, 0.2]], np.float32), "1 NaN or infinite"),
        (np.array([[0.5, np.inf]], np.float32), "1 NaN or infinite"),
    ],
    ids=["empty", "nan", "inf"],
)
def test_empty_or_non_finite_arrays_are_rejected(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(ValueError, match=message):
        data.from_arrays(tmp_path / "bad.npy")


def test_missing_array_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        data.from_arrays(tmp_path / "missing.npy")


# ------------------------------------------------------------------------ pipeline


def numbered(n, array=False):
    """n examples whose single value is their index, so that batches show which they hold:
    a dataset of examples, or with `array` the array itself (the pipeline's other path)."""
    x = np.arange(n, dtype=np.float32).reshape(n, 1)
    return x if array else data.from_arrays(x)


both_paths = pytest.mark.parametrize("array", [False, True], ids=["dataset", "array"])


def indices(batches):
    return [np.asarray(x)[:, 0].astype(int).tolist() for x, _ in batches]


def test_pipeline_yields_input_target_pairs_of_the_same_examples():
    batches = list(data.pipeline(numbered(10), 4, shuffle=False))
    assert [len(x) for x, _ in batches] == [4, 4, 2]
    for x, y in batches:
        np.testing.assert_array_equal(x, y)


@both_paths
def test_pipeline_shuffles_each_epoch_the_same_way_for_the_same_seed(array):
    ds = data.pipeline(numbered(50, array), 50, seed=3)
    first, second = indices(ds)[0], indices(ds)[0]
    assert sorted(first) == sorted(second) == list(range(50)) and first != second
    # Another worker building the same pipeline sees the same orders.
    again = data.pipeline(numbered(50, array), 50, seed=3)
    assert indices(again)[0] == first and indices(again)[0] == second


def test_denoising_pipeline_pairs_noisy_inputs_with_clean_targets():
    clean = np.full((8, 4, 4, 1), 0.5, np.float32)
    ds = data.pipeline(data.from_arrays(clean), 4, noise=("gaussian", 0.1), shuffle=False)
    noisy, target = map(np.concatenate, zip(*[(np.asarray(x), np.asarray(y)) for x, y in ds]))
    np.testing.assert_array_equal(target, clean)
    # Gaussian noise of sigma 0.1 on 128 pixels: the sample sigma is within 30% of it.
    assert 0.07 < np.std(noisy - clean) < 0.13
    # Validation-style pipelines (shuffle=False) draw the same noise every epoch.
    np.testing.assert_array_equal(noisy, np.concatenate([np.asarray(x) for x, _ in ds]))
    with pytest.raises(ValueError, match=r"`noise` must be a \(kind, level\) pair"):
        data.pipeline(data.from_arrays(clean), 4, noise=0.1)
    # A bad kind or level is named as the part of `noise` it is (it read `corruption`, an
    # argument of the builders that neither `pipeline` nor `train` has).
    with pytest.raises(ValueError, match=r"`noise\[0\]` must be one of .*noise\[0\]='gauss'"):
        data.pipeline(data.from_arrays(clean), 4, noise=("gauss", 0.1))
    with pytest.raises(ValueError, match=r"`noise\[1\]` is out of range .*noise\[1\]=2"):
        data.pipeline(data.from_arrays(clean), 4, noise=("gaussian", 2))


def test_pipeline_asks_tf_distribute_to_shard_by_data():
    ds = data.pipeline(numbered(10), 4)
    policy = ds.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA


@pytest.mark.parametrize(
    "n,batch,replicas,sizes",
    [
        (37, 16, 2, [16, 16, 4]),  # last batch 5 -> 4: 2 each
        (37, 16, 4, [16, 16, 4]),  # last batch 5 -> 4: 1 each
        (38, 16, 4, [16, 16, 4]),  # last batch 6 -> 4
        (36, 16, 2, [16, 16, 4]),  # already even: nothing left out
        (35, 10, 3, [10, 10, 10, 3]),  # batch not a multiple of the replicas
        (3, 16, 2, [2]),
    ],
)
@both_paths
def test_pipeline_leaves_out_the_fewest_examples_for_an_even_last_batch(
    n, batch, replicas, sizes, array
):
    ds = data.pipeline(numbered(n, array), batch, num_replicas=replicas, seed=1)
    assert int(ds.cardinality()) == len(sizes)  # known, for Keras's progress bar
    first = indices(ds)
    assert [len(b) for b in first] == sizes
    assert len(set(sum(first, []))) == sum(sizes)  # no example twice


@both_paths
def test_examples_left_out_for_replicas_change_from_epoch_to_epoch(array):
    ds = data.pipeline(numbered(37, array), 16, num_replicas=2, seed=1)
    left_out = [set(range(37)) - set(sum(indices(ds), [])) for _ in range(3)]
    assert all(len(s) == 1 for s in left_out) and len(set.union(*left_out)) > 1


def test_pipeline_without_a_known_size_keeps_whole_batches_for_replicas():
    unknown = numbered(37).filter(lambda x: True)
    assert int(unknown.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    sizes = [len(b) for b in indices(data.pipeline(unknown, 16, num_replicas=2))]
    assert sizes == [16, 16]


@both_paths
def test_fewer_examples_than_replicas_are_rejected(array):
    with pytest.raises(ValueError, match="1 examples cannot be split across 2 replicas"):
        data.pipeline(numbered(1, array), 16, num_replicas=2)


def test_pipeline_of_an_array_gives_every_example_once_per_epoch_in_a_new_order():
    x = np.arange(10 * 2 * 2, dtype=np.float32).reshape(10, 2, 2, 1)
    ds = data.pipeline(x, 4, seed=0)
    epochs = []
    for _ in range(2):
        batches = list(ds.as_numpy_iterator())
        assert [len(inputs) for inputs, _ in batches] == [4, 4, 2]
        assert all(np.array_equal(inputs, targets) for inputs, targets in batches)
        epochs.append(np.concatenate([inputs for inputs, _ in batches]))
    for epoch in epochs:
        np.testing.assert_array_equal(epoch[np.argsort(epoch[:, 0, 0, 0])], x)
    assert not np.array_equal(epochs[0], epochs[1])
    # Across 3 replicas a last batch of 2 would leave one replica empty: it is left out.
    kept = [len(inputs) for inputs, _ in data.pipeline(x, 4, num_replicas=3).as_numpy_iterator()]
    assert kept == [4, 4]


@pytest.mark.parametrize("turn", range(1, 9))
def test_read_image_turns_a_file_upright_as_pillow_does(turn, tmp_path):
    """`upright=True` follows the EXIF orientation as Pillow's `exif_transpose` does (an
    independent implementation); the default keeps the stored pixels."""
    from PIL import ImageOps

    stored = np.random.default_rng(turn).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = turn
    path = tmp_path / "photo.png"
    image.save(path, exif=exif)
    assert data.orientation(path) == turn
    with Image.open(path) as opened:
        expected = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
    np.testing.assert_array_equal(data.read_image(path, 3, upright=True), expected)
    np.testing.assert_array_equal(data.read_image(path, 3), stored)


def test_bit_depth_tells_16_bit_pngs_which_are_read_as_8_bits(tmp_path):
    """A 16-bit PNG is read as the high byte of each sample (what the applications' lines
    say); 8-bit PNGs and JPEGs are read as they are."""
    samples = np.random.default_rng(0).integers(0, 2**16, (6, 5), dtype=np.uint16)
    Image.fromarray(samples).save(tmp_path / "deep.png")
    Image.fromarray((samples >> 8).astype(np.uint8)).save(tmp_path / "plain.png")
    Image.fromarray((samples >> 8).astype(np.uint8)).convert("RGB").save(tmp_path / "a.jpg")
    assert [data.bit_depth(tmp_path / name) for name in ("deep.png", "plain.png", "a.jpg")] == [
        16, 8, 8]
    np.testing.assert_array_equal(data.read_image(tmp_path / "deep.png")[..., 0],
                                  samples >> 8)
    # Asked for its full depth: all 16 bits, in gray and converted to colour and back.
    deep = data.read_image(tmp_path / "deep.png", full_depth=True)
    assert deep.dtype == np.uint16
    np.testing.assert_array_equal(deep[..., 0], samples)
    np.testing.assert_array_equal(data.read_image(tmp_path / "deep.png", channels=3,
                                                  full_depth=True), np.repeat(deep, 3, -1))
    colour = np.random.default_rng(1).integers(0, 2**16, (6, 5, 3), dtype=np.uint16)
    (tmp_path / "deep_rgb.png").write_bytes(tf.io.encode_png(colour).numpy())
    luma = data.read_image(tmp_path / "deep_rgb.png", channels=1, full_depth=True)[..., 0]
    expected = colour @ np.array([0.299, 0.587, 0.114])  # ITU-R 601
    assert np.abs(luma - expected).max() <= 1
    assert data.read_image(tmp_path / "plain.png", full_depth=True).dtype == np.uint8


# ------------------------------------------------------------------------- CSV


def test_read_csv_takes_little_more_memory_than_its_features(tmp_path, monkeypatch):
    import tracemalloc

    monkeypatch.setattr(data, "CSV_CHUNK_ROWS", 500)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6000, 40)).astype(np.float32)
    labels = rng.integers(0, 2, 6000)
    path = tmp_path / "rows.csv"
    with open(path, "w") as f:
        f.write(",".join(f"f{j}" for j in range(40)) + ",label\n")
        for row, label in zip(x, labels):
            f.write(",".join(repr(float(v)) for v in row) + f",{label}\n")
    tracemalloc.start()
    features, read = data.read_csv(path, "label")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(features, x)
    np.testing.assert_array_equal(read, labels.astype(str))
    # The whole file as Python strings took ~30 times the features (~29 MB for 0.96 MB).
    assert peak < 5 * features.nbytes


def test_read_csv_names_a_bad_cell_by_its_row_in_the_file_not_in_its_block(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(data, "CSV_CHUNK_ROWS", 4)
    rows = [["0.5", "1.5"]] * 10
    rows[6] = ["0.5", "oops"]
    (tmp_path / "bad.csv").write_text("".join(",".join(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"data row 6, feature 1 is not a number: 'oops'"):
        data.read_csv(tmp_path / "bad.csv")
    (tmp_path / "short.txt").write_text("1 2\n3 4\n5 6\n7 8\n9 10\n11\n")
    with pytest.raises(ValueError, match=r"data row 5 has 1 columns, not 2"):
        data.read_csv(tmp_path / "short.txt")
    (tmp_path / "empty.csv").write_text("\n\n")
    with pytest.raises(ValueError, match="holds no rows of data"):
        data.read_csv(tmp_path / "empty.csv")
    with pytest.raises(ValueError, match="holds no rows of data"):
        data.csv_columns(tmp_path / "empty.csv")
