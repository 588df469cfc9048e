"""SavedModel export: plain-TF round trips, signatures, metadata, load()."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from conftest import as_dataset, assert_export_adapts_like_meta, mlp, task_batch
from tfmeta import export as tfexport

METHODS = {
    "leap": (tfmeta.Leap, {"inner_optimizer": keras.optimizers.SGD(0.1)}),
    "reptile": (tfmeta.Reptile, {"inner_optimizer": keras.optimizers.SGD(0.1)}),
    "maml": (tfmeta.MAML, {"inner_optimizer": keras.optimizers.Adam(0.05)}),
    "fomaml": (tfmeta.FOMAML,
               {"inner_optimizer": keras.optimizers.SGD(0.1, momentum=0.5)}),
}
TRAINED = ("leap", "fomaml")  # one meta-step before export; the rest as built


def make(name, learner=None, loss="mse", **extra):
    cls, kwargs = METHODS[name]
    kwargs = dict(kwargs, inner_steps=2, eval_steps=3, seed=1, name=name)
    kwargs.update(extra)
    meta = cls(learner or mlp([2, 4, 1]), **kwargs)
    meta.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss)
    return meta


def trained(name, **kwargs):
    meta = make(name, **kwargs)
    meta.fit(as_dataset(task_batch()), epochs=1, steps_per_epoch=1, verbose=0)
    return meta


TASK = task_batch(num_tasks=1, support=6, query=5, seed=3)
SX, SY, QX = TASK["support_x"][0], TASK["support_y"][0], TASK["query_x"][0]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """One exported meta-learner per method, with in-memory outputs
    saved next to it as .npy files for the plain-TF subprocess."""
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for name in METHODS:
        meta = trained(name) if name in TRAINED else make(name)
        path = meta.export(str(root / name))
        np.save(root / f"{name}_serve.npy", meta.predict(QX, verbose=0))
        adapted = meta.adapt(SX, SY)
        np.save(root / f"{name}_adapted.npy", adapted.predict(QX, verbose=0))
        np.save(root / f"{name}_adapted1.npy",
                meta.adapt(SX, SY, steps=1).predict(QX, verbose=0))
        out[name] = (meta, path, adapted)
    for key, value in (("sx", SX), ("sy", SY), ("qx", QX)):
        np.save(root / f"{key}.npy", value)
    return root, out


PLAIN_TF = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    root, names = sys.argv[1], sys.argv[2:]
    arr = lambda n: np.load(f"{root}/{n}.npy")
    sx, sy, qx = arr("sx"), arr("sy"), arr("qx")
    for name in names:
        m = tf.saved_model.load(f"{root}/{name}")
        checks = {
            "serve": (m.signatures["serving_default"](x=qx)["predictions"],
                      arr(f"{name}_serve")),
            "adapt_and_predict": (m.signatures["adapt_and_predict"](
                support_x=sx, support_y=sy, query_x=qx)["predictions"],
                arr(f"{name}_adapted")),
            "call_default_steps": (m.adapt_and_predict(sx, sy, qx)["predictions"],
                                   arr(f"{name}_adapted")),
            "steps_1": (m.signatures["adapt_and_predict_steps"](
                support_x=sx, support_y=sy, query_x=qx,
                steps=tf.constant(1))["predictions"], arr(f"{name}_adapted1")),
        }
        for check, (got, want) in checks.items():
            err = float(np.max(np.abs(got.numpy() - want)))
            assert err < 1e-5, (name, check, err)
        print("OK", name)
    assert "tfmeta" not in sys.modules, "tfmeta was imported"
    print("NO_TFMETA")
""")


def test_plain_tensorflow_process_reproduces_every_method(exports):
    root, out = exports
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH="")
    result = subprocess.run(
        [sys.executable, "-c", PLAIN_TF, str(root), *out], env=env,
        cwd=str(root), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in out:
        assert f"OK {name}" in result.stdout
    assert "NO_TFMETA" in result.stdout


@pytest.mark.parametrize("name", ["leap", "maml"])
def test_adapt_signature_returns_the_adapted_weights(exports, name):
    _, out = exports
    meta, path, adapted = out[name]
    loaded = tf.saved_model.load(path)
    weights = loaded.signatures["adapt"](support_x=SX, support_y=SY)
    names = tfexport.adapted_weight_names(meta.learner)
    assert sorted(weights) == sorted(names)
    for key, var in zip(names, adapted.trainable_variables):
        np.testing.assert_allclose(weights[key].numpy(), var.numpy(), atol=1e-6)
    # steps as an optional argument of the loaded function
    two = loaded.adapt(SX, SY, tf.constant(2))
    three = loaded.adapt(SX, SY)
    assert not np.allclose(two[names[0]].numpy(), three[names[0]].numpy())


def test_batch_norm_statistics_are_exported_and_adapted(tmp_path):
    meta = make("reptile", learner=mlp([2, 4, 1], batch_norm=True))
    path = meta.export(str(tmp_path / "bn"))
    adapted = meta.adapt(SX, SY)
    loaded = tf.saved_model.load(path)
    weights = loaded.signatures["adapt"](support_x=SX, support_y=SY)
    names = tfexport.adapted_weight_names(meta.learner)
    assert len(meta.learner.non_trainable_variables) == 2
    assert any("moving_mean" in n for n in names)
    for key, var in zip(names, adapted.trainable_variables
                        + adapted.non_trainable_variables):
        np.testing.assert_allclose(weights[key].numpy(), var.numpy(), atol=1e-5)
    got = loaded.adapt_and_predict(SX, SY, QX)["predictions"].numpy()
    np.testing.assert_allclose(got, adapted.predict(QX, verbose=0), atol=1e-5)


def test_learner_with_random_number_generator_state_reloads(tmp_path):
    """A Dropout layer's SeedGenerator state is not saved by Keras: the
    fingerprint leaves it out, so ``tfmeta.load`` accepts the export."""
    keras.utils.set_random_seed(0)
    learner = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4),
                                keras.layers.Dropout(0.1),
                                keras.layers.Dense(1)])
    meta = make("reptile", learner=learner)
    path = meta.export(str(tmp_path / "dropout"))
    again = tfmeta.load(path)
    for a, b in zip(again.learner.trainable_variables,
                    learner.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_sparse_labels_get_an_int_target_spec(tmp_path):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    meta = make("leap", learner=mlp([2, 4, 3]), loss=loss)
    path = meta.export(str(tmp_path / "cls"))
    info = tfexport.read_metadata(path)
    assert info["target_spec"] == {"shape": [None], "dtype": "int32"}
    labels = np.array([0, 2, 1, 1, 0, 2], "int32")
    loaded = tf.saved_model.load(path)
    got = loaded.signatures["adapt_and_predict"](
        support_x=SX, support_y=labels, query_x=QX)["predictions"].numpy()
    want = meta.adapt(SX, labels).predict(QX, verbose=0)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_target_spec_override(tmp_path):
    meta = make("reptile")
    spec = tf.TensorSpec([None], tf.float32)
    path = meta.export(str(tmp_path / "t"), target_spec=spec)
    loaded = tf.saved_model.load(path)
    got = loaded.signatures["adapt_and_predict"](
        support_x=SX, support_y=SY[:, 0], query_x=QX)["predictions"]
    assert got.shape == (5, 1)
    with pytest.raises(TypeError, match="target_spec must be a tf.TensorSpec"):
        meta.export(str(tmp_path / "u"), target_spec=(None, 1))


def test_signatures_refuse_wrong_shapes_and_dtypes(exports):
    _, out = exports
    loaded = tf.saved_model.load(out["leap"][1])
    SX, SY, QX = (tf.constant(a) for a in (TASK["support_x"][0],  # noqa: N806
                                            TASK["support_y"][0],
                                            TASK["query_x"][0]))
    serve = loaded.signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=(
            r"Shape of tensor x \[3,5\] is not compatible with expected "
            r"shape \[\?,2\]")):
        serve(x=tf.zeros([3, 5]))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="expected to be a float tensor but is a double"):
        serve(x=tf.zeros([3, 2], tf.float64))
    with pytest.raises(TypeError, match=r"Can not cast TensorSpec\(shape=\(3, 5\)"):
        loaded.serve(tf.zeros([3, 5]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=(
            r"Shape of tensor support_y \[6,3\] is not compatible with "
            r"expected shape \[\?,1\]")):
        loaded.signatures["adapt_and_predict"](
            support_x=SX, support_y=tf.zeros([6, 3]), query_x=QX)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"Shape of tensor query_x \[5,7\]"):
        loaded.signatures["adapt_and_predict"](
            support_x=SX, support_y=SY, query_x=tf.zeros([5, 7]))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="differ in their number of examples"):
        loaded.signatures["adapt_and_predict"](
            support_x=SX, support_y=SY[:4], query_x=QX)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="steps must be a positive integer"):
        loaded.signatures["adapt_steps"](support_x=SX, support_y=SY,
                                         steps=tf.constant(0))


def test_dynamic_batch_sizes(exports):
    _, out = exports
    meta, path, _ = out["leap"]
    loaded = tf.saved_model.load(path)
    for n in (1, 7):
        x = np.linspace(-1, 1, 2 * n, dtype="float32").reshape(n, 2)
        np.testing.assert_allclose(loaded.serve(x)["predictions"].numpy(),
                                   meta.predict(x, verbose=0), atol=1e-5)


def test_metadata_records_method_hyper_parameters_and_fingerprint(exports):
    _, out = exports
    meta, path, _ = out["leap"]
    info = tfexport.read_metadata(path)
    assert info["method"] == "Leap"
    hyper = info["hyper_parameters"]
    assert (hyper["inner_steps"], hyper["eval_steps"]) == (2, 3)
    assert hyper["metric"] == "length" and hyper["stabilizer"] is True
    assert hyper["inner_optimizer"]["class_name"] == "SGD"
    assert info["input_spec"] == {"shape": [None, 2], "dtype": "float32"}
    assert info["versions"]["tensorflow"] == tf.__version__
    assert info["versions"]["tfmeta"] == tfmeta.__version__
    assert info["weights_sha256"] == tfexport.weights_fingerprint(
        meta.learner.variables)
    loaded = tf.saved_model.load(path)
    assert json.loads(loaded.metadata()["metadata"].numpy()) == info
    # Each weight is stored once (the Keras learner itself is not tracked).
    stored = tf.train.list_variables(os.path.join(path, "variables",
                                                  "variables"))
    shapes = sorted(tuple(s) for n, s in stored if n.startswith("params/"))
    assert len(stored) == len(meta.learner.variables) + 2  # + metadata, graph
    assert shapes == sorted(tuple(v.shape) for v in meta.learner.variables)


def test_default_path_and_no_overwrite_without_consent(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    meta = make("reptile")
    path = meta.export()
    assert path == str(tmp_path / "saved_models" / "reptile")
    listing = sorted(os.listdir(path))
    pb = (tmp_path / "saved_models" / "reptile" / "saved_model.pb").read_bytes()
    meta.fit(as_dataset(task_batch()), epochs=1, steps_per_epoch=1, verbose=0)
    with pytest.raises(FileExistsError, match=r"reptile.*overwrite=True"):
        meta.export()
    assert sorted(os.listdir(path)) == listing
    assert (tmp_path / "saved_models" / "reptile" /
            "saved_model.pb").read_bytes() == pb
    old = tfexport.read_metadata(path)["weights_sha256"]

    # A failing overwrite loses nothing and leaves no temporary directories.
    def broken_save(*args, **kwargs):
        raise OSError("disk full")
    with monkeypatch.context() as patch:
        patch.setattr(meta.learner, "save", broken_save)
        with pytest.raises(OSError, match="disk full"):
            meta.export(overwrite=True)
    assert tfexport.read_metadata(path)["weights_sha256"] == old
    assert os.listdir(tmp_path / "saved_models") == ["reptile"]

    meta.export(overwrite=True)
    new = tfexport.read_metadata(path)["weights_sha256"]
    assert new != old
    assert new == tfexport.weights_fingerprint(meta.learner.variables)
    assert os.listdir(tmp_path / "saved_models") == ["reptile"]


def test_finetune_exports_and_reloads(tmp_path):
    # Scratch adapts exactly as FineTune does (no method-specific inner loop).
    meta = tfmeta.FineTune(mlp([2, 4, 1]), eval_steps=2, name="ft",
                           inner_optimizer=keras.optimizers.SGD(0.1))
    meta.compile(optimizer="sgd", loss="mse")
    path = meta.export(str(tmp_path / "ft"))
    loaded = tf.saved_model.load(path)
    np.testing.assert_allclose(
        loaded.adapt_and_predict(SX, SY, QX)["predictions"].numpy(),
        meta.adapt(SX, SY).predict(QX, verbose=0), atol=1e-5)
    rebuilt = tfmeta.load(path)
    assert isinstance(rebuilt, tfmeta.FineTune)
    assert rebuilt.get_config()["num_heads"] is None


def test_export_needs_a_compiled_meta_learner(tmp_path):
    meta = tfmeta.Reptile(mlp([2, 4, 1]))
    with pytest.raises(RuntimeError, match="not compiled"):
        meta.export(str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["leap", "fomaml"])
def test_load_rebuilds_and_continues_training(exports, name):
    _, out = exports
    meta, path, _ = out[name]
    loaded = tfmeta.load(path)
    assert type(loaded) is type(meta)
    drop = lambda c: {k: v for k, v in c.items() if k != "learner"}  # noqa: E731
    assert drop(loaded.get_config()) == drop(meta.get_config())
    assert [type(layer) for layer in loaded.learner.layers] == [
        type(layer) for layer in meta.learner.layers]
    for a, b in zip(meta.learner.variables, loaded.learner.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # One more meta-step gives the same weights in both (same seed state,
    # stateless outer SGD).
    batch = task_batch(seed=5)
    original = make(name)
    original.set_weights(meta.get_weights())  # keep the fixture's model intact
    original.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
    loaded.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
    for a, b in zip(original.learner.variables, loaded.learner.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    assert not np.allclose(loaded.learner.variables[0].numpy(),
                               meta.learner.variables[0].numpy())


def test_corrupted_exports_give_clear_errors(tmp_path):
    meta = make("leap")
    path = meta.export(str(tmp_path / "good"))
    fresh = lambda n: shutil.copytree(path, str(tmp_path / n))  # noqa: E731

    with pytest.raises(tfmeta.ExportError, match="no export at"):
        tfmeta.load(str(tmp_path / "nothing"))
    p = fresh("no_pb")
    os.remove(os.path.join(p, "saved_model.pb"))
    with pytest.raises(tfmeta.ExportError, match="saved_model.pb is missing"):
        tfmeta.load(p)
    p = fresh("no_learner")
    os.remove(os.path.join(p, "assets", "learner.keras"))
    with pytest.raises(tfmeta.ExportError, match="assets/learner.keras is missing"):
        tfmeta.load(p)
    p = fresh("no_json")
    os.remove(os.path.join(p, "assets", "tfmeta.json"))
    with pytest.raises(tfmeta.ExportError,
                       match=r"not a tfmeta export: .*tfmeta.json is missing"):
        tfmeta.load(p)
    p = fresh("bad_json")
    with open(os.path.join(p, "assets", "tfmeta.json"), "w") as f:
        f.write('{"method": "Leap", ')
    with pytest.raises(tfmeta.ExportError, match="tfmeta.json is corrupt"):
        tfmeta.load(p)
    p = fresh("truncated_weights")
    weights = os.path.join(p, "assets", "meta.weights.h5")
    with open(weights, "r+b") as f:
        f.truncate(100)
    with pytest.raises(tfmeta.ExportError, match="meta.weights.h5.*cannot be loaded"):
        tfmeta.load(p)
    p = fresh("other_weights")
    other = make("leap", learner=mlp([2, 4, 1], seed=7))
    other.save_weights(os.path.join(p, "assets", "meta.weights.h5"))
    with pytest.raises(tfmeta.ExportError, match="SHA-256 fingerprint"):
        tfmeta.load(p)
    assert isinstance(tfmeta.load(path), tfmeta.Leap)


def test_minibatch_inner_loops_use_the_documented_fixed_seed(tmp_path):
    meta = make("reptile", inner_batch_size=3)
    loaded = tf.saved_model.load(meta.export(str(tmp_path / "mb")))
    got = loaded.adapt(SX, SY)
    params, nontrainable = meta.current_state()
    task = {"support_x": tf.constant(SX), "support_y": tf.constant(SY)}
    want = meta.adapt_task(params, nontrainable, task,
                           tf.constant(tfexport.ADAPT_SEED, tf.int64),
                           steps=meta.eval_steps)
    names = tfexport.adapted_weight_names(meta.learner)
    for key, value in zip(names, want.params):
        np.testing.assert_allclose(got[key].numpy(), value.numpy(), atol=1e-6)
    other = meta.adapt_task(params, nontrainable, task,
                            tf.constant([1, 2], tf.int64), steps=meta.eval_steps)
    assert not np.allclose(got[names[0]].numpy(), other.params[0].numpy())
    assert tfexport.read_metadata(str(tmp_path / "mb"))[
        "hyper_parameters"]["inner_batch_size"] == 3


def test_warpgrad_export_keeps_warps_fixed_and_matches_adapt(tmp_path):
    from tfmeta import layers as L
    from tfmeta.tasks import sine
    keras.utils.set_random_seed(0)
    learner = L.warped_sequential(
        (1,), [keras.layers.Dense(8, activation="tanh")],
        lambda i, layer: L.LinearWarp(), head=[keras.layers.Dense(1)])
    meta = tfmeta.WarpGrad(learner, objective="approximate",
                           inner_optimizer=keras.optimizers.SGD(0.05),
                           inner_steps=3, eval_steps=4)
    meta.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    task = sine.tasks(1, seed=3)
    sx, sy, qx = task["support_x"][0], task["support_y"][0], task["query_x"][0]
    # make the warp non-trivial so that a moving warp would show
    for v in tfmeta.warpgrad.partition(learner)[1]:
        v.assign(v.numpy() + 0.1)
    path = meta.export(str(tmp_path / "warp"))
    assert_export_adapts_like_meta(meta, path, sx, sy, qx)
    again = tfmeta.load(path)
    assert isinstance(again, tfmeta.WarpGrad)
    assert again.get_config()["objective"] == "approximate"


def test_overwrite_replaces_only_a_previous_export(tmp_path, monkeypatch):
    """overwrite=True never deletes what tfmeta did not write: a directory
    without assets/tfmeta.json, or an export holding other files, is refused
    with nothing touched (also the current directory, ``path='.'``)."""
    meta = make("reptile")
    folder = tmp_path / "mine"
    (folder / "notes").mkdir(parents=True)
    (folder / "thesis.tex").write_text("keep me")
    (folder / "notes" / "a.txt").write_text("and me")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    with pytest.raises(FileExistsError, match=r"mine.*is not a tfmeta export"):
        meta.export(str(folder), overwrite=True)
    monkeypatch.chdir(folder)
    with pytest.raises(FileExistsError, match="is not a tfmeta export"):
        meta.export(".", overwrite=True)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    assert (folder / "thesis.tex").read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["mine"]  # no temporary left

    path = meta.export(str(tmp_path / "export"))
    (tmp_path / "export" / "README.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"not part of a tfmeta export "
                                              r"\(README.txt\)"):
        meta.export(path, overwrite=True)
    assert (tmp_path / "export" / "README.txt").read_text() == "mine"
    os.remove(tmp_path / "export" / "README.txt")
    assert meta.export(path, overwrite=True) == path  # a real export: replaced
