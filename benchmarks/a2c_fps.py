"""Environment frames per second of tfmeta's A2C loop on Atari against the raw
ALE step rate of the same vector environment, in one process.

    python benchmarks/a2c_fps.py [--game Breakout] [--envs 32] [--updates 20]
                                 [--rounds 3] [--mode sync]

Raw: the vector environment (``make_atari_vector``: ALE + gymnasium's
AtariPreprocessing, 84x84 RGB, frame skip 4) stepped with uniformly random
actions from numpy, nothing else. A2C: ``A2C.train`` with Leap's Atari
defaults (Mnih encoder, 32 environments x unroll 5 per update, RMSProp), the
same number of environment steps per round; "A2C + path hook" adds what
Leap's hook needs (the loss after each update: one more forward pass over the
rollout) with a hook that only sums it. Rounds alternate and we report medians, since the machines we share vary between runs.
Frames are emulator frames (agent steps x frame skip 4). The issue's target:
A2C >= 50 % of the raw rate.
"""

import argparse
import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tfmeta does
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from tfmeta import rl  # noqa: E402

FRAME_SKIP = 4


def raw_rate(envs, steps, rng):
    """Agent steps per second (all environments) under random actions."""
    n = envs.single_action_space.n
    start = time.perf_counter()
    for _ in range(steps):
        envs.step(rng.integers(n, size=envs.num_envs))
    return steps * envs.num_envs / (time.perf_counter() - start)


def _sum_loss_next(state, i, theta, theta_next, loss, loss_next, grads):
    return state + loss_next


def a2c_rate(a2c, updates, hook=None):
    start = time.perf_counter()
    if hook is None:
        a2c.train(updates)
    else:
        a2c.train(updates, hook=hook, hook_state=0.0)
    return updates * a2c.unroll * a2c.num_envs / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--game", default="Breakout")
    parser.add_argument("--envs", type=int, default=32)
    parser.add_argument("--updates", type=int, default=20,
                        help="A2C updates per round (x unroll 5 x envs steps)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", default="sync", choices=("sync", "async"))
    args = parser.parse_args(argv)

    raw_envs = rl.make_atari_vector(args.game, args.envs, seed=1,
                                    mode=args.mode)
    envs = rl.make_atari_vector(args.game, args.envs, mode=args.mode)
    model = rl.nets.atari_net(envs.single_observation_space.shape,
                              int(envs.single_action_space.n))
    a2c = rl.A2C(model, envs, seed=0)
    start = time.perf_counter()
    a2c.train(2)  # traces and compiles
    compile_s = time.perf_counter() - start
    a2c.train(1, hook=_sum_loss_next, hook_state=0.0)
    rng = np.random.default_rng(0)
    raw, learn, hooked = [], [], []
    for _ in range(args.rounds):
        raw.append(raw_rate(raw_envs, args.updates * a2c.unroll, rng))
        learn.append(a2c_rate(a2c, args.updates))
        hooked.append(a2c_rate(a2c, args.updates, _sum_loss_next))
    raw_med, a2c_med = statistics.median(raw), statistics.median(learn)
    steps = args.updates * a2c.unroll * args.envs
    print(f"{args.game}, {args.envs} envs ({args.mode}), {args.rounds} rounds "
          f"of {steps} agent steps each; first 2 updates (tracing) "
          f"{compile_s:.1f} s; os.cpu_count()={os.cpu_count()}\n")
    print("| loop | agent steps/s | frames/s | of raw |")
    print("|---|---:|---:|---:|")
    for name, rate in (("raw ALE (random actions)", raw_med),
                       ("A2C (rollout + update)", a2c_med),
                       ("A2C + path hook (loss after update)",
                        statistics.median(hooked))):
        print(f"| {name} | {rate:.0f} | {rate * FRAME_SKIP:.0f} | "
              f"{rate / raw_med:.0%} |")
    per_update = a2c.unroll * args.envs
    env_ms = per_update / raw_med * 1e3
    a2c_ms = per_update / a2c_med * 1e3
    print(f"\nper update: {a2c_ms:.0f} ms, of which the emulator ~{env_ms:.0f} "
          f"ms and the learner (policy, update, transfers) ~"
          f"{a2c_ms - env_ms:.0f} ms")
    print("rounds raw:", [round(r) for r in raw],
          "A2C:", [round(r) for r in learn],
          "A2C + hook:", [round(r) for r in hooked])


if __name__ == "__main__":
    main()
