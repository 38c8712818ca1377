import gymnasium as gym
import numpy as np
import pytest

from envs import ACTION_DELTAS, GridWorldEnv, MazeEnv, TabularMDP, generate_maze, load_map
from envs.grid_map import looks_like_path

LEFT, DOWN, RIGHT, UP = range(4)


def test_map_forms_agree(tmp_path):
    rows = ["S..", ".#G"]
    path = tmp_path / "m.txt"
    path.write_text("\n".join(rows) + "\n")
    grids = [load_map(rows), load_map("S..\n.#G"), load_map(str(path)), load_map(path)]
    for g in grids[1:]:
        np.testing.assert_array_equal(g.cells, grids[0].cells)
    assert load_map("cliff").shape == (4, 12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(map=["S.x", "..G"]), r"unknown map character 'x' at row 0, column 2; expected one of S G # H C \. or an ASCII"),
        (dict(map=["S.²", "..G"]), r"unknown map character '²' at row 0, column 2"),
        (dict(map=["S..", ".٣G"]), r"unknown map character '٣' at row 1, column 1"),
        (dict(map=["²12", "S.G"]), r"unknown map character '²' at row 0, column 0"),  # not a wind header
        (dict(map="S²G"), r"unknown map character '²' at row 0, column 1"),
        (dict(map="maps/x.map"), r"map file 'maps/x.map' must be a \.txt file of map rows, got suffix '\.map'"),
        (dict(map="/tmp/foo.png"), r"map file '/tmp/foo.png' must be a \.txt file"),
        (dict(map="x.map"), r"map file 'x.map' must be a \.txt file"),
        (dict(map="nosuchfile.txt"), r"map file 'nosuchfile.txt' does not exist"),
        (dict(map=["...", "..G"]), r"map has no start cell 'S'"),
        (dict(map=["S..", ".G"]), r"row 1 has 2 characters, row 0 has 3"),
        (dict(map=["12", "S.G"]), r"wind header has 2 digits but the map has 3 columns"),
        (dict(map="nosuchmap"), r"no built-in map named 'nosuchmap'"),
        (dict(map="missing/file.txt"), r"map file 'missing/file.txt' does not exist"),
        (dict(map=["S.G"], slip=1.5), r"slip must lie in \[0, 1\], got 1.5"),
        (dict(map=["S.G"], slip=-0.1), r"slip must lie in \[0, 1\]"),
        (dict(map=["S.G"], obs_type="pixels"), r"obs_type must be one of"),
        (dict(map=["S.G"], gamma=1.1), r"gamma must lie in \[0, 1\]"),
        (dict(map=""), r"map is empty"),
        (dict(map=["S.G"], slip="hello"), r"^slip must be a number in \[0, 1\], got 'hello'$"),
        (dict(map=["S.G"], slip=True), r"^slip must be a number in \[0, 1\], got True$"),
        (dict(map=["S.G"], step_reward="abc"), r"^step_reward must be a finite number, got 'abc'$"),
        (dict(map=["S.G"], goal_reward=float("nan")), r"^goal_reward must be a finite number, got nan$"),
        (dict(map=["S.G"], gamma="x"), r"^gamma must be a number in \[0, 1\], got 'x'$"),
        (dict(map=["S.G"], cell_size="abc"), r"^cell_size must be an integer >= 1, got 'abc'$"),
        (dict(map=["S.G"], cell_size=2.5), r"^cell_size must be an integer >= 1, got 2\.5$"),
        (dict(map=["S.G"], render_mode="human"), r"^render_mode must be one of \(None, 'ansi', 'rgb_array'\), got 'human'$"),
    ],
)
def test_bad_input_is_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GridWorldEnv(**kwargs)


@pytest.mark.parametrize("env_id", ["mp/GridWorld-v0", "mp/CliffWalking-v0", "mp/FrozenLake8x8-v0", "mp/WindyGridWorld-v0", "mp/FourRooms-v0", "mp/Maze-v0"])
def test_P_dict_agrees_with_the_model(env_id):
    env = gym.make(env_id).unwrapped
    mdp = env.mdp
    P = mdp.dense_P()
    np.testing.assert_allclose(P.sum(axis=2), 1.0)
    for s in range(mdp.n_states):
        for a in range(4):
            row, reward = np.zeros(mdp.n_states), 0.0
            for p, s2, r, _ in env.P[s][a]:
                row[s2] += p
                reward += p * r
            np.testing.assert_allclose(row, P[s, a], atol=1e-12)
            assert reward == pytest.approx(mdp.R[s, a])


def test_frozenlake_model_equals_gymnasiums():
    ours = gym.make("mp/FrozenLake8x8-v0").unwrapped.mdp
    theirs = TabularMDP.from_gymnasium(gym.make("FrozenLake-v1", map_name="8x8"), gamma=ours.gamma)
    np.testing.assert_allclose(ours.dense_P(), theirs.dense_P(), atol=1e-12)
    np.testing.assert_allclose(ours.R, theirs.R, atol=1e-12)
    np.testing.assert_array_equal(ours.terminal, theirs.terminal)


def test_cliffwalking_model_equals_gymnasiums_up_to_action_order():
    ours = gym.make("mp/CliffWalking-v0").unwrapped.mdp
    theirs = TabularMDP.from_gymnasium(gym.make("CliffWalking-v1"), gamma=1.0)
    to_ours = [UP, RIGHT, DOWN, LEFT]  # Gymnasium's CliffWalking: 0 up, 1 right, 2 down, 3 left
    live = np.arange(36).tolist() + [36]  # cells the agent can stand on (cliff cells are absorbing here)
    for gym_a, a in enumerate(to_ours):
        np.testing.assert_allclose(ours.dense_P()[live, a], theirs.dense_P()[live, gym_a])
        np.testing.assert_allclose(ours.R[live, a], theirs.R[live, gym_a])


def test_non_ascii_digits_are_never_wind_but_ascii_digits_are():
    grid = load_map(["0120", "S..G", ".3.."])
    np.testing.assert_array_equal(grid.wind, [[0, 1, 2, 0], [0, 3, 2, 0]])  # a digit cell overrides the header
    assert "²".isdigit()  # why str.isdigit() is not the test
    with pytest.raises(ValueError, match="unknown map character '²'"):
        load_map(["S²G"])


@pytest.mark.parametrize(
    "text, is_path",
    [("S.G", False), ("S..G", False), ("S.#G", False), ("S..1", False), ("cliff", False), ("S...\n..G", False),
     ("x.txt", True), ("X.TXT", True), ("maps/x.map", True), ("/tmp/foo.png", True), ("a\\b", True), ("S.G/", True),
     ("cliff.map", True), ("S.Gx", True)],
)
def test_which_strings_are_paths(text, is_path):
    """The rule of envs.grid_map's docstring: a separator or a file suffix that is not made of map characters."""
    assert looks_like_path(text) is is_path


def test_map_files_load_from_str_and_path_and_must_be_txt(tmp_path):
    good = tmp_path / "m.txt"
    good.write_text("S.\n.G\n")
    assert load_map(str(good)).rows() == load_map(good).rows() == ["S.", ".G"]
    bad = tmp_path / "m.map"
    bad.write_text("S.\n.G\n")  # the content would parse, but the suffix says it is not a map file
    for form in (bad, str(bad)):
        with pytest.raises(ValueError, match=r"must be a \.txt file"):
            load_map(form)
    with pytest.raises(ValueError, match="does not exist"):
        load_map(tmp_path / "missing.txt")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(size="abc"), r"^size must be an integer >= 5, got 'abc'$"),
        (dict(size=7.0), r"^size must be an integer >= 5, got 7\.0$"),
        (dict(size=3), r"^size must be an integer >= 5, got 3$"),
        (dict(seed="abc"), r"^seed must be an integer >= 0, got 'abc'$"),
        (dict(seed=-1), r"^seed must be an integer >= 0, got -1$"),
        (dict(loops="abc"), r"^loops must be a number in \[0, 1\], got 'abc'$"),
        (dict(loops=1.5), r"^loops must lie in \[0, 1\], got 1\.5$"),
        (dict(slip="hello"), r"^slip must be a number in \[0, 1\], got 'hello'$"),
        (dict(map="cliff"), r"MazeEnv makes its own map"),
    ],
)
def test_maze_arguments_are_checked_with_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MazeEnv(**kwargs)


def test_slip_sends_the_agent_sideways_with_the_stated_probabilities():
    env = GridWorldEnv(["...", ".S.", "..."], slip=0.3)
    centre = 4
    nxt, prob = env.mdp.transitions(centre, RIGHT)
    probs = dict(zip(nxt.tolist(), prob.tolist()))
    assert probs == pytest.approx({5: 0.7, 7: 0.15, 1: 0.15})  # right, down, up; never left
    # the simulator draws from the same distribution
    env.reset(seed=1)
    counts = {1: 0, 5: 0, 7: 0}
    n = 20000
    for _ in range(n):
        env.s = centre
        s2, *_ = env.step(RIGHT)
        counts[s2] += 1
    for s2, p in probs.items():
        assert abs(counts[s2] / n - p) < 4 * np.sqrt(p * (1 - p) / n)


def test_wind_pushes_up_from_the_starting_column_and_stops_at_walls_and_edges():
    env = GridWorldEnv(["0120", "....", "....", "....", "S..G"])
    env.reset()
    s, *_ = env.step(RIGHT)  # from column 0 (wind 0) to column 1, no push
    assert divmod(s, 4) == (3, 1)
    s, *_ = env.step(RIGHT)  # from column 1 (wind 1): lands in column 2, pushed up 1
    assert divmod(s, 4) == (2, 2)
    s, *_ = env.step(DOWN)  # from column 2 (wind 2): down 1, up 2
    assert divmod(s, 4) == (1, 2)
    s, *_ = env.step(UP)  # from column 2 (wind 2): up 1 then 2 more, capped by the top edge
    assert divmod(s, 4) == (0, 2)
    walled = GridWorldEnv(["#...", "....", "S2.G"])
    walled.reset()
    s, *_ = walled.step(RIGHT)  # column 0 has no wind
    s, *_ = walled.step(LEFT)  # from the wind-2 cell: left to column 0, pushed up once, stopped by '#'
    assert divmod(s, 4) == (1, 0)


def test_windy_gridworld_optimal_path_is_15_steps():
    """Sutton & Barto, Example 6.5: the optimal episode takes 15 steps."""
    from agents.tabular.dp import value_iteration

    env = gym.make("mp/WindyGridWorld-v0").unwrapped
    solution = value_iteration(env.mdp)
    assert solution.V[env.starts[0]] == pytest.approx(-15.0)


def test_cliff_costs_100_and_sends_back_to_start_without_ending():
    env = gym.make("mp/CliffWalking-v0")
    start, _ = env.reset(seed=0)
    s, r, terminated, truncated, _ = env.step(RIGHT)
    assert (s, r, terminated, truncated) == (start, -100.0, False, False)
    s, r, terminated, _, _ = env.step(UP)
    assert r == -1.0 and not terminated


def test_goal_and_hole_end_the_episode_with_their_rewards():
    env = GridWorldEnv(["SHG"], goal_reward=5.0, hole_reward=-3.0, step_reward=-1.0)
    env.reset()
    assert env.step(RIGHT)[1:3] == (-3.0, True)
    env2 = GridWorldEnv(["S.G"], goal_reward=5.0, step_reward=-1.0)
    env2.reset()
    assert env2.step(RIGHT)[1:3] == (-1.0, False)
    assert env2.step(RIGHT)[1:3] == (5.0, True)


def test_observation_types():
    for obs_type in ["index", "onehot", "coords", "rgb"]:
        env = gym.make("mp/GridWorld-v0", obs_type=obs_type)
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        obs, *_ = env.step(RIGHT)
        assert env.observation_space.contains(obs)
        s = env.unwrapped.s
        if obs_type == "onehot":
            assert obs.argmax() == s and obs.sum() == 1
        elif obs_type == "coords":
            np.testing.assert_array_equal(obs, divmod(s, env.unwrapped.ncol))
        elif obs_type == "rgb":
            k = env.unwrapped.cell_size
            r, c = divmod(s, env.unwrapped.ncol)
            assert obs.dtype == np.uint8 and obs.shape == (5 * k, 6 * k, 3)
            centre = obs[r * k + k // 2, c * k + k // 2]
            np.testing.assert_array_equal(centre, [222, 40, 40])  # the agent's colour


def test_rendering():
    env = gym.make("mp/FourRooms-v0", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    text_env = gym.make("mp/CliffWalking-v0", render_mode="ansi")
    text_env.reset(seed=0)
    text_env.step(UP)
    text = text_env.render()
    assert "(up)" in text and text.count("@") == 1 and "C" in text


BAD_ACTIONS = [4, -1, 1.5, 2.0, np.float64(2.0), True, False, np.bool_(True), "left", "1", None, [1], np.array([1]),
               np.array(2.0)]


@pytest.mark.parametrize("env_class", [GridWorldEnv, MazeEnv])
@pytest.mark.parametrize("action", BAD_ACTIONS, ids=repr)
def test_only_integer_actions_in_range_are_accepted(env_class, action):
    env = env_class(["S.G"]) if env_class is GridWorldEnv else env_class(size=5)
    env.reset()
    # Discrete(4) rejects these too, except bools: Gymnasium 1.4 lets True pass as the int 1; a bool
    # action is a bug in the caller all the same, so the environment refuses it.
    assert not env.action_space.contains(action) or isinstance(action, (bool, np.bool_))
    with pytest.raises(ValueError, match=r"action must be an integer in \[0, 4\), got"):
        env.step(action)
    assert env.lastaction is None  # nothing moved


@pytest.mark.parametrize("action", [2, np.int64(2), np.int8(2), np.uint16(2), np.array(2)], ids=repr)
def test_integer_actions_of_any_integer_type_are_accepted(action):
    env = GridWorldEnv(["S.G"])
    env.reset()
    assert env.action_space.contains(action)
    env.step(action)
    assert env.s == 1 and env.lastaction == 2 and type(env.lastaction) is int


def test_same_seed_same_trajectory():
    def run(seed):
        env = gym.make("mp/FrozenLake8x8-v0")
        env.reset(seed=seed)
        env.action_space.seed(seed)
        return [env.step(env.action_space.sample())[0] for _ in range(150)]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_several_starts_give_a_uniform_start_distribution():
    env = GridWorldEnv(["S.S", "..G"])
    np.testing.assert_allclose(env.mdp.initial[[0, 2]], 0.5)
    starts = {env.reset(seed=i)[0] for i in range(30)}
    assert starts == {0, 2}


def test_maze_is_seeded_connected_and_sized():
    big = generate_maze(100, seed=0)
    assert len(big) == 100 and all(len(r) == 100 for r in big)
    assert generate_maze(21, seed=5) == generate_maze(21, seed=5)
    assert generate_maze(21, seed=5) != generate_maze(21, seed=6)
    env = gym.make("mp/Maze-v0", size=100).unwrapped
    assert env.mdp.n_states == 10_000
    # every free cell reaches the goal: breadth-first search over the model's edges
    P = env.mdp.P
    free = np.flatnonzero(~env.mdp.terminal)
    goal = int(np.flatnonzero(env.grid.cells.ravel() == "G")[0])
    reached = {goal}
    frontier = [goal]
    pred = {}
    rows, cols = P.nonzero()
    for r, c in zip(rows // 4, cols):
        pred.setdefault(int(c), set()).add(int(r))
    while frontier:
        nxt = [p for s in frontier for p in pred.get(s, ()) if p not in reached]
        reached.update(nxt)
        frontier = nxt
    assert set(free.tolist()) <= reached
    with pytest.raises(ValueError, match="size must be an integer >= 5"):
        generate_maze(3)


def test_action_deltas_match_the_names():
    env = GridWorldEnv(["...", ".S.", "..."])
    for a, (dr, dc) in enumerate(ACTION_DELTAS):
        env.reset()
        s, *_ = env.step(a)
        assert divmod(s, 3) == (1 + dr, 1 + dc)


def test_trail_marks_visited_cells_on_rendered_frames_only():
    env = GridWorldEnv(["S...G"], render_mode="rgb_array", obs_type="rgb")
    env.trail = True
    env.reset()
    env.step(RIGHT)
    obs, *_ = env.step(RIGHT)
    frame = env.render()
    cell = frame.shape[0]
    from envs.render import TRAIL

    centre = lambda image, col, k: image[k // 2, col * k + k // 2]  # noqa: E731
    for col in (0, 1):  # visited before
        np.testing.assert_array_equal(centre(frame, col, cell), TRAIL)
    assert not np.array_equal(centre(frame, 3, cell), TRAIL)  # not visited
    assert not np.array_equal(centre(obs, 0, env.cell_size), TRAIL)  # observations stay clean
    env.reset()
    assert not np.array_equal(centre(env.render(), 0, cell), TRAIL)  # a new episode starts clean
