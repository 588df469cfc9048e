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


def killed_run(train, out):
    """Runs ``train`` with ``--steps 3`` into ``out`` in a child process that
    is SIGKILLed after meta-step 2 (``TFMETA_TEST_KILL_AT_STEP``); returns
    those arguments (without ``--out``) for the reruns."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2",
               TFMETA_TEST_KILL_AT_STEP="2")
    args = train[:train.index("--steps") + 1] + ["3"] + \
        train[train.index("--steps") + 2:]
    killed = subprocess.run([sys.executable, "-m", "tfmeta", *args, "--out",
                             str(out)], env=env, capture_output=True,
                            text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    return args


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_weights(tmp_path):
    args = killed_run(TRAIN, tmp_path / "killed")
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


# ------------------------------------------- warpgrad on maze (RLWarpGrad)
WARP = ["train", "warpgrad", "--tasks", "maze", "--envs", "1", "--updates",
        "1", "--steps", "2", "--checkpoint-every", "1"]


def run_state(run, step):
    import pickle
    return pickle.loads((run / f"ckpt-{step}.state.pkl").read_bytes())


def same_environments(a, b, steps=250):
    """Two saved maze environments step alike (observations, rewards; 250
    steps: through an episode end, whose new goal and start are random)."""
    from tfmeta import rl
    a, b = rl.loads_envs(a), rl.loads_envs(b)
    actions = np.random.default_rng(0).integers(4, size=(steps, a.num_envs))
    for action in actions:
        (obs_a, rew_a, *_), (obs_b, rew_b, *_) = a.step(action), b.step(action)
        np.testing.assert_array_equal(obs_a, obs_b)
        np.testing.assert_array_equal(rew_a, rew_b)


def test_warpgrad_maze_writes_a_run_and_resumes_exactly(tmp_path, capsys):
    """The Warp-RNN agent (100 units, 200-step episodes; 1 environment, 1
    task update per warp update, 2 meta-steps): the run directory, and
    meta-step 2 trained again from the checkpoint at 1 ends with the same
    agent, warp optimizer and A2C state (Adam, counters, episodes,
    environments) as the uninterrupted run."""
    run = tmp_path / "run"
    assert cli.main(WARP + ["--out", str(run)]) == 0
    capsys.readouterr()
    final, state = checkpoint(run), run_state(run, 2)
    # the warp optimizer: Adam's step, learning rate, two slots per warp
    # variable (the meta-LSTM's 3, the projection's 2)
    assert len([k for k in final if k.startswith("optimizer/")]) == 12
    config = json.loads((run / "config.json").read_text())
    assert (config["inner_optimizer"], config["inner_lr"], config["meta_lr"],
            config["width"]) == ("adam", 0.001, 0.001, None)
    results = json.loads((run / "results.json").read_text())
    assert (results["updates"], results["episodes"]) == (2, 2)
    assert (run / "loss.png").stat().st_size > 1000
    assert list((run / "tensorboard" / "agent").glob("events.out.*"))
    header = (run / "log.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "mean_return", "warp_grad_norm"} <= set(header)
    before = run_state(run, 1)
    assert len(before["episodes"]) == 1 and len(state["episodes"]) == 2

    assert cli.main(WARP + ["--out", str(run), "--resume-from", "1"]) == 0
    capsys.readouterr()
    again, state_again = checkpoint(run), run_state(run, 2)
    assert sorted(again) == sorted(final)
    for key in final:
        np.testing.assert_array_equal(again[key], final[key], err_msg=key)
    for a, b in zip(state_again["variables"], state["variables"]):
        np.testing.assert_array_equal(a, b)
    assert state_again["episodes"] == state["episodes"]
    same_environments(state_again["envs"], state["envs"])
    first = checkpoint_at(run, 1)
    assert any(not np.array_equal(first[k], final[k]) for k in final)

    # tfmeta evaluate restores the agent's stream: the same statistics
    assert cli.main(["evaluate", str(run)]) == 0
    assert json.loads(capsys.readouterr().out) == results
    assert cli.main(["export", str(run)]) == 2      # an agent, no SavedModel
    assert "there is no SavedModel export" in capsys.readouterr().err

    # a checkpoint without its run state cannot continue: named, kept
    (run / "ckpt-2.state.pkl").unlink()
    assert cli.main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert "ckpt-2.state.pkl is missing" in err
    assert (run / "ckpt-2.weights.h5").exists()


@pytest.mark.parametrize("options, message", [
    ({"method": "warpgrad", "tasks": "sine"},
     "runs warpgrad on RL tasks only: --tasks maze, not sine"),
    ({"method": "warpgrad", "tasks": "maze", "width": "6",
      "meta_batch": "2"},
     "meta_batch, width do(es) not apply to warpgrad on maze"),
    ({"method": "warpgrad", "tasks": "maze", "games": "Pong"},
     "games do(es) not apply to warpgrad on maze"),
    ({"method": "warpgrad", "tasks": "maze",
      "method_options": {"interval": 3}},
     "bad method_options for warpgrad: unknown option 'interval'"),
    ({"method": "warpgrad", "tasks": "maze", "strategy": "mirrored"},
     "strategy mirrored does not apply to warpgrad on maze"),
    ({"method": "maml", "tasks": "maze"},
     "train them with transfer or warpgrad, not maml"),
])
def test_bad_warpgrad_maze_options_name_the_problem(options, message):
    with pytest.raises(UsageError) as err:
        schema.resolve({}, options)
    assert message in str(err.value)


def test_warpgrad_maze_defaults_are_the_experiments_warp_rnn():
    config = schema.resolve({}, {"method": "warpgrad", "tasks": "maze"})
    assert {k: config[k] for k in ("envs", "updates", "inner_optimizer",
                                   "inner_lr", "meta_optimizer", "meta_lr",
                                   "width")} == {
        "envs": 30, "updates": 30, "inner_optimizer": "adam",
        "inner_lr": 0.001, "meta_optimizer": "adam", "meta_lr": 0.001,
        "width": None}
    assert schema.resolve(config, {}) == config     # a stored config
    transfer = schema.resolve({}, {"method": "transfer", "tasks": "maze",
                                   "encoder": "linear"})
    assert transfer["width"] == 6     # the 2 x N mazes keep their defaults


@pytest.mark.slow
def test_a_killed_warpgrad_maze_run_resumes_to_the_uninterrupted_state(
        tmp_path):
    """SIGKILL after meta-step 2 (its checkpoint at 1), the same command
    again: the weights, the warp optimizer and the A2C's whole state of an
    uninterrupted run."""
    args = killed_run(WARP, tmp_path / "killed")
    assert json.loads((tmp_path / "killed" / "checkpoint.json").read_text(
        ))["step"] == 1
    assert cli.main(args + ["--out", str(tmp_path / "killed")]) == 0
    assert cli.main(args + ["--out", str(tmp_path / "whole")]) == 0
    a, b = checkpoint(tmp_path / "killed"), checkpoint(tmp_path / "whole")
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    sa = run_state(tmp_path / "killed", 3)
    sb = run_state(tmp_path / "whole", 3)
    for x, y in zip(sa["variables"], sb["variables"]):
        np.testing.assert_array_equal(x, y)
    assert sa["episodes"] == sb["episodes"]
    same_environments(sa["envs"], sb["envs"])
