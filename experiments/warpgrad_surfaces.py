"""WarpGrad on synthetic 2-D loss surfaces (WarpGrad paper, appendix D, fig. 7).

Each task is a randomized ``peaks`` surface f (tfmeta.tasks.surfaces) to be
minimized by gradient descent (lr 0.1) from a random start in [-3, 3]^2. The
warp Omega is a residual 2-layer tanh MLP (30 units), identity at
initialization, so the unwarped learner is plain gradient descent. Each
meta-step draws one surface with 10 starts (10 tasks) and meta-learns Omega
online (Algorithm 1). We then run gradient descent and WarpGrad from the same
starts on held-out surfaces, plot trajectories over the surface (in W-space:
the point the loss is evaluated at, ``x0 + theta`` vs ``Omega(x0 + theta)``)
and tabulate final losses:

    python experiments/warpgrad_surfaces.py                  # ~2 min on 2 cores
    python experiments/warpgrad_surfaces.py --meta-steps 10  # a quick look

Writes ``results.md`` and ``surfaces.png`` to ``--out``.
"""

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tfmeta does

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import tfmeta  # noqa: E402
from tfmeta import inner_loop  # noqa: E402
from tfmeta.tasks import surfaces  # noqa: E402

INNER_LR = 0.1  # appendix D


def trajectory(model, inner_update, x, steps, mask=None):
    """Iterates theta_0..theta_K of the shared inner loop, via its hook."""
    params = [tf.convert_to_tensor(v) for v in model.trainable_variables]
    y = tf.zeros([x.shape[0], 1])

    def hook(state, i, theta, theta_next, *_):
        return state.write(i + 1, theta_next[0])

    path = tf.TensorArray(tf.float32, size=steps + 1).write(0, params[0])
    result = inner_loop.adapt(
        model, surfaces.value_loss, inner_update, params, [], x, y, steps,
        hook=hook, hook_state=path, mask=mask)
    return result.hook_state.stack().numpy()


def w_space(model, x0, thetas):
    """Points the surface is evaluated at: Omega(x0 + theta) (or x0+theta)."""
    points = x0[None, :2] + thetas
    if any(layer.name == "warp" for layer in model.layers):
        points = model.get_layer("warp")(points).numpy()
    return points


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meta-steps", type=int, default=100)
    parser.add_argument("--inner-steps", type=int, default=100)
    parser.add_argument("--objective", default="full",
                        choices=["full", "approximate"])
    parser.add_argument("--meta-lr", type=float, default=0.01)
    parser.add_argument("--test-surfaces", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/warpgrad_surfaces")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    meta = tfmeta.WarpGrad(
        surfaces.learner(warp=True, seed=args.seed), objective=args.objective,
        inner_optimizer=keras.optimizers.SGD(INNER_LR),
        inner_steps=args.inner_steps, seed=args.seed)
    meta.compile(optimizer=keras.optimizers.Adam(args.meta_lr),
                 loss=surfaces.value_loss)
    sgd = surfaces.learner(warp=False)
    test = surfaces.tasks(args.test_surfaces, 5, seed=10_000 + args.seed)
    before = meta.evaluate_tasks(test)
    start = time.time()
    meta.fit(surfaces.dataset(10, seed=args.seed + 1), epochs=1,
             steps_per_epoch=args.meta_steps, verbose=0)
    train_time = time.time() - start
    after = meta.evaluate_tasks(test)

    # The untrained warp is the identity: the same numbers as the plain
    # point learner (gradient descent), which the table reports as "SGD".
    plain = tfmeta.Scratch(sgd, inner_optimizer=keras.optimizers.SGD(INNER_LR),
                           inner_steps=args.inner_steps)
    plain.compile(loss=surfaces.value_loss)
    gd = plain.evaluate_tasks(test)
    assert np.allclose(gd["loss_after"], before["loss_after"], atol=1e-4)

    rows = [("gradient descent (no warp)", gd["loss_before"], gd["loss_after"]),
            ("WarpGrad", after["loss_before"], after["loss_after"])]
    lines = [
        f"# WarpGrad on 2-D loss surfaces (appendix D), small budget\n",
        f"`python experiments/warpgrad_surfaces.py --meta-steps "
        f"{args.meta_steps} --inner-steps {args.inner_steps} --objective "
        f"{args.objective} --meta-lr {args.meta_lr} --seed {args.seed}`\n",
        f"Meta-training: {args.meta_steps} meta-steps x 10 tasks (one surface, "
        f"10 starts), online (Algorithm 1), eq. "
        f"{11 if args.objective == 'full' else 12}, Adam {args.meta_lr}; "
        f"{train_time:.0f} s. Held-out: {len(gd['loss_after'])} tasks "
        f"({args.test_surfaces} surfaces x 5 starts), {args.inner_steps} "
        f"steps of lr {INNER_LR} from the same starts.\n",
        "| optimizer | f at start (mean) | f after K steps: mean | median | "
        "tasks lower / higher than GD (by > 0.01) |",
        "|---|---|---|---|---|"]
    for name, b, a in rows:
        diff = a - gd["loss_after"]
        versus = "" if name.startswith("gradient") else \
            f"{np.mean(diff < -0.01):.0%} / {np.mean(diff > 0.01):.0%}"
        lines.append(f"| {name} | {b.mean():.3f} | {a.mean():.3f} | "
                     f"{np.median(a):.3f} | {versus} |")
    lines.append("\nThe paper reports this experiment qualitatively only "
                 "(fig. 3, fig. 7: 100 meta-steps, 100 task steps); it gives "
                 "no numbers to compare with.\n")
    (out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    grid = np.linspace(-3.5, 3.5, 200)
    g1, g2 = np.meshgrid(grid, grid)
    # the held-out tasks where warping changed the final loss most
    gain = gd["loss_after"] - after["loss_after"]
    for ax, t in zip(axes, np.argsort(-gain)[:3]):
        x = test["support_x"][t]
        coeffs = x[0, 2:]
        f = surfaces.surface(g1, g2, np.broadcast_to(coeffs, g1.shape + (7,)))
        ax.contourf(g1, g2, np.asarray(f), levels=30, cmap="viridis")
        for model, mask, colour, label in (
                (sgd, None, "black", "gradient descent"),
                (meta.learner, meta.task_mask, "magenta", "WarpGrad")):
            thetas = trajectory(model, meta.inner_update, x,
                                args.inner_steps, mask)
            pts = w_space(model, x[0], thetas)
            ax.plot(pts[:, 0], pts[:, 1], ".-", color=colour, ms=2,
                    label=label)
            ax.plot(pts[-1, 0], pts[-1, 1], "x", color=colour, ms=8)
        ax.plot(x[0, 0], x[0, 1], "o", color="white", ms=6, label="start x0")
        ax.set_title(f"task {t}: final f GD {gd['loss_after'][t]:.2f}, "
                     f"WarpGrad {after['loss_after'][t]:.2f}", fontsize=9)
        ax.set_xlim(-3.5, 3.5)
        ax.set_ylim(-3.5, 3.5)
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("Held-out loss surfaces: trajectories in W-space "
                 "(x0 + theta vs Omega(x0 + theta))")
    fig.tight_layout()
    fig.savefig(out / "surfaces.png", dpi=110)
    print(f"wrote {out / 'results.md'} and {out / 'surfaces.png'}")


if __name__ == "__main__":
    main()
