"""2 x N maze tasks (gradient-based transfer paper, section 5.5, appendix A.5).

A maze is a ``2 x N`` grid (``N`` even; the paper uses 6, 12, 24). The agent
starts in the upper-left cell ``(0, 0)``; the goal is the lower-right cell
``(1, N - 1)``. Obstacles (A.5): at every other position of the top row
(columns 1, 3, ..., N - 1: ``N / 2`` positions) an obstacle with probability
0.5, and the bottom row holds the complement at those columns, so each odd
column is blocked in exactly one row and every even column is free.

Taken literally, A.5 puts an obstacle on the goal cell whenever the top
cell of the last column is free; we keep the goal free (our reading; the
paper says the maze is always solvable and the goal is reached). With that,
every maze is solvable: even columns let the agent change rows, and each
odd column has a free cell.

* Support: ``support_size`` cells (default all ``2N``, in random order):
  ``support_x`` = position ``(row, column)`` as floats, ``support_y`` = 1.0
  if occupied else 0.0.
* Query: ``query_size`` free cells other than the goal, drawn uniformly
  with replacement: ``query_x`` = position, ``query_y`` = the optimal action
  ``[B, M, 1]`` (int32; 0 right, 1 left, 2 up, 3 down), the first move of
  the path a depth-first search finds (moves tried right, then the other
  row, then left; on these mazes it is a shortest path, which the tests
  check against breadth-first distances).

Generation is NumPy (the search is sequential), stateless per ``(seed,
index)`` like the other families. ``rollout`` and ``normalized_distance``
give the paper's Table 3 measure.
"""

import collections

import numpy as np
import tensorflow as tf

from tfmeta.checks import positive_int
from tfmeta.tasks import numpy_tasks

ACTIONS = ((0, 1), (0, -1), (-1, 0), (1, 0))   # right, left, up, down
"""``(row, column)`` moves of the actions 0-3: right, left, up, down."""
ACTION_NAMES = ("right", "left", "up", "down")
"""Names of the actions 0-3."""
SIZES = (6, 12, 24)
"""The widths ``N`` the paper uses."""
SUPPORT_DIMS = (2, 1)
"""``(ds, es)``: per-point sizes of ``support_x`` (position) and ``support_y``
(occupied)."""


def query_mlp(seed=None):
    """The query learner ``g_psi`` of the maze tasks: position ``(row,
    column)`` -> logits of the 4 actions, a 2-40-40-4 ReLU MLP.

    Args:
      seed: Glorot-uniform initializers seeded ``seed + i`` for layer ``i``
        (default ``None``: unseeded).
    """
    from tfmeta.tasks import sine

    return sine.mlp((40, 40), "relu", seed, name="maze_policy_mlp",
                    dims=(2, len(ACTIONS)))


def _check_width(width):
    width = positive_int("width", width)
    if width % 2:
        raise ValueError(f"width must be even (N / 2 obstacle columns), got "
                         f"{width}.")
    return width


def generate(width, rng):
    """One maze: a ``[2, width]`` bool array, True = obstacle (A.5).

    Args:
      width: ``N``, even and positive.
      rng: a ``numpy.random.Generator``.
    """
    width = _check_width(width)
    grid = np.zeros((2, width), bool)
    columns = np.arange(1, width, 2)
    top = rng.random(columns.size) < 0.5
    grid[0, columns] = top
    grid[1, columns] = ~top
    grid[1, width - 1] = False   # the goal stays free
    return grid


def start_and_goal(width):
    """``((0, 0), (1, width - 1))``: the start and goal cells.

    Args:
      width: the maze's ``N``.
    """
    return (0, 0), (1, width - 1)


def _neighbours(grid, cell):
    r, c = cell
    for a in (0, 3 if r == 0 else 2, 1):     # right, other row, left
        dr, dc = ACTIONS[a]
        nr, nc = r + dr, c + dc
        if 0 <= nr < 2 and 0 <= nc < grid.shape[1] and not grid[nr, nc]:
            yield a, (nr, nc)


def dfs_path(grid, cell):
    """The path (list of cells) a depth-first search finds from ``cell`` to
    the goal, or ``None`` if there is none.

    Args:
      grid: a ``[2, N]`` bool maze, True = obstacle (``generate``).
      cell: a ``(row, column)`` pair.
    """
    goal = start_and_goal(grid.shape[1])[1]
    stack, seen = [(cell, [cell])], {cell}
    while stack:
        current, path = stack.pop()
        if current == goal:
            return path
        # pushed in reverse so that the first move tried is popped first
        for _, nxt in reversed(list(_neighbours(grid, current))):
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


def optimal_policy(grid):
    """``[2, N]`` int table of the DFS path's first action from each free
    cell (-1 on obstacles and the goal).

    Args:
      grid: a ``[2, N]`` bool maze, True = obstacle (``generate``).
    """
    table = np.full(grid.shape, -1, np.int32)
    goal = start_and_goal(grid.shape[1])[1]
    for r in range(2):
        for c in range(grid.shape[1]):
            if grid[r, c] or (r, c) == goal:
                continue
            path = dfs_path(grid, (r, c))
            step = (path[1][0] - r, path[1][1] - c)
            table[r, c] = ACTIONS.index(step)
    return table


def bfs_distances(grid):
    """Shortest-path distance from every cell to the goal (-1: unreachable
    or obstacle), by breadth-first search.

    Args:
      grid: a ``[2, N]`` bool maze, True = obstacle (``generate``).
    """
    goal = start_and_goal(grid.shape[1])[1]
    dist = np.full(grid.shape, -1, np.int32)
    dist[goal] = 0
    queue = collections.deque([goal])
    while queue:
        r, c = queue.popleft()
        for dr, dc in ACTIONS:
            nr, nc = r + dr, c + dc
            if 0 <= nr < 2 and 0 <= nc < grid.shape[1] \
                    and not grid[nr, nc] and dist[nr, nc] < 0:
                dist[nr, nc] = dist[r, c] + 1
                queue.append((nr, nc))
    return dist


def rollout(grid, policy, max_steps=None):
    """Final cell after following ``policy`` (a ``[2, N]`` table of actions)
    from the start for ``max_steps`` (default ``2 N``) moves; a move into an
    obstacle or off the grid leaves the agent where it is.

    Args:
      grid: a ``[2, N]`` bool maze, True = obstacle (``generate``).
      policy: ``[2, N]`` int actions (``ACTIONS``' indices).
      max_steps: moves (default ``None``: ``2 N``).
    """
    width = grid.shape[1]
    (r, c), goal = start_and_goal(width)
    for _ in range(2 * width if max_steps is None else max_steps):
        if (r, c) == goal:
            break
        a = int(policy[r, c])
        if not 0 <= a < 4:
            continue
        nr, nc = r + ACTIONS[a][0], c + ACTIONS[a][1]
        if 0 <= nr < 2 and 0 <= nc < width and not grid[nr, nc]:
            r, c = nr, nc
    return r, c


def normalized_distance(grid, cell):
    """Table 3's reward: minus the Manhattan distance from ``cell`` to the
    goal over the start's (0 at the goal, -1 at the start).

    Args:
      grid: a ``[2, N]`` bool maze, True = obstacle (``generate``).
      cell: a ``(row, column)`` pair.
    """
    (sr, sc), (gr, gc) = start_and_goal(grid.shape[1])
    return -(abs(cell[0] - gr) + abs(cell[1] - gc)) / (abs(sr - gr)
                                                       + abs(sc - gc))


def _task_batch(index, meta_batch_size, width, support_size, query_size, seed):
    rng = np.random.default_rng([seed, 3, int(index)])
    sx = np.zeros((meta_batch_size, support_size, 2), np.float32)
    sy = np.zeros((meta_batch_size, support_size, 1), np.float32)
    qx = np.zeros((meta_batch_size, query_size, 2), np.float32)
    qy = np.zeros((meta_batch_size, query_size, 1), np.int32)
    grids = np.zeros((meta_batch_size, 2, width), np.float32)
    cells = np.array([(r, c) for r in range(2) for c in range(width)])
    for b in range(meta_batch_size):
        grid = generate(width, rng)
        grids[b] = grid
        pick = cells[rng.permutation(len(cells))[:support_size]]
        sx[b] = pick
        sy[b, :, 0] = grid[pick[:, 0], pick[:, 1]]
        policy = optimal_policy(grid)
        free = cells[policy[cells[:, 0], cells[:, 1]] >= 0]
        ask = free[rng.integers(0, len(free), query_size)]
        qx[b] = ask
        qy[b, :, 0] = policy[ask[:, 0], ask[:, 1]]
    return sx, sy, qx, qy, grids


def _check(meta_batch_size, width, support_size, query_size):
    positive_int("meta_batch_size", meta_batch_size)
    width = _check_width(width)
    support_size = 2 * width if support_size is None else positive_int(
        "support_size", support_size)
    if support_size > 2 * width:
        raise ValueError(f"support_size must be at most the {2 * width} cells "
                         f"of a 2 x {width} maze, got {support_size}.")
    query_size = width if query_size is None else positive_int(
        "query_size", query_size)
    return width, support_size, query_size


KEYS = ("support_x", "support_y", "query_x", "query_y", "grid")
"""Keys of a maze task batch: the task keys plus ``grid``."""


def tasks(num_tasks, width=6, support_size=None, query_size=None, seed=0,
          index=0):
    """One fixed batch of ``num_tasks`` mazes as NumPy arrays: the task keys
    plus ``grid [B, 2, N]`` (1.0 = obstacle).

    Args:
      num_tasks: mazes in the batch.
      width: the maze's ``N``, even (default 6).
      support_size: support cells per task, at most ``2 N`` (default
        ``None``: all ``2 N``).
      query_size: query cells per task (default ``None``: ``N``).
      seed: int seed (default 0).
      index: which batch of the seed's stream (default 0).
    """
    width, support_size, query_size = _check(num_tasks, width, support_size,
                                             query_size)
    return dict(zip(KEYS, _task_batch(index, num_tasks, width, support_size,
                                      query_size, seed)))


def dataset(meta_batch_size=10, width=6, support_size=None, query_size=None,
            seed=0, start=0):
    """An endless ``tf.data.Dataset`` of maze task batches; element ``i``
    depends on ``(seed, i)`` only.

    Args:
      meta_batch_size: mazes per element (default 10).
      width: the maze's ``N``, even (default 6).
      support_size: support cells per task, at most ``2 N`` (default
        ``None``: all ``2 N``).
      query_size: query cells per task (default ``None``: ``N``).
      seed: int seed (default 0).
      start: index of the first element (default 0).
    """
    width, support_size, query_size = _check(meta_batch_size, width,
                                             support_size, query_size)
    shapes = ([meta_batch_size, support_size, 2],
              [meta_batch_size, support_size, 1],
              [meta_batch_size, query_size, 2], [meta_batch_size, query_size, 1],
              [meta_batch_size, 2, width])

    return numpy_tasks.dataset(
        lambda j: _task_batch(j, meta_batch_size, width, support_size,
                              query_size, seed),
        KEYS, [tf.float32, tf.float32, tf.float32, tf.int32, tf.float32],
        shapes, start)
