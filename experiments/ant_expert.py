"""Train the Ant experiment's expert: PPO (``tfmeta.rl.ppo.PPO``) whose
policy sees the Ant's observation and the task's two leg lengths
(``tfmeta.tasks.ant_legs.RandomLegsAnt``: new lengths ``~ U[0.2, 0.6]^2``
every episode of 200 steps), as the paper's "PPO conditioned on the
ground-truth physical parameters" (section 5.4).

Writes the new file ``--out`` (an ``.npz`` of ``PPO.save``; an existing
file is refused) and prints, every few iterations, the mean return of the
last 20 training episodes; at the end, the deterministic policy's return
on 20 fresh tasks beside a uniformly random policy's and a zero-torque
policy's on the same tasks (``--out`` + ``.json`` holds them).

    python experiments/ant_expert.py --env-steps 1000000 --minutes 40 --out saved_models/ant_expert.npz
"""

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from tfmeta.rl.ppo import PPO  # noqa: E402
from tfmeta.tasks import ant_legs  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="the new .npz file")
    p.add_argument("--env-steps", type=int, default=300_000)
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--rollout-length", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init-log-std", type=float, default=-0.5,
                   help="the policy's initial log std (a narrower start "
                        "pays less of Ant's control cost)")
    p.add_argument("--eval-tasks", type=int, default=20)
    p.add_argument("--minutes", type=float, default=None,
                   help="stop after this long (and save) even if env-steps "
                        "are not done")
    args = p.parse_args(argv)
    for name in ("env_steps", "envs", "rollout_length", "eval_tasks"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be positive")
    for path in (args.out, args.out + ".json"):
        if os.path.exists(path):
            p.error(f"{path} exists: give a new path (this script never "
                    "overwrites a file)")
    return args


def conditioned(ppo):
    """``expert(obs [n, 27], lengths [n, 2]) -> actions [n, 8]``."""
    return lambda obs, lengths: ppo.mean_action(
        np.concatenate([obs, lengths], -1))


def evaluate(ppo, tasks, seed):
    expert = conditioned(ppo)
    results = {}
    rng = np.random.default_rng(seed)
    for name, policy in (
            ("expert", lambda obs: expert(obs, tasks.astype(np.float32))),
            ("random", lambda obs: rng.uniform(-1, 1, (len(obs), 8))),
            ("zero", lambda obs: np.zeros((len(obs), 8)))):
        returns, steps = ant_legs.rollout(tasks, policy, seed=seed)
        results[name] = dict(mean_return=float(returns.mean()),
                             std_return=float(returns.std()),
                             mean_steps=float(steps.mean()))
    return results


def main(argv=None):
    args = parse_args(argv)
    envs = [ant_legs.RandomLegsAnt(seed=args.seed * 1000 + i)
            for i in range(args.envs)]
    ppo = PPO(ant_legs.OBS_DIM + ant_legs.TASK_DIM, ant_legs.ACTION_DIM,
              init_log_std=args.init_log_std, seed=args.seed)
    per_iteration = args.envs * args.rollout_length
    iterations = max(1, args.env_steps // per_iteration)
    start = time.perf_counter()
    for i in range(iterations):
        logs = ppo.train(envs, 1, args.rollout_length)
        if i % 5 == 0 or i == iterations - 1:
            print(f"it {logs['iteration']:4d} steps {logs['env_steps']:7d} "
                  f"return(200 steps) {logs['mean_return']:8.1f} "
                  f"reward/step {logs['mean_reward']:.3f} value_loss "
                  f"{logs['value_loss']:.3f} log_std "
                  f"{float(ppo.log_std.numpy().mean()):.2f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
        if args.minutes and time.perf_counter() - start > 60 * args.minutes:
            print("time limit reached", flush=True)
            break
    seconds = time.perf_counter() - start
    ppo.save(args.out)
    tasks = ant_legs.sample_lengths(np.random.default_rng(12345),
                                    args.eval_tasks)
    results = evaluate(ppo, tasks, seed=12345)
    results.update(env_steps=ppo.env_steps, train_seconds=seconds,
                   horizon=ant_legs.HORIZON, eval_tasks=args.eval_tasks,
                   command=" ".join(sys.argv))
    with open(args.out + ".json", "x") as f:
        json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
