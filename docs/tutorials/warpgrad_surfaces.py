# ---
# jupyter:
#   jupytext:
#     formats: py:percent,ipynb
# ---

# %% [markdown]
# # WarpGrad on 2-D loss surfaces: the warped gradient field
#
# WarpGrad's appendix D: each task is a randomized `peaks` surface
# $f(x_1, x_2)$ (`tfmeta.tasks.surfaces`) minimized by gradient descent from
# a random start in $[-3, 3]^2$. The task learner is a point $x_0 + \theta$;
# a warp $\Omega$ (a residual 2-layer tanh MLP, the identity at
# initialization) sits between the point and the surface, so the task loss
# is $f(\Omega(x_0 + \theta; \phi))$. WarpGrad meta-learns $\phi$ (eq. 11)
# so that one gradient step on $\theta$ lowers $f$ as much as possible
# across surfaces. We then draw, on a held-out surface, the step plain
# gradient descent takes and the step the warped learner takes, as a field
# over the plane. The figure is written to `$TFMETA_TUTORIAL_OUT` (default
# `build/tutorials`); `TFMETA_TUTORIAL_BUDGET=tiny` runs a few steps only.

# %%
import os
import pathlib

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

import tfmeta
from tfmeta.tasks import surfaces

BUDGET = os.environ.get("TFMETA_TUTORIAL_BUDGET", "full")
if BUDGET not in ("full", "tiny"):
    raise ValueError(f"TFMETA_TUTORIAL_BUDGET must be full or tiny, got {BUDGET!r}.")
TINY = BUDGET == "tiny"
OUT = pathlib.Path(os.environ.get("TFMETA_TUTORIAL_OUT", "build/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)

META_STEPS = 2 if TINY else 100    # meta-steps, one surface x 10 starts each
INNER_STEPS = 3 if TINY else 100   # gradient steps per task
LR = 0.1                           # the task learning rate (appendix D)

# %% [markdown]
# Meta-training, online (Algorithm 1): every iterate $\theta_k$ of each
# task's 100 steps contributes the gradient of the loss after one warped
# step from it.

# %%
meta = tfmeta.WarpGrad(surfaces.learner(warp=True, seed=0), objective="full",
                       meta_training="online",
                       inner_optimizer=keras.optimizers.SGD(LR),
                       inner_steps=INNER_STEPS, seed=0)
meta.compile(optimizer=keras.optimizers.Adam(0.01), loss=surfaces.value_loss)
meta.fit(surfaces.dataset(10, seed=1), epochs=1, steps_per_epoch=META_STEPS,
         verbose=0)

test = surfaces.tasks(20, 5, seed=10_000)
after = meta.evaluate_tasks(test)
plain = tfmeta.Scratch(surfaces.learner(warp=False),
                       inner_optimizer=keras.optimizers.SGD(LR),
                       inner_steps=INNER_STEPS)
plain.compile(loss=surfaces.value_loss)
before = plain.evaluate_tasks(test)
print(f"f after {INNER_STEPS} steps, mean over {len(after['loss_after'])} held-out "
      f"tasks: gradient descent {before['loss_after'].mean():.3f}, "
      f"WarpGrad {after['loss_after'].mean():.3f}")

# %% [markdown]
# **The field.** At a point $p = x_0 + \theta$ the unwarped learner steps
# $-\alpha \nabla f(p)$. The warped learner evaluates $f$ at $w = \Omega(p)$
# and steps $\theta$ by $-\alpha J_\Omega^\top \nabla f(w)$, which moves the
# point where $f$ is evaluated by
# $\Omega(p - \alpha J_\Omega^\top \nabla f(w)) - w \approx -\alpha J_\Omega
# J_\Omega^\top \nabla f(w)$: the gradient preconditioned by the warp (eq. 6).
# We draw both steps at the same points $w$ of the plane where the surface is
# evaluated.

# %%
warp = meta.learner.get_layer("warp")
coeffs = test["support_x"][0, 0, 2:]
grid = np.linspace(-3, 3, 15, dtype="float32")
p = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
c = np.broadcast_to(coeffs, (len(p), 7))


def f(points):
    return surfaces.surface(points[:, 0], points[:, 1], c)


p_t = tf.constant(p)
with tf.GradientTape() as tape:
    tape.watch(p_t)
    w = warp(p_t)
    loss = tf.reduce_sum(f(w))
warped_step = warp(p_t - LR * tape.gradient(loss, p_t)) - w   # in W-space

w_t = tf.identity(w)
with tf.GradientTape() as tape:
    tape.watch(w_t)
    loss = tf.reduce_sum(f(w_t))
plain_step = -LR * tape.gradient(loss, w_t)                   # at the same w

dense = np.linspace(-3.5, 3.5, 200, dtype="float32")
g1, g2 = np.meshgrid(dense, dense)
surface = np.asarray(surfaces.surface(g1, g2, np.broadcast_to(coeffs, g1.shape + (7,))))
fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), sharey=True)
for ax, step, title in [(axes[0], plain_step, "gradient descent"),
                        (axes[1], warped_step, "WarpGrad (warped step)")]:
    ax.contourf(g1, g2, surface, levels=30, cmap="viridis")
    step = np.asarray(step)
    scale = np.maximum(np.linalg.norm(step, axis=1, keepdims=True), 1e-12)
    ax.quiver(np.asarray(w)[:, 0], np.asarray(w)[:, 1], step[:, 0] / scale[:, 0],
              step[:, 1] / scale[:, 0], np.log10(scale[:, 0]), cmap="autumn",
              pivot="tail", width=0.004)
    ax.set(title=title, xlabel="$w_1$", xlim=(-3.5, 3.5), ylim=(-3.5, 3.5))
axes[0].set_ylabel("$w_2$")
fig.suptitle("direction of one step (arrow colour: log10 of its length)")
fig.tight_layout()
fig.savefig(OUT / "warpgrad_field.png", dpi=90)

# %% [markdown]
# ![Gradient descent and WarpGrad step fields on a held-out surface](figures/warpgrad_field.png)
#
# The two fields differ where the warp, meta-learned across surfaces, rotates
# and rescales the step by $J_\Omega J_\Omega^\top$ (at the tiny test budget
# they are nearly the same: the warp starts as the identity). At the full
# budget one run gave a mean $f$ after 100 steps of -2.27 with WarpGrad
# against -1.53 for gradient descent on 100 held-out tasks (one seed). The trajectories and final losses of the full
# experiment (`experiments/warpgrad_surfaces.py`) are in
# [WarpGrad results](../warpgrad.md).
