"""Task spaces: normalisation, sampling, grids, OOD ranges, and tasks that change real dynamics."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gymnasium")

from edgeloop.sims import BUILTIN, TaskSpace, TaskSpaceError, load_task_space


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_built_in_parameter_really_changes_the_dynamics(name):
    load_task_space(name).check_dynamics()


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_normalising_round_trips_and_maps_the_range_onto_the_unit_cube(name):
    space = load_task_space(name)
    units = np.random.default_rng(0).random((50, space.dim))
    tasks = space.denormalise(units)
    np.testing.assert_allclose(space.normalise(tasks), units, atol=1e-12)
    lows = np.array([p.low for p in space.parameters])
    highs = np.array([p.high for p in space.parameters])
    np.testing.assert_allclose(space.denormalise(np.zeros((1, space.dim)))[0], lows)
    np.testing.assert_allclose(space.denormalise(np.ones((1, space.dim)))[0], highs)
    assert ((tasks >= lows) & (tasks <= highs)).all()


def test_a_log_scale_parameter_puts_the_geometric_mean_in_the_middle():
    space = load_task_space("mountaincar")
    (middle,) = space.denormalise(np.array([[0.5]]))[0]
    assert middle == pytest.approx(np.sqrt(0.0009 * 0.003))


def test_sampling_is_seeded_and_the_grid_covers_the_corners():
    space = load_task_space("pendulum")
    a = space.sample(8, np.random.default_rng(3))
    b = space.sample(8, np.random.default_rng(3))
    assert a.shape == (8, 2) and np.array_equal(a, b)
    grid = space.grid(10)
    assert grid.shape == (100, 2)
    assert [0.5, 0.5] in grid.tolist() and [2.0, 1.5] in grid.tolist()


def test_a_task_is_written_onto_the_environment():
    space = load_task_space("cartpole")
    env = space.make_env([1.2, 0.3, 7.0])
    assert space.task_of(env).tolist() == pytest.approx([1.2, 0.3, 7.0])
    assert env.unwrapped.polemass_length == pytest.approx(0.36)  # CartPole's derived value


def test_a_task_outside_its_range_is_refused_unless_evaluated_out_of_distribution():
    space = load_task_space("pendulum")
    with pytest.raises(TaskSpaceError, match=r"mass = 2\.3 is outside \[0\.5, 2\]"):
        space.check([2.3, 1.0])
    assert space.check([2.3, 1.0], ood=True).tolist() == [2.3, 1.0]
    assert [p.high for p in space.ood().parameters] == [2.5, 1.8]
    with pytest.raises(TaskSpaceError, match="has 2 values"):
        space.check([1.0])


def test_an_unknown_task_space_suggests_close_names():
    with pytest.raises(TaskSpaceError, match="did you mean pendulum"):
        load_task_space("pendulm")


def test_a_user_defines_a_space_in_yaml_for_an_environment_not_built_in(tmp_path):
    path = tmp_path / "mountaincar-discrete.yaml"
    path.write_text(
        "name: mountaincar-discrete\n"
        "env_id: MountainCar-v0\n"
        "parameters:\n"
        "  - {name: force, attribute: force, low: 0.0008, high: 0.0015}\n"
        "  - {name: gravity, attribute: gravity, low: 0.002, high: 0.003, log: true}\n"
    )
    space = load_task_space(path)
    assert space.names == ["force", "gravity"] and space.dim == 2
    assert space.env_id not in {s.env_id for s in BUILTIN.values()}
    space.check_dynamics()
    env = space.make_env([0.0015, 0.002])
    assert space.task_of(env).tolist() == [0.0015, 0.002]


def test_a_parameter_the_env_does_not_have_is_named_with_close_matches():
    space = TaskSpace(
        name="typo",
        env_id="Pendulum-v1",
        parameters=({"name": "mass", "attribute": "mass", "low": 0.5, "high": 2.0},),
    )
    with pytest.raises(TaskSpaceError, match="has no attribute 'mass'"):
        space.make_env()


def test_a_parameter_that_changes_nothing_is_caught():
    space = TaskSpace(
        name="inert",
        env_id="Pendulum-v1",
        parameters=({"name": "seed_hint", "attribute": "render_mode", "low": 1, "high": 2},),
    )
    with pytest.raises(TaskSpaceError, match="does not change its dynamics"):
        space.check_dynamics()


def test_a_bad_yaml_space_names_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nenv_id: Pendulum-v1\nparameters:\n"
        "  - {name: m, attribute: m, low: 2.0, high: 1.0}\n"
    )
    with pytest.raises(TaskSpaceError, match=r"low 2\.0 must be below high 1\.0"):
        load_task_space(path)
