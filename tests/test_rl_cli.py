"""Leap on Atari from the command line (issue 16): ``tfmeta train leap
--tasks atari``, its checkpoints, exact resume, TensorBoard per game, the
curves PNG and the checks of its options."""

import json
import os
import pathlib
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest

from tfmeta import cli
from tfmeta import config as schema
from tfmeta.errors import UsageError

pytest.importorskip("ale_py")
ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN = ["train", "leap", "--tasks", "atari", "--games", "AirRaid,UpNDown",
         "--meta-batch", "1", "--envs", "2", "--updates", "2", "--steps", "2",
         "--checkpoint-every", "1", "--eval-games", "Breakout",
         "--eval-updates", "1", "--max-episode-frames", "100"]


def checkpoint(run):
    """Every array of a run's latest checkpoint (encoder and optimizer)."""
    name = json.loads((run / "checkpoint.json").read_text())["weights"]
    arrays = {}
    with h5py.File(run / name) as f:
        f.visititems(lambda k, v: arrays.__setitem__(k, v[()])
                     if isinstance(v, h5py.Dataset) else None)
    return arrays


def test_train_writes_a_run_and_resumes_exactly(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(TRAIN + ["--out", str(run)]) == 0
    capsys.readouterr()
    final = checkpoint(run)
    assert len(final) >= 6        # 3 encoder layers' kernels and biases
    results = json.loads((run / "results.json").read_text())
    assert results["step"] == 2 and set(results["games"]) == {"Breakout"}
    assert (run / "loss.png").stat().st_size > 1000
    assert list((run / "tensorboard" / "games").glob("events.out.*"))
    header = (run / "log.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "mean_return", "path_length"} <= set(header)

    # Train meta-step 2 again from the checkpoint at 1 (what a restart
    # after a kill does): the same weights, bit for bit.
    assert cli.main(TRAIN + ["--out", str(run), "--resume-from", "1"]) == 0
    again = checkpoint(run)
    assert sorted(again) == sorted(final)
    for key in final:
        np.testing.assert_array_equal(again[key], final[key], err_msg=key)
    first = checkpoint_at(run, 1)
    assert any(not np.array_equal(first[k], final[k]) for k in final)


def checkpoint_at(run, step):
    arrays = {}
    with h5py.File(run / f"ckpt-{step}.weights.h5") as f:
        f.visititems(lambda k, v: arrays.__setitem__(k, v[()])
                     if isinstance(v, h5py.Dataset) else None)
    return arrays


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_weights(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2",
               TFMETA_TEST_KILL_AT_STEP="2")
    args = TRAIN[:TRAIN.index("--steps") + 1] + ["3"] + \
        TRAIN[TRAIN.index("--steps") + 2:]
    killed = subprocess.run([sys.executable, "-m", "tfmeta", *args, "--out",
                             str(tmp_path / "killed")], env=env,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert cli.main(args + ["--out", str(tmp_path / "killed")]) == 0
    assert cli.main(args + ["--out", str(tmp_path / "whole")]) == 0
    a, b = checkpoint(tmp_path / "killed"), checkpoint(tmp_path / "whole")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("options, message", [
    ({"method": "maml", "tasks": "atari"}, "atari tasks are RL tasks: train "
                                           "them with leap, not maml"),
    ({"method": "leap", "games": "Pong"}, "games apply to atari tasks only, "
                                          "not to sine"),
    ({"method": "leap", "tasks": "atari", "inner_steps": "3"},
     "inner_steps do(es) not apply to leap on atari"),
    ({"method": "leap", "tasks": "atari", "method_options":
      {"parallel_tasks": 2}}, "parallel_tasks does not apply to RL tasks"),
    ({"method": "leap", "tasks": "atari", "games": ""},
     "games must be a comma-separated list of names"),
    ({"method": "transfer", "tasks": "atari", "encoder": "linear"},
     "transfer needs a meta-transfer task family"),
])
def test_bad_atari_options_name_the_problem(options, message):
    with pytest.raises(UsageError) as err:
        schema.resolve({}, options)
    assert message in str(err.value)


def test_atari_defaults_and_an_unknown_game(tmp_path, capsys):
    config = schema.resolve({}, {"method": "leap", "tasks": "atari",
                                 "games": "Pong,Breakout",
                                 "method_options": {"metric": "length"}})
    assert config["games"] == ["Pong", "Breakout"]
    assert (config["envs"], config["updates"], config["meta_batch"]) == (
        32, 150, 2)
    assert schema.resolve(config, {}) == config     # a stored config
    assert cli.main(["train", "leap", "--tasks", "atari", "--games",
                     "Pongg", "--out", str(tmp_path / "r")]) == 2
    assert "Unknown Atari game 'Pongg'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
