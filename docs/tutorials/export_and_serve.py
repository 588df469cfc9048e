# ---
# jupyter:
#   jupytext:
#     formats: py:percent,ipynb
# ---

# %% [markdown]
# # Export a meta-learned initialization and serve it with plain TensorFlow
#
# Meta-train Reptile on sine tasks, export it as a SavedModel, then load it
# in a fresh Python process that imports TensorFlow and NumPy only (never
# tfmeta) and adapt to a new task there, in-graph, with the same compiled
# inner loop. The export goes to `$TFMETA_TUTORIAL_OUT` (default
# `build/tutorials`); `TFMETA_TUTORIAL_BUDGET=tiny` runs a few steps only.

# %%
import json
import os
import pathlib
import shutil
import subprocess
import sys

import keras
import matplotlib.pyplot as plt
import numpy as np

import tfmeta
from tfmeta.tasks import sine

BUDGET = os.environ.get("TFMETA_TUTORIAL_BUDGET", "full")
if BUDGET not in ("full", "tiny"):
    raise ValueError(f"TFMETA_TUTORIAL_BUDGET must be full or tiny, got {BUDGET!r}.")
TINY = BUDGET == "tiny"
OUT = pathlib.Path(os.environ.get("TFMETA_TUTORIAL_OUT", "build/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)

META_STEPS = 2 if TINY else 1000
INNER_STEPS = 2 if TINY else 32

# %%
meta = tfmeta.Reptile(sine.mlp(seed=0), inner_optimizer=keras.optimizers.SGD(0.02),
                      inner_steps=INNER_STEPS, seed=0)
meta.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
meta.fit(sine.dataset(meta_batch_size=5), epochs=1, steps_per_epoch=META_STEPS,
         verbose=0)

# %% [markdown]
# `export` writes the SavedModel with its signatures and
# `assets/tfmeta.json`. `overwrite=True` replaces only a previous tfmeta
# export at that path (anything else there is refused, untouched).

# %%
path = meta.export(str(OUT / "sine_reptile_export"), overwrite=True)
print(json.loads((pathlib.Path(path) / "assets" / "tfmeta.json").read_text())["method"])

task = sine.tasks(1, seed=7)
np.savez(OUT / "sine_task.npz", **task)

# %% [markdown]
# **Serving in a fresh process.** The server below imports TensorFlow and NumPy, not tfmeta;
# `adapt_and_predict` adapts to the support split in-graph for `eval_steps`
# steps and predicts the query.

# %%
SERVER = f"""
import sys
import numpy as np
import tensorflow as tf

model = tf.saved_model.load({str(path)!r})
task = np.load({str(OUT / "sine_task.npz")!r})
sx, sy, qx = (tf.constant(task[k][0]) for k in ("support_x", "support_y", "query_x"))
served = model.signatures["adapt_and_predict"](support_x=sx, support_y=sy, query_x=qx)
initial = model.signatures["serving_default"](x=qx)
np.savez({str(OUT / "served.npz")!r}, adapted=served["predictions"].numpy(),
         initial=initial["predictions"].numpy())
assert "tfmeta" not in sys.modules, "tfmeta was imported"
print("served by TensorFlow", tf.__version__, "without tfmeta")
"""
done = subprocess.run([sys.executable, "-c", SERVER], capture_output=True, text=True,
                      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
print(done.stdout.strip() or done.stderr[-2000:])
done.check_returncode()

# %% [markdown]
# The served predictions equal tfmeta's own adaptation (full-batch inner
# loop, so the same steps):

# %%
served = np.load(OUT / "served.npz")
local = meta.adapt(task["support_x"][0], task["support_y"][0]).predict(
    task["query_x"][0], verbose=0)
print("largest difference to meta.adapt:", np.abs(served["adapted"] - local).max())
assert np.allclose(served["adapted"], local, atol=1e-4)

qx, qy = task["query_x"][0, :, 0], task["query_y"][0, :, 0]
order = np.argsort(qx)
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(qx[order], qy[order], "k-", label="task")
ax.plot(task["support_x"][0, :, 0], task["support_y"][0, :, 0], "ko", label="support")
ax.plot(qx[order], served["initial"][order, 0], "C1:", label="served: initialization")
ax.plot(qx[order], served["adapted"][order, 0], "C0-", label="served: adapt_and_predict")
ax.set(xlabel="x", ylabel="y", title="predictions from plain TensorFlow")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "export_and_serve.png", dpi=90)

# %% [markdown]
# ![Served predictions before and after in-graph adaptation](figures/export_and_serve.png)
#
# The signatures, the metadata and TF Serving's REST form are in
# [Export and serving](../export.md).
