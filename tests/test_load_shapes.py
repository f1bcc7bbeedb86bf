"""The load shapes' promises (pure logic) and their validation."""

from pathlib import Path

import pytest
import yaml

from harness.errors import InvalidConfiguration
from harness.load.shapes import Constant, Ramp, Spike, Step, parse_shape, shape_from_spec

DATA = Path(__file__).parent / "data" / "load"


def test_constant_holds_its_users_then_ends():
    shape = Constant(users=5, seconds=10)
    assert [shape.users_at(t) for t in (0, 5, 9.9)] == [5, 5, 5]
    assert shape.tick(0) == (5, 5.0)
    assert shape.tick(10) is None


def test_ramp_climbs_in_a_straight_line_then_holds():
    shape = Ramp(users=10, ramp_time=5, hold=3)
    assert [shape.users_at(t) for t in (0, 1, 2.5, 5, 7)] == [0, 2, 5, 10, 10]
    assert shape.duration == 8
    # Locust spreads the start at the spawn rate, which is the ramp's slope
    assert shape.tick(1) == (10, 2.0)
    assert shape.tick(8) is None


def test_step_adds_users_each_step():
    shape = Step(step_users=3, step_time=2, steps=3)
    assert [shape.users_at(t) for t in (0, 1.9, 2, 4, 5.9)] == [3, 3, 6, 9, 9]
    assert shape.tick(6) is None


def test_spike_jumps_and_comes_back():
    shape = Spike(users=2, spike_users=8, spike_at=3, spike_time=2, seconds=8)
    assert [shape.users_at(t) for t in (0, 2.9, 3, 4.9, 5, 7)] == [2, 2, 8, 8, 2, 2]
    assert shape.spawn_rate_at(0) == 8.0


@pytest.mark.parametrize("spec", yaml.safe_load((DATA / "valid-shapes.yaml").read_text()))
def test_valid_specs_round_trip(spec):
    shape = shape_from_spec(spec)
    assert shape_from_spec(shape.to_spec()) == shape


@pytest.mark.parametrize(
    "case",
    yaml.safe_load((DATA / "invalid-shapes.yaml").read_text()),
    ids=lambda case: case["error"],
)
def test_invalid_specs_name_the_parameter_and_the_fix(case):
    with pytest.raises(InvalidConfiguration) as caught:
        shape_from_spec(case["spec"])
    assert case["error"] in str(caught.value)
    assert caught.value.fix


def test_command_line_form():
    assert parse_shape("step:step_users=2,step_time=1.5,steps=4") == Step(
        step_users=2, step_time=1.5, steps=4
    )
    with pytest.raises(InvalidConfiguration, match="'users' is not name=value"):
        parse_shape("constant:users")
    with pytest.raises(InvalidConfiguration, match="users='many' is invalid"):
        parse_shape("constant:users=many,seconds=3")
