"""N-way K-shot episodes (tfmeta.tasks.fewshot) on small synthetic data,
the evaluation modes, and one quick check of the Omniglot protocol."""

import numpy as np
import pytest
import tensorflow as tf

import keras

import tfmeta
from tfmeta.tasks import fewshot
from conftest import requires_omniglot

COUNTS = [5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 6, 7]      # examples per class


def coded_pool(counts=COUNTS):
    """Examples whose pixels spell their identity: channel 0 = class id,
    channel 1 = example number within the class (floats pass unchanged)."""
    x, y = [], []
    for c, n in enumerate(counts):
        for e in range(n):
            x.append(np.stack([np.full((3, 3), c), np.full((3, 3), e)], -1))
            y.append(c)
    x, y = np.array(x, np.float32), np.array(y)
    perm = np.random.default_rng(1).permutation(len(y))   # storage order
    return fewshot.from_arrays(x[perm], y[perm])


def ids(images):
    """(class, example) of each coded image ``[n, 3, 3, 2]``."""
    return [(int(i[0, 0, 0]), int(i[0, 0, 1])) for i in images]


def first(ds, n=1):
    return [{k: v.numpy() for k, v in e.items()} for e in ds.take(n)]


def test_episode_structure_and_class_split():
    pool = coded_pool()
    splits = fewshot.split_classes(pool.num_classes, test=4, validation=2,
                                   seed=3)
    assert sorted(np.concatenate(list(splits.values()))) == list(range(12))
    train = set(splits["train"].tolist())
    ways, shots, queries = 5, 2, 3
    (batch,) = first(fewshot.episodes(pool, ways, shots, queries,
                                      meta_batch_size=16,
                                      classes=splits["train"], seed=0))
    assert batch["support_x"].shape == (16, ways * shots, 3, 3, 2)
    assert batch["query_x"].shape == (16, ways * queries, 3, 3, 2)
    assert batch["support_y"].dtype == np.int32
    for b in range(16):
        sup, qry = ids(batch["support_x"][b]), ids(batch["query_x"][b])
        sy, qy = batch["support_y"][b], batch["query_y"][b]
        assert np.bincount(sy).tolist() == [shots] * ways     # K of each
        assert np.bincount(qy).tolist() == [queries] * ways   # Q of each
        label_class = {}
        for (c, _), label in zip(sup + qry, np.concatenate([sy, qy])):
            assert label_class.setdefault(label, c) == c      # one class/label
        assert len(set(label_class.values())) == ways         # N distinct
        assert set(label_class.values()) <= train             # no test class
        assert len(set(sup)) == len(sup) and len(set(qry)) == len(qry)
        assert not set(sup) & set(qry)                        # disjoint splits


def test_seeded_and_deterministic():
    pool = coded_pool()
    a = first(fewshot.episodes(pool, 4, 1, 2, meta_batch_size=3, seed=5), 3)
    b = first(fewshot.episodes(pool, 4, 1, 2, meta_batch_size=3, seed=5), 3)
    c = first(fewshot.episodes(pool, 4, 1, 2, meta_batch_size=3, seed=6), 3)
    d = first(fewshot.episodes(pool, 4, 1, 2, meta_batch_size=3, seed=5,
                               start=2))
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    np.testing.assert_array_equal(d[0]["support_x"], a[2]["support_x"])
    assert any(not np.array_equal(x["support_x"], y["support_x"])
               for x, y in zip(a, c))
    # an episode stream tfmeta builds: tf.data's autotuning off
    # (tfmeta.tasks.pipeline.without_autotuning)
    ds = fewshot.episodes(pool, 4, 1, 2, meta_batch_size=3, seed=5)
    assert ds.options().autotune.enabled is False


def test_label_permutation():
    pool = coded_pool()

    def label_orders(permute):
        (batch,) = first(fewshot.episodes(pool, 4, 1, 1, meta_batch_size=20,
                                          permute_labels=permute, seed=0))
        return [[c for c, _ in ids(x)] for x in batch["support_x"]]

    # class order = label order without permutation, random with it
    assert all(o == sorted(o) for o in label_orders(False))
    assert sum(o != sorted(o) for o in label_orders(True)) > 10


def test_rotated_classes_are_new_classes():
    rng = np.random.default_rng(0)
    x = rng.random((2 * 4, 5, 5, 1)).astype(np.float32)   # asymmetric images
    y = np.repeat([0, 1], 4)
    pool = fewshot.from_arrays(x, y)
    (batch,) = first(fewshot.episodes(pool, 8, 2, 2, meta_batch_size=3,
                                      rotations=(0, 90, 180, 270), seed=0))
    originals = {c: pool.class_examples(c) for c in (0, 1)}
    for b in range(3):
        found = set()
        for label in range(8):
            imgs = batch["support_x"][b][batch["support_y"][b] == label]
            match = {(c, k) for c in (0, 1) for k in range(4)
                     if all(any(np.array_equal(np.rot90(o, k), i)
                                for o in originals[c]) for i in imgs)}
            assert len(match) == 1      # one class, one rotation per label
            found |= match
        assert len(found) == 8          # all 2 x 4 rotated classes, distinct
    # a rotated class is not its original: no rotated image equals one
    for c in (0, 1):
        for k in (1, 2, 3):
            assert not any(np.array_equal(np.rot90(o, k), p)
                           for o in originals[c] for p in originals[c])
    with pytest.raises(fewshot.FewShotDataError, match="9 classes.*only 8"):
        fewshot.episodes(pool, 9, 1, 1, rotations=(0, 90, 180, 270))


def test_augmentation_hook():
    pool = coded_pool()

    def shift(images, seed):
        return images + tf.random.stateless_uniform([], seed, 100.0, 200.0)

    plain = first(fewshot.episodes(pool, 3, 2, 2, seed=1))[0]
    aug = first(fewshot.episodes(pool, 3, 2, 2, seed=1, augment=shift))[0]
    again = first(fewshot.episodes(pool, 3, 2, 2, seed=1, augment=shift))[0]
    support_only = first(fewshot.episodes(pool, 3, 2, 2, seed=1, augment=shift,
                                          augment_query=False))[0]
    delta = aug["support_x"] - plain["support_x"]
    assert 100 <= delta.min() and np.ptp(delta) < 1e-3
    assert (aug["query_x"] - plain["query_x"]).min() >= 100
    np.testing.assert_array_equal(aug["support_x"], again["support_x"])
    np.testing.assert_array_equal(support_only["query_x"], plain["query_x"])
    np.testing.assert_array_equal(support_only["support_x"], aug["support_x"])


def image_data(counts=(4, 5, 6, 4)):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (sum(counts), 6, 6, 1), dtype=np.uint8)
    return x, np.repeat(np.arange(len(counts)), counts)


def assert_same_episodes(pool_a, pool_b):
    kw = dict(ways=3, shots=2, query_shots=2, meta_batch_size=4, seed=9)
    a = first(fewshot.episodes(pool_a, **kw), 2)
    b = first(fewshot.episodes(pool_b, **kw), 2)
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_image_folder_and_dataset_sources_match_arrays(tmp_path):
    from PIL import Image

    x, y = image_data()
    names = ["alpha", "beta", "delta", "gamma"]     # sorted = label order
    for i, (img, label) in enumerate(zip(x, y)):
        folder = tmp_path / names[label]
        folder.mkdir(exist_ok=True)
        Image.fromarray(img[..., 0]).save(folder / f"{(i * 7) % 23:03d}.png")
    folder_pool = fewshot.from_image_folder(tmp_path)
    assert folder_pool.class_names == names
    perm = np.random.default_rng(0).permutation(len(y))
    array_pool = fewshot.from_arrays(x[perm], y[perm], scale=1 / 255)
    dataset_pool = fewshot.from_dataset(
        tf.data.Dataset.from_tensor_slices((x, y)), scale=1 / 255)
    assert_same_episodes(array_pool, folder_pool)
    assert_same_episodes(array_pool, dataset_pool)
    (batch,) = first(fewshot.episodes(folder_pool, 3, 1, 1))
    assert batch["support_x"].dtype == np.float32
    assert 0.0 <= batch["support_x"].min() and batch["support_x"].max() <= 1.0


def test_tfds_source_matches_arrays(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    x, y = image_data()

    class TfmetaFewshotToy(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(6, 6, 1)),
                "label": tfds.features.ClassLabel(num_classes=4)})
            return tfds.core.DatasetInfo(builder=self, features=features)

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i, (img, label) in enumerate(zip(x, y)):
                yield i, {"image": img, "label": int(label)}

    name = "tfmeta_fewshot_toy"
    with pytest.raises(fewshot.FewShotDataError, match="not prepared"):
        fewshot.from_tfds(name, tmp_path)
    TfmetaFewshotToy(data_dir=str(tmp_path)).download_and_prepare()
    tfds_pool = fewshot.from_tfds(name, tmp_path)
    assert_same_episodes(fewshot.from_arrays(x, y, scale=1 / 255), tfds_pool)
    with pytest.raises(fewshot.FewShotDataError, match="no_such_set"):
        fewshot.from_tfds("no_such_set", tmp_path)


def test_bad_input_is_named(tmp_path):
    pool = coded_pool()
    with pytest.raises(fewshot.FewShotDataError, match="13 classes.*only 12"):
        fewshot.episodes(pool, 13, 1, 1)
    with pytest.raises(fewshot.FewShotDataError,
                       match=r"3 \+ 3 examples per class.*has 5"):
        fewshot.episodes(pool, 2, 3, 3)
    with pytest.raises(fewshot.FewShotDataError, match="labels must be integers"):
        fewshot.from_arrays(np.zeros((4, 2)), np.array([0.0, 1.0, 0.5, 1.0]))
    with pytest.raises(fewshot.FewShotDataError, match="labels must be integers"):
        fewshot.from_arrays(np.zeros((2, 2)), np.array(["a", "b"]))
    with pytest.raises(fewshot.FewShotDataError, match="no class sub-folders"):
        fewshot.from_image_folder(tmp_path)
    (tmp_path / "cat").mkdir()
    with pytest.raises(fewshot.FewShotDataError, match="cat holds no images"):
        fewshot.from_image_folder(tmp_path)
    with pytest.raises(ValueError, match="ways must be a positive integer"):
        fewshot.episodes(pool, 0, 1, 1)
    with pytest.raises(ValueError, match="unknown evaluation mode"):
        fewshot.query_predictions(keras.Sequential([keras.Input((2,)),
                                                    keras.layers.Dense(2)]),
                                  np.zeros((2, 2)), np.zeros((1, 2)),
                                  mode="semi")


# ---------------------------------------------------------------- evaluation
def small_net(batch_norm):
    layers = [keras.Input((4,)), keras.layers.Dense(8, activation="tanh")]
    if batch_norm:
        layers.append(tfmeta.layers.BatchNormalization())
    layers.append(keras.layers.Dense(3))
    keras.utils.set_random_seed(0)
    return keras.Sequential(layers)


def adapted_model(batch_norm, support_x, support_y):
    meta = tfmeta.Scratch(small_net(batch_norm),
                          inner_optimizer=keras.optimizers.SGD(0.1),
                          inner_steps=3, inner_batch_size=4, seed=0)
    meta.compile(loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    return meta, meta.adapt(support_x, support_y)


def test_evaluation_modes_differ_exactly_where_batch_norm_sees_the_query():
    rng = np.random.default_rng(0)
    sx = rng.normal(size=(6, 4)).astype(np.float32)
    sy = np.repeat(np.arange(3), 2).astype(np.int32)
    qx = rng.normal(size=(5, 4)).astype(np.float32)
    other = qx.copy()
    other[1:] += 3.0                                # change all but query 0

    _, plain = adapted_model(False, sx, sy)
    outs = [fewshot.query_predictions(plain, sx, qx, m).numpy()
            for m in fewshot.EVAL_MODES]
    for o in outs[1:]:                              # no BN: all modes agree
        np.testing.assert_allclose(o, outs[0], rtol=1e-5, atol=1e-6)

    _, model = adapted_model(True, sx, sy)
    moving = [v.numpy() for v in model.non_trainable_variables]
    pred = {m: fewshot.query_predictions(model, sx, qx, m).numpy()
            for m in fewshot.EVAL_MODES}
    # against independent Keras calls (on a copy: training mode would move
    # the statistics)
    def call(x, training):
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        return copy(x, training=training).numpy()

    np.testing.assert_allclose(pred["transductive"], call(qx, True),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pred["inference"], call(qx, False),
                               rtol=1e-5, atol=1e-6)
    for j in range(len(qx)):
        np.testing.assert_allclose(
            pred["non-transductive"][j],
            call(np.concatenate([sx, qx[j:j + 1]]), True)[-1],
            rtol=1e-5, atol=1e-6)
    assert not np.allclose(pred["transductive"], pred["non-transductive"],
                           atol=1e-3)
    # only the transductive mode lets the other query examples change the
    # prediction of query 0
    changed = {m: fewshot.query_predictions(model, sx, other, m).numpy()
               for m in fewshot.EVAL_MODES}
    np.testing.assert_allclose(changed["non-transductive"][0],
                               pred["non-transductive"][0], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(changed["inference"][0], pred["inference"][0],
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(changed["transductive"][0],
                           pred["transductive"][0], atol=1e-3)
    for v, m in zip(model.non_trainable_variables, moving):   # untouched
        np.testing.assert_array_equal(v.numpy(), m)


def test_evaluate_reports_per_episode_accuracy():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 4)) * 3
    x = np.concatenate([c + 0.1 * rng.normal(size=(6, 4)) for c in centres])
    pool = fewshot.from_arrays(x.astype(np.float32), np.repeat(np.arange(12), 6))
    tasks = fewshot.episodes(pool, 3, 2, 2, meta_batch_size=4, seed=0,
                             count=2)
    meta, _ = adapted_model(True, np.zeros((6, 4), np.float32),
                            np.zeros(6, np.int32))
    result = fewshot.evaluate(meta, tasks, modes=list(fewshot.EVAL_MODES),
                              steps=20)
    for m in fewshot.EVAL_MODES:
        acc = result[m]["accuracy"]
        assert acc.shape == (8,)
        assert set(np.round(acc * 6).tolist()) <= set(range(7))
        assert result[m]["mean"] == pytest.approx(acc.mean())
        assert result[m]["ci95"] == pytest.approx(
            1.96 * acc.std(ddof=1) / np.sqrt(8))
    # well-separated clusters: adaptation solves most episodes
    assert result["non-transductive"]["mean"] > 0.6


# ---------------------------------------------------------------- Omniglot
@requires_omniglot
def test_omniglot_fewshot_protocol():
    from tfmeta.tasks import omniglot_fewshot as of

    data = of.load()
    assert data.pool.num_classes == 1623
    assert data.pool.example_shape == (28, 28, 1)
    train, test = data.classes("train"), data.classes("test")
    assert len(train) == 1200 and len(test) == 423
    assert not set(train.tolist()) & set(test.tolist())
    (batch,) = first(of.dataset("train", 5, 1, 1, meta_batch_size=2,
                                data=data))
    assert batch["support_x"].shape == (2, 5, 28, 28, 1)
    assert 0.0 <= batch["support_x"].min() and batch["support_x"].max() == 1.0
    net = of.convnet(5)
    assert net.output_shape == (None, 5)
    assert [layer.strides for layer in net.layers
            if isinstance(layer, keras.layers.Conv2D)] == [(2, 2)] * 4
    assert net.layers[-1].kernel.shape == (2 * 2 * 64, 5)
    assert of.convnet(5, head="mean").layers[-1].kernel.shape == (64, 5)


def test_experiment_presets():
    import pathlib
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]
                           / "experiments"))
    import fewshot_omniglot as script

    def predicted(argv):
        args, preset, cells = script.parse_args(argv)
        return cells, preset, script.predict_seconds(
            cells, lambda m, s: script.steps_for(args, preset, m, s),
            preset["seeds"], preset["episodes"], args.reptile_table)

    cells, preset, seconds = predicted(["--budget", "small"])
    # small's Reptile cells share one meta-training, paid for once
    assert preset["reptile_table"] == "code"
    alone = sum(predicted(["--budget", "small", "--methods", m,
                           "--settings", s])[2]
                for m, s in (("Reptile", "5w1s"), ("Reptile", "5w5s"),
                             ("MAML", "5w1s")))
    assert seconds < alone - 1000
    # the small budget: these cells, >= 1000 test episodes, <= 1 h
    assert set(cells) == {("Reptile", "5w5s"), ("Reptile", "5w1s"),
                          ("MAML", "5w1s")}
    assert preset["episodes"] >= 1000 and seconds <= 3600
    args, paper, cells = script.parse_args(["--budget", "paper"])
    assert len(cells) == 20 and paper["seeds"] == 3
    assert script.steps_for(args, paper, "Reptile", "5w5s") == 100_000
    assert script.config("Reptile", "5w5s", None)["eval_steps"] == 100
    with pytest.raises(SystemExit):
        script.parse_args(["--methods", "Nope"])
    with pytest.raises(SystemExit):        # no small step count for 20w5s
        script.parse_args(["--budget", "small", "--settings", "20w5s"])
    # Table 5 exists for 5-way 1-shot only, with its 5 test iterations
    assert script.config("Reptile", "5w1s", None, 5)["eval_steps"] == 5
    one = [("Reptile", "5w1s")]
    steps = lambda m, s: 1000  # noqa: E731
    table3 = script.predict_seconds(one, steps, 1, 100)
    table5 = script.predict_seconds(one, steps, 1, 100, reptile_table=5)
    assert table5 > table3      # its meta-steps cost more, its tests less
    assert table5 == pytest.approx(
        2 * 1000 * script.SECONDS_PER_STEP[one[0]] + 100 * 5 / 86
        * script.SECONDS_PER_EPISODE[one[0]] + script.TRACE_SECONDS)
    with pytest.raises(SystemExit):
        script.parse_args(["--reptile-table", "5", "--methods", "Reptile",
                           "--settings", "5w5s"])
    with pytest.raises(SystemExit):
        script.parse_args(["--test-curve", "-1"])
    # the released code's README commands: every setting, 50 test iterations
    args, _, _ = script.parse_args(["--budget", "paper", "--reptile-table",
                                    "code", "--settings",
                                    "20w5s", "--methods", "Reptile"])
    assert args.reptile_table == "code"
    assert script.config("Reptile", "20w5s", None, "code")["inner_batch"] == 20
    assert script.config("Reptile", "5w1s", None, "code")["eval_steps"] == 50
    with pytest.raises(SystemExit):
        script.parse_args(["--reptile-table", "4"])
    # its 1-shot and 5-shot cells share one meta-training; Table 3's do not
    key = lambda s, t: script.training_key(  # noqa: E731
        "Reptile", script.config("Reptile", s, None, t))
    assert key("5w1s", "code") == key("5w5s", "code")
    assert key("20w1s", "code") == key("20w5s", "code")
    assert key("5w1s", "code") != key("20w1s", "code")
    assert key("5w1s", 3) != key("5w5s", 3)
