"""Load shapes for any locustfile: subclass one and set its parameters as class attributes.

    from shapes import StepShape          # locustfiles in loadtests/ (Locust puts it on sys.path)

    class Load(StepShape):
        step_users = 10                   # users added per step
        step_time = 30                    # seconds per step
        steps = 5

Parameters (seconds and users; see harness.load.shapes for the exact promise of each):
    ConstantShape: users, seconds, spawn_rate (default: all users within a second)
    RampShape:     users, ramp_time, hold
    StepShape:     step_users, step_time, steps, spawn_rate
    SpikeShape:    users, spike_users, spike_at, spike_time, seconds, spawn_rate

Bad parameters stop Locust at start with the parameter's name and the rule it broke.
These bases are abstract, so importing them into a locustfile does not select a shape;
defining a subclass does. Under `harness load run` / `harness.load`, pass the shape to the
harness instead (it adds its own shape class).
"""

from harness.load.locust_shape import ShapeFromAttributes
from harness.load.shapes import Constant, Ramp, Spike, Step


class ConstantShape(ShapeFromAttributes):
    """A fixed number of users for a fixed time."""

    abstract = True
    shape_type = Constant


class RampShape(ShapeFromAttributes):
    """A straight line from 0 to `users` over `ramp_time` seconds, then `hold` seconds."""

    abstract = True
    shape_type = Ramp


class StepShape(ShapeFromAttributes):
    """`step_users` more users every `step_time` seconds, `steps` times."""

    abstract = True
    shape_type = Step


class SpikeShape(ShapeFromAttributes):
    """A baseline of `users` with a burst to `spike_users` at `spike_at` for `spike_time`."""

    abstract = True
    shape_type = Spike
