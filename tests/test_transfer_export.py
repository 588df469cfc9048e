"""Meta-transfer from the command line and as a SavedModel (issue 15):
``tfmeta train transfer``, resume after SIGKILL, ``evaluate``, ``export``
and a ``transfer`` signature that serves without tfmeta."""

import json
import os
import pathlib
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

import tfmeta
from tfmeta import cli
from tfmeta import config as schema
from tfmeta.errors import UsageError
from tfmeta.tasks import cos_sin

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN = ["train", "transfer", "--encoder", "linear", "--tasks", "cos-sin",
         "--steps", "6", "--checkpoint-every", "3", "--meta-batch", "3",
         "--test-tasks", "8", "--sigma", "0.5"]


def python(code_or_args, env=None):
    """A fresh Python process (no tfmeta unless the code imports it)."""
    args = (["-c", code_or_args] if isinstance(code_or_args, str)
            else code_or_args)
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2",
                    **(env or {}))
    return subprocess.run([sys.executable, *args], env=full_env,
                          capture_output=True, text=True, timeout=300)


def run_weights(run):
    config = cli.resolve_config(json.loads((run / "config.json").read_text()),
                                {})
    meta, _ = cli.build(config)
    cli._restore(meta, cli.RunDir(run))
    return meta, [v.numpy() for v in meta.weights]


def serve_in_fresh_process(path, tasks, tmp_path):
    """``transfer`` of the SavedModel at ``path`` in a process that imports
    TensorFlow only; returns the predictions and whether tfmeta was loaded."""
    data = tmp_path / "tasks.npz"
    np.savez(data, **{k: tasks[k] for k in ("support_x", "support_y",
                                            "query_x")})
    out = tmp_path / "served.npy"
    code = f"""
import sys, numpy as np, tensorflow as tf
m = tf.saved_model.load({str(path)!r}); z = np.load({str(data)!r})
pred = m.signatures['transfer'](**{{k: tf.constant(z[k], tf.float32)
                                  for k in z.files}})['predictions']
np.save({str(out)!r}, pred.numpy())
print('tfmeta' in sys.modules)
"""
    done = python(code)
    assert done.returncode == 0, done.stderr[-2000:]
    return np.load(out), done.stdout.strip() == "True"


def test_train_resume_evaluate_export_and_serve(tmp_path, capsys):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert cli.main(TRAIN + ["--out", str(reference)]) == 0
    capsys.readouterr()
    results = json.loads((reference / "results.json").read_text())
    assert results["encoder"] == "linear" and results["step"] == 6
    assert np.isfinite(results["test_query_mse_mean"])
    config = json.loads((reference / "config.json").read_text())
    assert (config["method"], config["encoder"], config["sigma"]) == (
        "transfer", "linear", 0.5)

    # SIGKILL after meta-step 4 (checkpoint at 3), then the same command.
    done = python(["-m", "tfmeta", *TRAIN, "--out", str(killed)],
                  env={"TFMETA_TEST_KILL_AT_STEP": "4"})
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert json.loads((killed / "checkpoint.json").read_text())["step"] == 3
    assert cli.main(TRAIN + ["--out", str(killed)]) == 0
    meta, weights = run_weights(killed)
    _, expected = run_weights(reference)
    for a, b in zip(weights, expected):
        np.testing.assert_array_equal(a, b)

    assert cli.main(["evaluate", str(killed)]) == 0
    evaluation = json.loads((killed / "evaluation.json").read_text())
    assert evaluation["test_query_mse_mean"] == pytest.approx(
        results["test_query_mse_mean"], rel=1e-6)

    export = tmp_path / "export"
    assert cli.main(["export", str(killed), "--path", str(export)]) == 0
    tasks = cos_sin.tasks(4, support_size=10, query_size=7, sigma=0.5, seed=3)
    expected = meta.transfer(tasks["support_x"], tasks["support_y"],
                             tasks["query_x"])
    served, tfmeta_loaded = serve_in_fresh_process(export, tasks, tmp_path)
    assert not tfmeta_loaded
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("encoder", [
    "context", pytest.param("deep_kernel", marks=pytest.mark.slow)])
def test_export_load_round_trip(tmp_path, encoder):
    if encoder == "deep_kernel":
        meta = tfmeta.MetaTransfer(encoder, support_dims=(1, 1),
                                   query_dims=(1, 1), seed=0)
    else:
        meta = tfmeta.MetaTransfer(encoder, query_learner=cos_sin.query_mlp(
            seed=0), k=2, support_dims=(1, 1), encoder_steps=2, seed=0)
    meta.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    meta.fit(cos_sin.dataset(3, seed=1), steps_per_epoch=2, epochs=1,
             verbose=0)
    tasks = cos_sin.tasks(3, support_size=10, query_size=5, seed=2)
    expected = meta.transfer(tasks["support_x"], tasks["support_y"],
                             tasks["query_x"])
    path = tfmeta.export.export(meta, str(tmp_path / "x"))
    loaded = tfmeta.load(path)
    assert type(loaded) is tfmeta.MetaTransfer
    assert loaded.encoder.name == meta.encoder.name
    np.testing.assert_allclose(
        loaded.transfer(tasks["support_x"], tasks["support_y"],
                        tasks["query_x"]), expected, rtol=1e-6, atol=1e-7)
    # loaded is compiled and trains on
    loaded.fit(cos_sin.dataset(3, seed=1), steps_per_epoch=1, epochs=1,
               verbose=0)
    metadata = tfmeta.export.read_metadata(path)
    assert metadata["kind"] == "transfer"
    assert metadata["signature_inputs"]["support_x"]["shape"] == [None, None, 1]

    # a second export refuses to overwrite unless asked, then replaces
    with pytest.raises(FileExistsError, match="overwrite=True"):
        tfmeta.export.export(meta, path)
    tfmeta.export.export(loaded, path, overwrite=True)


def test_serving_refuses_mismatched_inputs_with_a_message(tmp_path):
    import tensorflow as tf
    meta = tfmeta.MetaTransfer("max", query_learner=cos_sin.query_mlp(seed=0),
                               k=2, support_dims=(1, 1), seed=0)
    meta.compile(optimizer="adam", loss="mse")
    served = tf.saved_model.load(tfmeta.export.export(meta, str(tmp_path / "x")))
    fn = served.signatures["transfer"]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="differ in their number of tasks or points"):
        fn(support_x=tf.zeros([2, 5, 1]), support_y=tf.zeros([2, 4, 1]),
           query_x=tf.zeros([2, 3, 1]))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="support and query differ in their number of tasks"):
        fn(support_x=tf.zeros([2, 5, 1]), support_y=tf.zeros([2, 5, 1]),
           query_x=tf.zeros([3, 3, 1]))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"support_x.*not compatible with expected shape"):
        fn(support_x=tf.zeros([2, 5, 2]), support_y=tf.zeros([2, 5, 1]),
           query_x=tf.zeros([2, 3, 1]))


def test_a_model_built_from_layers_serves_but_load_says_how_to_rebuild(tmp_path):
    from tfmeta.transfer import make_encoder
    encoder = make_encoder("mean", k=2, seed=0)
    encoder.build((1, 1))
    meta = tfmeta.MetaTransfer(encoder, query_learner=cos_sin.query_mlp(seed=0))
    meta.compile(optimizer="adam", loss="mse")
    path = tfmeta.export.export(meta, str(tmp_path / "x"))
    with pytest.raises(tfmeta.ExportError, match="built from encoder/decoder "
                                                 "layers"):
        tfmeta.load(path)


# ------------------------------------------------------- the CLI's checks
@pytest.mark.parametrize("options, message", [
    ({"method": "transfer", "tasks": "cos-sin"}, "transfer needs --encoder"),
    ({"method": "transfer", "tasks": "sine", "encoder": "linear"},
     "transfer needs a meta-transfer task family"),
    ({"method": "leap", "tasks": "cos-sin"}, "train them with transfer, "
                                              "not leap"),
    ({"method": "leap", "encoder": "linear"}, "apply to the transfer method "
                                              "only"),
    ({"method": "transfer", "tasks": "cos-sin", "encoder": "linear",
      "inner_steps": "5"}, "inner_steps do(es) not apply to transfer on cos-sin"),
    ({"method": "transfer", "tasks": "cos-sin", "encoder": "deep_kernel",
      "k": "2"}, "deep_kernel encoder has no latent code"),
    ({"method": "leap", "sigma": "1"}, "sigma apply to cos-sin or pendulum "
                                      "tasks only"),
    ({"method": "transfer", "tasks": "cos-sin", "encoder": "lstm"},
     "unknown encoder 'lstm'"),
    ({"method": "transfer", "tasks": "cos-sin", "encoder": "linear",
      "sigma": "-1"}, "sigma must be a number >= 0"),
    ({"method": "transfer", "tasks": "cos-sin", "encoder": "linear",
      "method_options": {"parallel_tasks": 2}}, "unknown option "
                                                "'parallel_tasks'"),
])
def test_bad_transfer_options_name_the_problem(options, message):
    with pytest.raises(UsageError) as err:
        schema.resolve({}, options)
    assert message in str(err.value)


def test_schema_knows_every_encoder_and_the_defaults_resolve():
    assert schema.ENCODER_NAMES == tfmeta.transfer.ENCODERS
    config = schema.resolve({}, {"method": "transfer", "tasks": "cos-sin",
                                 "encoder": "linear",
                                 "method_options": {"first_order": "true"}})
    assert (config["meta_optimizer"], config["meta_lr"]) == ("adam", 0.001)
    assert config["method_options"] == {"first_order": True}
    # a stored config (every option at its default) resolves again
    assert schema.resolve(config, {}) == config
    leap = schema.resolve({}, {"method": "leap"})
    assert schema.resolve(leap, {}) == leap


def test_strategies_are_refused_for_rl_with_a_message():
    config = schema.resolve({}, {"method": "transfer", "tasks": "cos-sin",
                                 "encoder": "linear", "strategy": "mirrored"})
    assert config["strategy"] == "mirrored"
    with pytest.raises(UsageError, match="strategy multiworker does not "
                                         "apply to leap on atari"):
        schema.resolve({}, {"method": "leap", "tasks": "atari",
                            "strategy": "multiworker"})
