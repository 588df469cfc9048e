"""Omniglot task family on the real archives in ../shared/data (Leap,
section 4.1 / appendix D protocol)."""

import os
import pathlib
import shutil
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from tfmeta import layers as L
from tfmeta.tasks import omniglot
from conftest import requires_omniglot

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))

pytestmark = requires_omniglot


@pytest.fixture(scope="session")
def data():
    """The protocol object, decoded once per session (through the cache)."""
    start = time.perf_counter()
    result = omniglot.load(verbose=True)
    print(f"\nOmniglot load: {time.perf_counter() - start:.1f} s")
    return result


@pytest.fixture(scope="session")
def test_tasks(data):
    return omniglot.tasks("test", augment=False, data=data)


def test_alphabets_kept_and_dropped(data):
    assert len(data.num_characters) == 50
    assert sum(data.num_characters.values()) == 1623
    kept = data.train_alphabets + data.test_alphabets
    assert len(kept) == 46 and len(set(kept)) == 46
    assert len(data.dropped_alphabets) == 4      # appendix D: "(4)" dropped
    assert all(data.num_characters[a] >= 20 for a in kept)
    assert all(data.num_characters[a] < 20 for a in data.dropped_alphabets)
    for a in kept:
        chars = data.characters[a]
        assert len(set(chars.tolist())) == 20
        assert set(chars.tolist()) <= set(range(1, data.num_characters[a] + 1))
        assert data.images[a].shape == (20, 20, 28, 28)


def test_held_out_alphabets_fixed_and_disjoint(data):
    assert len(data.test_alphabets) == 10
    # the list documented in tfmeta/tasks/omniglot.py
    assert data.test_alphabets == [
        "Atemayar_Qelisayer", "Futurama", "Grantha", "Greek", "Hebrew",
        "Kannada", "Korean", "Sanskrit", "Sylheti", "ULOG"]
    assert data.train_alphabets[:5] == [
        "Glagolitic", "Braille", "Arcadian", "Anglo-Saxon_Futhorc", "Gujarati"]
    assert len(data.train_alphabets) == 36
    assert not set(data.test_alphabets) & set(data.train_alphabets)
    again = omniglot.Omniglot(*omniglot.load_raw())
    assert again.test_alphabets == data.test_alphabets
    assert again.train_alphabets == data.train_alphabets
    for a in data.test_alphabets:
        np.testing.assert_array_equal(again.characters[a], data.characters[a])
    other = omniglot.Omniglot(*omniglot.load_raw(), seed=1)
    assert other.test_alphabets != data.test_alphabets
    assert data.split("train", 3) == data.train_alphabets[:3]
    with pytest.raises(ValueError, match="num_tasks"):
        data.split("train", 37)
    # validation: the last 10 pretraining alphabets, after the table's 25
    assert data.split("validation") == data.train_alphabets[26:]
    assert not set(data.validation_alphabets) & set(data.split("train", 26))
    with pytest.raises(ValueError, match="'validation'"):
        data.split("valid")


def test_split_sizes_labels_and_pixels(data, test_tasks):
    b = test_tasks
    assert b["support_x"].shape == (10, 300, 28, 28, 1)
    assert b["query_x"].shape == (10, 100, 28, 28, 1)
    assert b["support_y"].shape == (10, 300) and b["query_y"].shape == (10, 100)
    np.testing.assert_array_equal(np.bincount(b["support_y"][0]), [15] * 20)
    np.testing.assert_array_equal(np.bincount(b["query_y"][0]), [5] * 20)
    np.testing.assert_array_equal(b["task_id"], np.arange(10))
    # support = drawers 1-15, query = drawers 16-20 of the same characters
    raw = data.images[data.test_alphabets[3]]            # [class, drawer, H, W]
    np.testing.assert_allclose(b["support_x"][3, :15, ..., 0],
                               raw[0, :15] / 255.0, atol=1e-6)
    np.testing.assert_allclose(b["query_x"][3, 5:10, ..., 0],
                               raw[1, 15:] / 255.0, atol=1e-6)
    x = b["support_x"]
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    # ink = 1 on a background of 0: strokes cover a small part of the image
    assert 0.03 < x.mean() < 0.2
    assert (x[..., :2, :, :] < 0.5).mean() > 0.98        # border is background


def test_dataset_shapes_task_ids_and_determinism(data):
    ds = lambda seed: omniglot.dataset(  # noqa: E731
        num_tasks=3, meta_batch_size=4, seed=seed, data=data)
    a, b, c = (list(ds(s).take(2).as_numpy_iterator()) for s in (0, 0, 1))
    assert a[0]["support_x"].shape == (4, 300, 28, 28, 1)
    assert a[0]["query_x"].shape == (4, 100, 28, 28, 1)
    ids = np.concatenate([e["task_id"] for e in a])
    assert ids.min() >= 0 and ids.max() < 3
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert not np.array_equal(a[0]["support_x"], a[1]["support_x"])
    assert not np.array_equal(a[0]["support_x"], c[0]["support_x"])
    x = a[0]["support_x"]
    assert x.min() >= 0.0 and x.max() <= 1.0


def _images(test_tasks, n=64):
    return tf.constant(test_tasks["support_x"][:, ::5].reshape(-1, 28, 28, 1)[:n])


def test_augmentation_identity_and_full_turn(test_tasks):
    x = _images(test_tasks)
    seed = tf.constant([3, 4], tf.int64)
    same = omniglot.augment(x, seed, scale_range=(1.0, 1.0),
                            rotation_range=(0.0, 0.0), translation_range=0.0)
    np.testing.assert_allclose(same.numpy(), x.numpy(), atol=1e-6)
    turned = omniglot.augment(x, seed, scale_range=(1.0, 1.0),
                              rotation_range=(360.0, 360.0),
                              translation_range=0.0)
    np.testing.assert_allclose(turned.numpy(), x.numpy(), atol=1e-3)
    default = omniglot.augment(x, seed)
    assert not np.allclose(default.numpy(), x.numpy(), atol=0.1)


def test_augmentation_bounds_and_ink_mass(test_tasks):
    x = _images(test_tasks, 128)
    mass = lambda t: tf.reduce_sum(t, [1, 2, 3]).numpy()  # noqa: E731
    seed = tf.constant([5, 6], tf.int64)
    rotated = omniglot.augment(x, seed, scale_range=(1.0, 1.0),
                               translation_range=0.0)
    ratio = mass(rotated) / mass(x)
    assert abs(np.median(ratio) - 1.0) < 0.05 and ratio.min() > 0.7
    grown = omniglot.augment(x, seed, scale_range=(1.2, 1.2),
                             rotation_range=(0.0, 0.0), translation_range=0.0)
    assert abs(np.median(mass(grown) / mass(x)) - 1.44) < 0.08
    # bounds of the drawn maps: A = R(-r) / s
    m = omniglot.affine_matrices(seed, 1000).numpy()
    scale = 1.0 / np.sqrt(m[:, 0] * m[:, 4] - m[:, 1] * m[:, 3])
    assert scale.min() >= 0.8 - 1e-4 and scale.max() <= 1.2 + 1e-4
    assert scale.min() < 0.82 and scale.max() > 1.18
    angle = np.degrees(np.arctan2(m[:, 1], m[:, 0])) % 360
    assert angle.min() < 5 and angle.max() > 355


def test_augmentation_translation_moves_ink(test_tasks):
    """Translation by (tx, ty) pixels moves the ink's centroid by (tx, ty),
    with |t| <= 0.2 x 28 px."""
    x = _images(test_tasks, 128)
    seed = tf.constant([7, 8], tf.int64)
    ranges = dict(scale_range=(1.0, 1.0), rotation_range=(0.0, 0.0))
    m = omniglot.affine_matrices(seed, 128, **ranges).numpy()
    np.testing.assert_allclose(m[:, [0, 4]], 1.0, atol=1e-6)
    shift = -m[:, [2, 5]]
    assert np.abs(shift).max() <= 0.2 * 28 + 1e-4 and np.abs(shift).max() > 5
    moved = omniglot.augment(x, seed, **ranges).numpy()
    grid = np.arange(28, dtype=np.float32)
    mass = lambda t: t.sum((1, 2, 3))  # noqa: E731
    centroid = lambda t: np.stack([  # noqa: E731
        (t * grid[None, None, :, None]).sum((1, 2, 3)) / mass(t),
        (t * grid[None, :, None, None]).sum((1, 2, 3)) / mass(t)], 1)
    kept = mass(moved) / mass(x.numpy()) > 0.995  # no ink pushed out
    assert kept.sum() > 20
    np.testing.assert_allclose((centroid(moved) - centroid(x.numpy()))[kept],
                               shift[kept], atol=0.1)


def test_missing_archive_names_files_and_places(tmp_path, monkeypatch):
    monkeypatch.setenv("TFMETA_DATA", str(tmp_path / "elsewhere"))
    (tmp_path / "omniglot").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        omniglot.find_archives(tmp_path)
    message = str(err.value)
    assert "images_background.zip" in message
    assert "images_evaluation.zip" in message
    assert str(tmp_path / "omniglot") in message
    monkeypatch.setenv("TFMETA_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        omniglot.load()
    assert str(tmp_path / "omniglot") in str(err.value)
    assert "TFMETA_DATA" in str(err.value)


def test_data_dir_from_environment(tmp_path, monkeypatch):
    real = omniglot.find_archives()
    (tmp_path / "omniglot").mkdir()
    for p in real:
        os.symlink(p, tmp_path / "omniglot" / p.name)
    monkeypatch.setenv("TFMETA_DATA", str(tmp_path))
    found = omniglot.find_archives()
    assert found == [tmp_path / "omniglot" / p.name for p in real]


def test_truncated_archive_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("TFMETA_CACHE", str(tmp_path / "cache"))
    real = omniglot.find_archives()
    folder = tmp_path / "omniglot"
    folder.mkdir()
    shutil.copy(real[1], folder / real[1].name)
    with open(real[0], "rb") as f:
        (folder / real[0].name).write_bytes(f.read(200_000))
    with pytest.raises(omniglot.OmniglotDataError) as err:
        omniglot.load_raw(tmp_path)
    assert str(folder / "images_background.zip") in str(err.value)
    assert "truncated or corrupt" in str(err.value)
    # a zip whose central directory is intact but whose data is damaged
    blob = bytearray(real[0].read_bytes())
    blob[50_000:50_400] = bytes(400)
    (folder / real[0].name).write_bytes(bytes(blob))
    with pytest.raises(omniglot.OmniglotDataError, match="images_background"):
        omniglot.load_raw(tmp_path, use_cache=False)


def test_cache_round_trip(tmp_path, monkeypatch, data):
    monkeypatch.setenv("TFMETA_CACHE", str(tmp_path))
    real = omniglot.find_archives()
    key = omniglot._cache_key(real)
    raw = omniglot.load_raw()                 # decodes and writes the cache
    cache = tmp_path / f"omniglot-{key}.npz"
    assert cache.is_file()
    images, alphabets, characters = omniglot.load_raw()
    np.testing.assert_array_equal(images, raw[0])
    np.testing.assert_array_equal(alphabets, raw[1])
    assert images.shape == (1623, 20, 28, 28) and images.dtype == np.uint8


def test_leap_convnet_shapes():
    net = omniglot.leap_convnet(seed=0)
    assert net.output_shape == (None, 20)
    assert net.layers[-2].input.shape[1:] == (1, 1, 64)   # 1x1x64 feature map
    bns = [l for l in net.layers if isinstance(l, tfmeta.layers.BatchNormalization)]
    convs = [l for l in net.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(bns) == 4 and len(convs) == 4
    assert all(c.filters == 64 and c.kernel_size == (3, 3) for c in convs)
    a, b = omniglot.leap_convnet(seed=0), omniglot.leap_convnet(seed=0)
    for v, w in zip(a.weights, b.weights):
        np.testing.assert_array_equal(v.numpy(), w.numpy())


def test_meta_training_lowers_held_out_loss(data):
    """A tiny Reptile run on 5-way Omniglot tasks: the post-adaptation query
    loss on held-out alphabets falls below that of the random init (by ~0.3
    for this seed). Without augmentation: with it, 15 meta-steps are too few
    to move the held-out loss reliably."""
    kwargs = dict(ways=5, support_shots=5, query_shots=5, data=data,
                  augment=False)
    test = omniglot.tasks("test", num_tasks=4, seed=1, **kwargs)
    keras.utils.set_random_seed(0)
    meta = tfmeta.Reptile(
        omniglot.leap_convnet(num_classes=5, seed=0, filters=16),
        inner_optimizer=keras.optimizers.SGD(0.1), inner_steps=5,
        inner_batch_size=10, seed=0)
    meta.compile(optimizer=keras.optimizers.SGD(0.5),
                 loss=keras.losses.SparseCategoricalCrossentropy(
                     from_logits=True))
    before = meta.evaluate_tasks(test, steps=5)["loss_after"].mean()
    meta.fit(omniglot.dataset(num_tasks=10, meta_batch_size=4, seed=0,
                              **kwargs),
             epochs=1, steps_per_epoch=15, verbose=0)
    after = meta.evaluate_tasks(test, steps=5)["loss_after"].mean()
    assert np.isfinite(after) and after < before - 0.15, (before, after)


def test_support_batch_subsamples_each_task(data):
    (b,) = omniglot.dataset(num_tasks=2, meta_batch_size=3, support_batch=20,
                            augment=False, data=data).take(1).as_numpy_iterator()
    assert b["support_x"].shape == (3, 20, 28, 28, 1)
    assert b["support_y"].shape == (3, 20) and b["query_x"].shape[1] == 100
    for t in range(3):
        raw = data.images[data.train_alphabets[b["task_id"][t]]] / 255.0
        for x, y in zip(b["support_x"][t, ..., 0], b["support_y"][t]):
            gap = np.abs(raw[y, :15] - x).max((1, 2)).min()
            assert gap < 1e-6            # the image is one of its class's 15
    with pytest.raises(ValueError, match="support_batch"):
        omniglot.dataset(support_batch=301, data=data)


def test_experiment_presets_and_arguments():
    """The script's presets: ``small`` is planned to fit in an hour on 2
    cores; bad arguments are refused."""
    import omniglot_multishot as script

    _, cfg = script.parse_args(["--budget", "small"])
    # fits in an hour on 2 quiet cores (the prediction without its margin)
    assert script.predict_seconds(cfg, script.METHODS) / script.LOAD_FACTOR \
        < 3600
    # small: more meta-steps where there are more tasks to visit
    assert [script.meta_steps_for(cfg, n) for n in (1, 5, 25)] == [20, 50, 250]
    assert script.meta_steps_for(cfg, 3) == cfg["meta_steps"] == 100
    flat = dict(cfg, meta_steps_by_tasks={})
    assert script.predict_seconds(cfg, ["Leap"]) > script.predict_seconds(
        flat, ["Leap"])   # 20 + 50 + 250 = 320 vs 3 x 100 meta-steps
    _, cfg = script.parse_args(["--budget", "small", "--meta-steps", "7"])
    assert [script.meta_steps_for(cfg, n) for n in (1, 25)] == [7, 7]
    _, paper = script.parse_args(["--budget", "paper"])
    assert (paper["meta_steps"], paper["meta_batch"], paper["inner_steps"],
            paper["maml_steps"], paper["eval_steps"]) == (1000, 20, 100, 5, 100)
    assert set(script.PAPER) == set(script.TASK_COUNTS)
    assert script.checkpoints(100)[0] == 1 and script.checkpoints(100)[-1] == 100
    with pytest.raises(SystemExit):
        script.parse_args(["--methods", "Leap,Nope"])
    with pytest.raises(SystemExit):
        script.parse_args(["--tasks", "0,5"])
    _, cfg = script.parse_args(["--methods", "Leap,Reptile", "--meta-lr", "0.5"])
    assert cfg["meta_lr"] == dict(Leap=0.5, Reptile=0.5)
    _, cfg = script.parse_args(["--meta-lr", "Reptile=1"])
    assert cfg["meta_lr"]["Reptile"] == 1.0
    for bad in (["--meta-lr", "Nope=1"], ["--meta-lr", "fast"],
                ["--meta-lr", "Leap=-1"],
                ["--eval-split", "validation", "--tasks", "30"]):
        with pytest.raises(SystemExit):
            script.parse_args(bad)


@pytest.mark.slow
def test_experiment_tiny_preset_end_to_end(tmp_path):
    """``--budget tiny`` for two methods writes every output (~1 minute)."""
    import omniglot_multishot as script

    script.main(["--budget", "tiny", "--methods", "Reptile,Scratch",
                 "--out", str(tmp_path)])
    for name in ("runs.csv", "curves.csv", "results.md", "test_error.png",
                 "heldout_curves.png"):
        assert (tmp_path / name).stat().st_size > 0
    rows = (tmp_path / "runs.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1].startswith("Reptile,1,0,")
    assert "| 1 | " in (tmp_path / "results.md").read_text()


def test_support_copies_are_augmented_independently(data):
    kw = dict(num_tasks=1, ways=2, data=data)
    plain = omniglot.tasks("test", augment=False, support_copies=3, **kw)
    assert plain["support_x"].shape == (1, 90, 28, 28, 1)
    np.testing.assert_array_equal(plain["support_y"][0, :30],
                                  plain["support_y"][0, 60:])
    np.testing.assert_array_equal(plain["support_x"][0, :30],
                                  plain["support_x"][0, 30:60])
    aug = omniglot.tasks("test", support_copies=3, **kw)
    assert not np.allclose(aug["support_x"][0, :30], aug["support_x"][0, 30:60])
    with pytest.raises(ValueError, match="support_copies"):
        omniglot.tasks("test", support_copies=0, **kw)


def test_warpgrad_experiment_presets_and_arguments():
    """``warpgrad_omniglot.py``: presets, the run plan (Table 3's Leap and
    default rows reuse Table 2's runs), Warp-Leap = Leap's net with a warp
    after each conv block, identity at start; bad arguments refused."""
    import warpgrad_omniglot as script

    _, paper = script.parse_args(["--budget", "paper"])
    assert (paper["meta_steps"], paper["meta_batch"], paper["inner_steps"],
            paper["eval_steps"], paper["seeds"], paper["ablation_seeds"]) == (
                1000, 20, 100, 100, 10, 4)
    assert set(script.PAPER_T2) == set(script.TASK_COUNTS)
    assert set(script.WARPS) | {"Leap"} == set(script.PAPER_T3)
    args, small = script.parse_args(["--budget", "small"])
    assert (small["meta_steps"], small["seeds"],
            small["ablation_meta_steps"]) == (12, 2, 4)
    runs = script.plan(args, small)
    # Table 2 (12 meta-steps, 2 seeds) shares nothing with Table 3 (4 steps)
    assert runs[:4] == [("T2", "Leap", "", 25, 0),
                        ("T2", "Warp-Leap", "conv3", 25, 0),
                        ("T2", "Leap", "", 25, 1),
                        ("T2", "Warp-Leap", "conv3", 25, 1)]
    assert runs[4] == ("T3", "Leap", "", 25, 0)
    assert [r[2] for r in runs[5:]] == list(script.WARPS)
    # one --meta-steps for both tables: Table 3 reuses Table 2's runs
    args, same = script.parse_args(["--budget", "small", "--meta-steps", "3",
                                    "--seeds", "1"])
    assert same["ablation_meta_steps"] == 3
    assert [r[2] for r in script.plan(args, same)[2:]] == list(
        script.WARPS)[1:]
    args, cfg = script.parse_args(["--methods", "Warp-Leap", "--tasks", "5",
                                   "--warps", "conv1"])
    assert script.plan(args, cfg) == [
        ("T2", "Warp-Leap", "conv3", 5, 0), ("T2", "Warp-Leap", "conv3", 5, 1),
        ("T3", "Leap", "", 25, 0), ("T3", "Warp-Leap", "conv1", 25, 0)]
    for bad in (["--warps", "conv9"], ["--methods", "MAML"],
                ["--tasks", "0"], ["--ablation-tasks", "40"],
                ["--ablation-meta-steps", "0"]):
        with pytest.raises(SystemExit):
            script.parse_args(bad)
    net = script.warped_convnet(0, stacked=2, batch_norm=True)
    plain = omniglot.leap_convnet(seed=0)
    warps = [layer for layer in net.layers if isinstance(layer, L.ConvWarp)]
    assert [w.name for w in warps] == [f"warp_{i}" for i in range(1, 5)]
    assert all(isinstance(net.layers[net.layers.index(w) - 1],
                          keras.layers.MaxPooling2D) for w in warps)
    x = np.random.default_rng(0).uniform(size=(2, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(script.warped_convnet(0)(x).numpy(),
                               plain(x).numpy(), atol=1e-4)


@pytest.mark.slow
def test_warpgrad_experiment_tiny_preset_end_to_end(tmp_path):
    """``--budget tiny`` writes every output (a few minutes on 2 cores)."""
    import warpgrad_omniglot as script

    script.main(["--budget", "tiny", "--out", str(tmp_path)])
    for name in ("runs.csv", "curves.csv", "results.md",
                 "warpgrad_omniglot.png"):
        assert (tmp_path / name).stat().st_size > 0
    rows = (tmp_path / "runs.csv").read_text().splitlines()
    assert len(rows) == 6 and rows[1].startswith("T2,Leap,,1,0,")
    text = (tmp_path / "results.md").read_text()
    assert "| 1 | " in text and "| 2conv3-bn-res |" in text
