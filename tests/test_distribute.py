"""Meta-steps spread over tf.distribute replicas equal single-device ones."""

import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import pytest
import tensorflow as tf

import tfmeta
from distributed_cases import CASES

ROOT = pathlib.Path(__file__).resolve().parents[1]

# One subprocess (two logical CPUs) for all cases: each prints its verdict,
# so a failure names the case.
SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import tfmeta
    sys.path.insert(0, "tests")
    import distributed_cases as cases
    from conftest import mlp, task_batch

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    failed = 0
    for name in sys.argv[1].split(","):
        try:
            cases.compare(cases.run(name), cases.run(name, mirrored), name)
            print("match:", name)
        except Exception as err:  # reported per case
            failed += 1
            print("MISMATCH:", name, type(err).__name__, str(err)[:800])

    # grad_norm is the norm of the all-reduced meta-gradient: with an SGD
    # outer step of 1, Reptile's weights move by exactly that gradient.
    with mirrored.scope():
        meta = tfmeta.Reptile(mlp([2, 5, 1]), inner_steps=3,
                              inner_optimizer=keras.optimizers.SGD(0.1),
                              inner_batch_size=2, seed=3)
        meta.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    before = [v.numpy() for v in meta.learner.trainable_variables]
    history = meta.fit(tf.data.Dataset.from_tensors(
        task_batch(num_tasks=3, seed=5)), verbose=0)
    moved = np.sqrt(sum(np.sum((a - v.numpy()) ** 2) for a, v in zip(
        before, meta.learner.trainable_variables)))
    if not np.isclose(history.history["grad_norm"][0], moved, rtol=1e-5):
        failed += 1
        print("MISMATCH: grad_norm", history.history["grad_norm"], moved)

    try:  # fewer tasks than replicas: a message, not a slicing error
        with mirrored.scope():
            meta = tfmeta.Reptile(mlp([2, 5, 1]))
            meta.compile(optimizer="sgd", loss="mse")
        meta.fit(tf.data.Dataset.from_tensors(task_batch(num_tasks=1)),
                 verbose=0)
        failed += 1
        print("MISMATCH: 1 task on 2 replicas ran")
    except tf.errors.InvalidArgumentError as err:
        if "at least one task per replica (2)" not in str(err):
            failed += 1
            print("MISMATCH: 1 task on 2 replicas:", str(err)[:800])
    if not failed:
        print("distributed meta-steps match")
""")

#: The default suite's cases here (Leap, MAML and online WarpGrad run over
#: two worker processes in test_multiworker.py); every case: ``slow``.
QUICK = ("reptile_adam", "warpgrad_continual", "transfer_context")


def _run_cases(names):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(names)],
                          cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "distributed meta-steps match" in done.stdout, done.stdout[-3000:]


def test_mirrored_strategy_matches_single_device():
    """Weights (every variable of the meta-learner) and History (grad_norm
    included) after three meta-steps, to 1e-5, on two replicas: batched
    Reptile with Adam on 3 tasks (2 + 1) with support minibatches and
    continual WarpGrad (its warp step every second meta-step, Adam);
    MetaTransfer with a second-order context encoder of two steps on 3
    tasks (Adam); grad_norm is the norm of the all-reduced meta-gradient (Reptile's
    weights move by it under SGD(1)); a meta-batch with fewer tasks than
    replicas fails with a message."""
    _run_cases(QUICK)


@pytest.mark.slow
def test_every_method_under_mirrored_strategy_matches_single_device():
    """Every case of ``distributed_cases.CASES`` (~2-4 min)."""
    _run_cases(sorted(CASES))


def test_offline_warpgrad_and_rl_leap_refuse_a_strategy_at_compile():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    keras.utils.set_random_seed(0)
    learner = tfmeta.layers.warped_sequential(
        (2,), [keras.layers.Dense(3, activation="tanh")],
        lambda i, layer: tfmeta.layers.ResidualMLPWarp(2),
        head=[keras.layers.Dense(1)])
    with strategy.scope():
        meta = tfmeta.WarpGrad(learner, meta_training="offline")
        with pytest.raises(ValueError, match=(
                r"WarpGrad cannot run under MirroredStrategy: "
                r"meta_training='offline' \(Algorithm 2\)")):
            meta.compile(optimizer="sgd", loss="mse")
        online = tfmeta.WarpGrad(learner, meta_training="online")
        online.compile(optimizer="sgd", loss="mse")  # no error
    from tfmeta.rl.leap import RLLeap
    encoder = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with strategy.scope():
        leap = RLLeap(encoder, [lambda seed: None], updates=1)
        with pytest.raises(ValueError, match="RLLeap cannot run under "
                                             "MirroredStrategy"):
            leap.compile(keras.optimizers.SGD(0.1))
