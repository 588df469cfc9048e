"""The 2 x N maze task family (transfer paper, appendix A.5)."""

import numpy as np
import pytest

from tfmeta.tasks import maze


@pytest.mark.parametrize("width", maze.SIZES)
def test_every_maze_is_solvable_and_dfs_is_optimal(width):
    rng = np.random.default_rng(0)
    for _ in range(300):
        grid = maze.generate(width, rng)
        odd = grid[:, 1::2]
        assert np.all(odd.sum(0)[:-1] == 1)          # A.5: one row blocked
        assert not grid[:, 0::2].any() and not grid[1, -1] and not grid[0, 0]
        dist = maze.bfs_distances(grid)
        assert dist[0, 0] > 0                         # solvable
        policy = maze.optimal_policy(grid)
        for r, c in zip(*np.nonzero(~grid)):
            if (r, c) == (1, width - 1):
                continue
            path = maze.dfs_path(grid, (r, c))
            assert len(path) - 1 == dist[r, c]        # DFS path is shortest
            dr, dc = maze.ACTIONS[policy[r, c]]
            assert dist[r + dr, c + dc] == dist[r, c] - 1
        assert maze.rollout(grid, policy) == (1, width - 1)
        assert maze.normalized_distance(grid, (1, width - 1)) == 0


def test_both_obstacle_rows_occur_and_a_wall_blocks():
    rng = np.random.default_rng(1)
    tops = np.array([maze.generate(12, rng)[0, 1::2] for _ in range(200)])
    assert 0.4 < tops.mean() < 0.6
    grid = np.zeros((2, 6), bool)
    grid[:, 3] = True                                  # not a maze of A.5
    assert maze.dfs_path(grid, (0, 0)) is None
    assert maze.bfs_distances(grid)[0, 0] == -1


def test_task_batches_match_their_mazes():
    batch = maze.tasks(4, width=12, query_size=9, seed=2)
    assert batch["support_x"].shape == (4, 24, 2)
    assert batch["query_y"].shape == (4, 9, 1)
    for b in range(4):
        grid = batch["grid"][b].astype(bool)
        cells = batch["support_x"][b].astype(int)
        assert len({tuple(c) for c in cells}) == 24        # all cells, once
        np.testing.assert_array_equal(batch["support_y"][b, :, 0],
                                      grid[cells[:, 0], cells[:, 1]])
        policy = maze.optimal_policy(grid)
        asked = batch["query_x"][b].astype(int)
        assert not grid[asked[:, 0], asked[:, 1]].any()
        np.testing.assert_array_equal(batch["query_y"][b, :, 0],
                                      policy[asked[:, 0], asked[:, 1]])
    from_dataset = next(iter(maze.dataset(4, width=12, query_size=9, seed=2)))
    for key in maze.KEYS:
        np.testing.assert_array_equal(from_dataset[key], batch[key])
    other = maze.tasks(4, width=12, query_size=9, seed=3)
    assert not np.array_equal(other["grid"], batch["grid"])


def test_bad_maze_options_are_named():
    with pytest.raises(ValueError, match="width must be even"):
        maze.tasks(2, width=7)
    with pytest.raises(ValueError, match="at most the 12 cells"):
        maze.tasks(2, width=6, support_size=13)
    with pytest.raises(ValueError, match="query_size must be a positive"):
        maze.dataset(query_size=0)
