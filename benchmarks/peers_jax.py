"""The JAX reference of ``benchmarks/peers.py``, written as JAX
meta-learning code is: the inner loop a ``lax.scan``, the tasks of a
meta-batch ``vmap``-ped, the whole meta-step (inner loops, meta-gradient,
optax update) one ``jit``-ted function called from a Python loop.

Nets: the Omniglot conv net (4 x [conv3x3 64, batch norm with batch
statistics, ReLU, maxpool 2], NHWC) and the sine MLP (1-64-64-1, tanh), the
same as the other contenders'.
"""

import jax
import jax.numpy as jnp
import optax


def init_conv(key, ways):
    params = []
    channels = 1
    for _ in range(4):
        key, sub = jax.random.split(key)
        fan_in = 9 * channels
        params.append({
            "w": jax.random.normal(sub, (3, 3, channels, 64)) * jnp.sqrt(2 / fan_in),
            "b": jnp.zeros(64), "gamma": jnp.ones(64), "beta": jnp.zeros(64)})
        channels = 64
    key, sub = jax.random.split(key)
    params.append({"w": jax.random.normal(sub, (64, ways)) * jnp.sqrt(1 / 64),
                   "b": jnp.zeros(ways)})
    return params


def conv_net(params, x):
    for layer in params[:4]:
        x = jax.lax.conv_general_dilated(
            x, layer["w"], (1, 1), "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC")) + layer["b"]
        mean = x.mean(axis=(0, 1, 2))
        var = x.var(axis=(0, 1, 2))
        x = (x - mean) * jax.lax.rsqrt(var + 1e-3) * layer["gamma"] + layer["beta"]
        x = jax.nn.relu(x)
        x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                                  (1, 2, 2, 1), "VALID")
    x = x.reshape(x.shape[0], -1)
    return x @ params[4]["w"] + params[4]["b"]


def init_mlp(key):
    sizes = [1, 64, 64, 1]
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        key, sub = jax.random.split(key)
        limit = jnp.sqrt(6 / (a + b))
        params.append({"w": jax.random.uniform(sub, (a, b), minval=-limit,
                                               maxval=limit),
                       "b": jnp.zeros(b)})
    return params


def mlp(params, x):
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def contender(w, data, outer_lr):
    """``run(calls)``: ``calls`` meta-steps of workload ``w`` on the task
    batch ``data = (sx, sy, qx, qy)`` (NumPy, leading task axis)."""
    key = jax.random.PRNGKey(0)
    if w["net"] == "conv":
        params, net = init_conv(key, w["ways"]), conv_net

        def loss(p, x, y):
            return optax.softmax_cross_entropy_with_integer_labels(
                net(p, x), y).mean()
    else:
        params, net = init_mlp(key), mlp

        def loss(p, x, y):
            return ((net(p, x) - y) ** 2).mean()

    lr, steps, method = w["inner_lr"], w["steps"], w["method"]

    def adapt(p, x, y):
        def step(p, _):
            g = jax.grad(loss)(p, x, y)
            return jax.tree_util.tree_map(lambda a, b: a - lr * b, p, g), None
        return jax.lax.scan(step, p, None, length=steps)[0]

    def task_grad(p, sx, sy, qx, qy):
        if method == "maml":  # second order: through the scan
            return jax.grad(lambda p: loss(adapt(p, sx, sy), qx, qy))(p)
        fast = adapt(p, sx, sy)
        if method == "fomaml":
            return jax.grad(loss)(jax.lax.stop_gradient(fast), qx, qy)
        return jax.tree_util.tree_map(lambda a, b: a - b, p, fast)  # reptile

    opt = optax.adam(outer_lr)
    state = opt.init(params)

    @jax.jit
    def meta_step(p, state, sx, sy, qx, qy):
        grads = jax.vmap(task_grad, in_axes=(None, 0, 0, 0, 0))(
            p, sx, sy, qx, qy)
        grads = jax.tree_util.tree_map(lambda g: g.mean(0), grads)
        updates, state = opt.update(grads, state, p)
        return optax.apply_updates(p, updates), state

    batch = [jnp.asarray(a) for a in data]
    holder = {"params": params, "state": state}

    def run(calls):
        p, s = holder["params"], holder["state"]
        for _ in range(calls):
            p, s = meta_step(p, s, *batch)
        jax.block_until_ready(p)
        holder["params"], holder["state"] = p, s
    run.meta_step, run.holder = meta_step, holder  # (profile_meta_step.py)
    return run
