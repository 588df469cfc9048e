"""The grid maze of Miconi et al. (2018, 2019), 11 x 11 as in WarpGrad's
appendix I: ``gymnasium.make("tfmeta/Maze-v0")``.

The maze is fixed: a wall all around, a pillar on every cell whose row and
column are both even, and the centre cell open. A *task* is a goal location:
``reset`` draws one uniformly among the open cells other than the centre (or
takes ``options={"goal": (row, col)}``) and puts the agent on the centre. An
episode lasts ``episode_length`` (200) steps; each time the agent steps onto
the goal it gets ``reward`` (10) and is teleported to a random open cell other
than the goal, so a good agent first searches for the goal and then returns to
it as often as it can. Walking into a wall leaves the agent in place and costs
``wall_penalty`` (0 in WarpGrad's code). The episode ends by truncation only.

Observation (16 floats, as the Miconi/WarpGrad agents see it): the 3 x 3
neighbourhood of the agent (1 = wall), a bias input 1, the fraction of the
episode elapsed, the last reward, and the last action one-hot (all zero
before the first step). Actions: 0 up, 1 down, 2 left, 3 right.

Differences from WarpGrad's code (``maze.py`` of the authors' repository):
their teleport can land the agent on a wall or pillar; ours only picks open
cells, as Miconi et al.'s original does. Their observation has one unused
always-zero input and a first "last action" of 0 (one-hot on "up"); ours
drops the unused input and starts with no action.
"""

import collections

import gymnasium as gym
import numpy as np

ACTIONS = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right
NEIGHBOURHOOD = 3


def grid_maze(size):
    """The fixed ``size x size`` maze as a bool array (True = wall)."""
    if not (isinstance(size, (int, np.integer)) and size >= 5 and size % 2):
        raise ValueError(f"maze size must be an odd integer >= 5, got {size!r}.")
    walls = np.ones((size, size), dtype=bool)
    walls[1:-1, 1:-1] = False
    walls[2:-1:2, 2:-1:2] = True
    walls[size // 2, size // 2] = False
    return walls


def reachable(walls, start):
    """Cells reachable from ``start`` by moves between open cells (BFS)."""
    seen = {tuple(start)}
    queue = collections.deque(seen)
    while queue:
        r, c = queue.popleft()
        for dr, dc in ACTIONS:
            nxt = (r + dr, c + dc)
            if not walls[nxt] and nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


class Maze(gym.Env):
    """Miconi et al.'s grid maze; see the module docstring.

    Args:
      size: odd side length, walls included (11 in WarpGrad, 9 in Miconi).
      episode_length: steps per episode (200).
      reward: reward for reaching the goal (10).
      wall_penalty: cost of walking into a wall (0).
      render_mode: ``None`` or ``"ansi"``.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, size=11, episode_length=200, reward=10.0,
                 wall_penalty=0.0, render_mode=None):
        self.walls = grid_maze(size)
        if not (isinstance(episode_length, (int, np.integer))
                and episode_length > 0):
            raise ValueError(
                f"episode_length must be a positive integer, got "
                f"{episode_length!r}.")
        if render_mode not in (None, "ansi"):
            raise ValueError(
                f"render_mode must be None or 'ansi', got {render_mode!r}.")
        self.size = int(size)
        self.episode_length = int(episode_length)
        self.reward_value = float(reward)
        self.wall_penalty = float(wall_penalty)
        self.render_mode = render_mode
        self.centre = (self.size // 2, self.size // 2)
        self.open_cells = [tuple(int(i) for i in rc)
                           for rc in np.argwhere(~self.walls)]
        self._goals = [rc for rc in self.open_cells if rc != self.centre]
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        k = NEIGHBOURHOOD * NEIGHBOURHOOD
        low = np.zeros(k + 3 + len(ACTIONS), np.float32)
        high = np.ones_like(low)
        low[k + 2] = min(0.0, -self.wall_penalty)
        high[k + 2] = max(0.0, self.reward_value)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.goal = self.position = None
        self._t, self._last_action, self._last_reward = 0, None, 0.0

    def _cell(self, value, name):
        cell = tuple(int(v) for v in value)
        if len(cell) != 2 or cell not in self.open_cells:
            raise ValueError(
                f"{name} {value!r} is not an open cell of the "
                f"{self.size}x{self.size} maze.")
        return cell

    def _random_open_cell(self, exclude):
        cells = [rc for rc in self.open_cells if rc != exclude]
        return cells[int(self.np_random.integers(len(cells)))]

    def _observation(self):
        r, c = self.position
        h = NEIGHBOURHOOD // 2
        k = NEIGHBOURHOOD * NEIGHBOURHOOD
        obs = np.zeros(self.observation_space.shape, np.float32)
        obs[:k] = self.walls[r - h:r + h + 1, c - h:c + h + 1].ravel()
        obs[k] = 1.0
        obs[k + 1] = self._t / self.episode_length
        obs[k + 2] = self._last_reward
        if self._last_action is not None:
            obs[k + 3 + self._last_action] = 1.0
        return obs

    def _info(self):
        return {"goal": np.array(self.goal), "position": np.array(self.position)}

    def reset(self, *, seed=None, options=None):
        """New episode = new task. ``options``: ``goal`` and/or ``start``
        cells (``(row, col)``); otherwise a random goal and the centre."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"goal", "start"}
        if unknown:
            raise ValueError(f"Unknown Maze reset options {sorted(unknown)}; "
                             "use 'goal' and/or 'start'.")
        if "goal" in options:
            self.goal = self._cell(options["goal"], "goal")
        else:
            self.goal = self._goals[int(self.np_random.integers(len(self._goals)))]
        self.position = self.centre
        if "start" in options:
            self.position = self._cell(options["start"], "start")
        if self.position == self.goal:
            raise ValueError(f"start {self.position} is the goal.")
        self._t, self._last_action, self._last_reward = 0, None, 0.0
        return self._observation(), self._info()

    def step(self, action):
        if self.goal is None:
            raise RuntimeError("Maze.step called before reset.")
        if not self.action_space.contains(action):
            raise ValueError(f"Maze action must be in 0..3, got {action!r}.")
        action = int(action)
        dr, dc = ACTIONS[action]
        target = (self.position[0] + dr, self.position[1] + dc)
        reward = 0.0
        if self.walls[target]:
            reward -= self.wall_penalty
        else:
            self.position = target
        if self.position == self.goal:
            reward += self.reward_value
            self.position = self._random_open_cell(exclude=self.goal)
        self._t += 1
        self._last_action, self._last_reward = action, reward
        truncated = self._t >= self.episode_length
        return self._observation(), reward, False, truncated, self._info()

    def render(self):
        if self.render_mode != "ansi":
            return None
        rows = []
        for r in range(self.size):
            row = ""
            for c in range(self.size):
                row += ("A" if (r, c) == self.position else
                        "G" if (r, c) == self.goal else
                        "#" if self.walls[r, c] else ".")
            rows.append(row)
        return "\n".join(rows) + "\n"
