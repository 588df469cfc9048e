"""Fault tolerance: a run interrupted in the middle and restarted with
``keras.callbacks.BackupAndRestore`` ends with the weights of an
uninterrupted run of the same seed; in one process (an exception in the
middle of ``fit``) and, slow, a two-worker MultiWorkerMirroredStrategy job
whose worker is SIGKILLed."""

import os
import pickle
import signal
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import distributed_cases as cases
import tfmeta
from conftest import mlp, task_batch
from test_multiworker import ROOT, launcher


class Crash(Exception):
    pass


def test_backup_and_restore_resumes_an_interrupted_fit(tmp_path):
    """Batched Reptile with support minibatches and Adam, 3 epochs of 2
    meta-steps on two task batches: an exception at epoch 2, then a new
    process's fit (a new model) with BackupAndRestore restores epoch 1's
    weights, Adam's state and the minibatch seed generator, and ends where
    an uninterrupted run ends."""
    batches = [task_batch(num_tasks=3, seed=s) for s in (5, 6)]
    data = tf.data.Dataset.from_tensor_slices(
        {k: np.stack([b[k] for b in batches]) for k in batches[0]})

    def make():
        meta = tfmeta.Reptile(mlp([2, 5, 1]), inner_steps=3, seed=3,
                              inner_optimizer=keras.optimizers.SGD(0.1),
                              inner_batch_size=2)
        meta.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
        return meta

    full = make()
    expected = full.fit(data, epochs=3, verbose=0).history

    def crash(epoch, logs):
        if epoch == 1:
            raise Crash

    backup = str(tmp_path / "backup")
    with pytest.raises(Crash):
        make().fit(data, epochs=3, verbose=0, callbacks=[
            keras.callbacks.BackupAndRestore(backup),
            keras.callbacks.LambdaCallback(on_epoch_begin=crash)])
    resumed = make()
    history = resumed.fit(data, epochs=3, verbose=0, callbacks=[
        keras.callbacks.BackupAndRestore(backup)]).history
    assert len(history["loss"]) == 2  # epochs 2 and 3 only
    np.testing.assert_allclose(history["loss"], expected["loss"][1:],
                               rtol=1e-6)
    for a, b in zip(full.weights + full.optimizer.variables,
                    resumed.weights + resumed.optimizer.variables):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6,
                                   atol=1e-7, err_msg=a.path)


@pytest.mark.slow
def test_a_killed_worker_and_a_restarted_job_end_as_an_uninterrupted_run(
        tmp_path):
    """Two workers, Leap, 6 meta-steps with BackupAndRestore (a folder per
    worker); worker 1 is SIGKILLed after its backup of meta-step 2, the job
    (both workers) is restarted and ends with one device's weights (~1-2
    min)."""
    name, steps = "leap", 6
    command = [sys.executable, "tests/distributed_cases.py", "--strategy",
               "multiworker", "--cases", name, "--steps", str(steps),
               "--pause", "1", "--backup-dir",
               str(tmp_path / "backup{index}"), "--out",
               str(tmp_path / "worker{index}.pkl")]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    log = open(tmp_path / "first.log", "w")
    _, processes = launcher.start(command, workers=2, env=env, cwd=ROOT,
                                  stdout=log, stderr=log)
    metadata = tmp_path / "backup1" / "training_metadata.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if metadata.exists() and '"epoch": 2' in metadata.read_text():
            break
        assert all(p.poll() is None for p in processes), \
            (tmp_path / "first.log").read_text()[-3000:]
        time.sleep(0.05)
    else:
        raise AssertionError("no backup of meta-step 2 in time")
    processes[1].send_signal(signal.SIGKILL)
    codes = launcher.wait(processes, timeout=120)
    log.close()
    assert codes[1] == -signal.SIGKILL
    assert not (tmp_path / "worker0.pkl").exists()  # the job did not finish
    from test_multiworker import run_workers
    codes, logs = run_workers(tmp_path, command)
    assert codes == [0, 0], logs
    expected = cases.run(name, steps=steps)
    for index in range(2):
        with open(tmp_path / f"worker{index}.pkl", "rb") as f:
            result = pickle.load(f)[name]
        assert "error" not in result, result
        # the restarted job ran the last 4 meta-steps only
        assert len(result["history"]["loss"]) == steps - 2
        tail = dict(expected, history={
            k: v[2:] for k, v in expected["history"].items()})
        cases.compare(tail, result, f"worker {index}")
