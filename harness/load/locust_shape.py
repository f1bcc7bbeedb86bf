"""Locust `LoadTestShape` classes driven by `harness.load.shapes` (Locust side only).

`HarnessShape` is what the harness adds to a run (its shape comes from the environment);
`ShapeFromAttributes` is the base of the parameterised shapes in `loadtests/shapes.py`.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from typing import ClassVar

from locust import LoadTestShape
from locust.runners import MasterRunner

from harness.load._locust_entry import SHAPE_ENV
from harness.load.shapes import Shape, shape_from_spec


class _ShapeTicks(LoadTestShape):
    """Answers Locust's tick from a `Shape` and the time since the shape started."""

    abstract = True
    # --run-time stays the harness's hard bound; do not warn that it is ignored.
    use_common_options = True
    shape: Shape

    def tick(self) -> tuple[int, float] | None:
        tick = self.shape.tick(self.get_run_time())
        if tick is None and isinstance(self.runner, MasterRunner):
            # Locust would now quit, giving workers' last reports 0.5 s; stop first, which
            # waits until every worker has sent them (see _recorder.stop_gracefully).
            self.runner.stop()
        return tick


class ShapeFromAttributes(_ShapeTicks):
    """Base for shapes parameterised by class attributes named like the `Shape`'s fields.

    Example (in a locustfile):
        class Load(RampShape):
            users = 50
            ramp_time = 30
            hold = 60
    """

    abstract = True
    shape_type: ClassVar[type[Shape]]

    def __init__(self) -> None:
        super().__init__()
        given = {
            f.name: getattr(self, f.name) for f in fields(self.shape_type) if hasattr(self, f.name)
        }
        self.shape = shape_from_spec({"kind": self.shape_type.kind, **given})


class HarnessShape(_ShapeTicks):
    """The shape `harness.load` asked for, as a JSON spec in $HARNESS_LOAD_SHAPE."""

    def __init__(self) -> None:
        super().__init__()
        self.shape = shape_from_spec(json.loads(os.environ[SHAPE_ENV]))
