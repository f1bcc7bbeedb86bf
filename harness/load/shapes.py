"""Load shapes: how many simulated users run at each moment of a load test.

Pure logic, no Locust import (importing Locust monkey-patches the importing process with
gevent). The Locust side (`harness/load/_shape_locustfile.py`, `loadtests/shapes.py`) turns
these into `LoadTestShape` classes; tests compare what Locust did with `users_at`.

Example:
    >>> Step(step_users=2, step_time=10, steps=3).users_at(25)
    6
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, ClassVar

from harness.errors import InvalidConfiguration

# Larger values are typos or attacks: no machine sends the load of more users, and no test
# waits out a longer run (the resilience spec has the same bounds).
MAX_USERS = 100_000
MAX_DURATION_S = 24 * 3600


@dataclass(frozen=True, kw_only=True)
class Shape:
    """Base of every shape: a duration, a promised user count over time, and Locust's tick."""

    kind: ClassVar[str] = ""

    @property
    def duration(self) -> float:
        """Seconds from start until the shape ends the test."""
        raise NotImplementedError

    def users_at(self, t: float) -> int:
        """The user count the shape promises `t` seconds after the start."""
        raise NotImplementedError

    def spawn_rate_at(self, t: float) -> float:
        """Users started or stopped per second while moving towards `users_at(t)`."""
        raise NotImplementedError

    def tick(self, t: float) -> tuple[int, float] | None:
        """What Locust's `LoadTestShape.tick` returns at run time `t`: None ends the test."""
        if t >= self.duration:
            return None
        return self.users_at(t), self.spawn_rate_at(t)

    def to_spec(self) -> dict[str, Any]:
        """A JSON-able mapping that `shape_from_spec` turns back into this shape."""
        return {"kind": self.kind, **asdict(self)}

    def _require(self, condition: bool, field: str, rule: str) -> None:
        if not condition:
            raise InvalidConfiguration(
                f"{self.kind} load shape: {field}={getattr(self, field)!r} is invalid ({rule})",
                fix=f"give {field} a value where {rule}; {self.kind} takes "
                + ", ".join(f.name for f in fields(self)),
            )

    def _check_number(self, *names: str, allow_zero: bool = False) -> None:
        rule = "a number >= 0" if allow_zero else "a number > 0"
        for name in names:
            value = getattr(self, name)
            valid = (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
                and (value >= 0 if allow_zero else value > 0)
            )
            self._require(valid, name, rule)

    def _check_user_count(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            self._require(
                isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                name,
                "a whole number >= 1",
            )
            self._require(value <= MAX_USERS, name, f"at most {MAX_USERS}")

    def _check_duration(self) -> None:
        """After the fields are checked: the whole shape lasts at most MAX_DURATION_S."""
        if self.duration > MAX_DURATION_S:
            raise InvalidConfiguration(
                f"{self.kind} load shape lasts {self.duration:g}s, more than {MAX_DURATION_S}s "
                "(24h)",
                fix="shorten it: a load run lasts at most 24h",
            )


@dataclass(frozen=True, kw_only=True)
class Constant(Shape):
    """`users` users for `seconds`, all started within the first second unless `spawn_rate` says."""

    kind: ClassVar[str] = "constant"
    users: int
    seconds: float
    spawn_rate: float | None = None

    def __post_init__(self) -> None:
        self._check_user_count("users")
        self._check_number("seconds")
        if self.spawn_rate is not None:
            self._check_number("spawn_rate")
        self._check_duration()

    @property
    def duration(self) -> float:
        return self.seconds

    def users_at(self, t: float) -> int:
        return self.users

    def spawn_rate_at(self, t: float) -> float:
        return self.spawn_rate or float(self.users)


@dataclass(frozen=True, kw_only=True)
class Ramp(Shape):
    """From 0 to `users` in a straight line over `ramp_time` seconds, then `hold` seconds more."""

    kind: ClassVar[str] = "ramp"
    users: int
    ramp_time: float
    hold: float = 0.0

    def __post_init__(self) -> None:
        self._check_user_count("users")
        self._check_number("ramp_time")
        self._check_number("hold", allow_zero=True)
        self._check_duration()

    @property
    def duration(self) -> float:
        return self.ramp_time + self.hold

    def users_at(self, t: float) -> int:
        return min(self.users, math.floor(self.users * t / self.ramp_time))

    def spawn_rate_at(self, t: float) -> float:
        return self.users / self.ramp_time

    def tick(self, t: float) -> tuple[int, float] | None:
        # Locust itself spreads the start of `users` over time at the spawn rate, which is
        # the ramp; telling it the final count once keeps the spawning smooth.
        if t >= self.duration:
            return None
        return self.users, self.spawn_rate_at(t)


@dataclass(frozen=True, kw_only=True)
class Step(Shape):
    """`step_users` more users every `step_time` seconds, `steps` times (starting with one step)."""

    kind: ClassVar[str] = "step"
    step_users: int
    step_time: float
    steps: int
    spawn_rate: float | None = None

    def __post_init__(self) -> None:
        self._check_user_count("step_users", "steps")
        self._check_number("step_time")
        if self.spawn_rate is not None:
            self._check_number("spawn_rate")
        self._require(
            self.step_users * self.steps <= MAX_USERS,
            "steps",
            f"step_users * steps is at most {MAX_USERS} users",
        )
        self._check_duration()

    @property
    def duration(self) -> float:
        return self.step_time * self.steps

    def users_at(self, t: float) -> int:
        step = min(self.steps - 1, max(0, math.floor(t / self.step_time)))
        return self.step_users * (step + 1)

    def spawn_rate_at(self, t: float) -> float:
        return self.spawn_rate or float(self.step_users)


@dataclass(frozen=True, kw_only=True)
class Spike(Shape):
    """`users` users for `seconds`, jumping to `spike_users` from `spike_at` for `spike_time`."""

    kind: ClassVar[str] = "spike"
    users: int
    spike_users: int
    spike_at: float
    spike_time: float
    seconds: float
    spawn_rate: float | None = None

    def __post_init__(self) -> None:
        self._check_user_count("users", "spike_users")
        self._check_number("spike_time", "seconds")
        self._check_number("spike_at", allow_zero=True)
        self._require(self.spike_users > self.users, "spike_users", "spike_users > users")
        self._require(
            self.spike_at + self.spike_time <= self.seconds,
            "seconds",
            "seconds >= spike_at + spike_time",
        )
        if self.spawn_rate is not None:
            self._check_number("spawn_rate")
        self._check_duration()

    @property
    def duration(self) -> float:
        return self.seconds

    def users_at(self, t: float) -> int:
        in_spike = self.spike_at <= t < self.spike_at + self.spike_time
        return self.spike_users if in_spike else self.users

    def spawn_rate_at(self, t: float) -> float:
        return self.spawn_rate or float(self.spike_users)


SHAPES: dict[str, type[Shape]] = {cls.kind: cls for cls in (Constant, Ramp, Step, Spike)}


def shape_from_spec(spec: Mapping[str, Any]) -> Shape:
    """Build a shape from `{"kind": "ramp", "users": 10, ...}` (YAML, JSON, CLI).

    Raises:
        InvalidConfiguration: unknown kind, unknown or missing parameter, bad value.
    """
    if not isinstance(spec, Mapping):
        raise InvalidConfiguration(
            f"load shape {spec!r} is not a mapping of parameters",
            fix='give e.g. {"kind": "constant", "users": 10, "seconds": 30}',
        )
    values = dict(spec)
    kind = values.pop("kind", None)
    cls = SHAPES.get(str(kind))
    if cls is None:
        raise InvalidConfiguration(
            f"load shape kind {kind!r} is not known",
            fix=f"use one of: {', '.join(SHAPES)}",
        )
    accepted = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(accepted))
    missing = [
        f.name
        for f in fields(cls)
        if f.name not in values and f.default is MISSING and f.default_factory is MISSING
    ]
    if unknown or missing:
        problems = [f"unknown parameter(s) {', '.join(unknown)}"] if unknown else []
        problems += [f"missing parameter(s) {', '.join(missing)}"] if missing else []
        raise InvalidConfiguration(
            f"{kind} load shape: {'; '.join(problems)}",
            fix=f"{kind} takes {', '.join(accepted)}",
        )
    return cls(**values)


def parse_shape(text: str) -> Shape:
    """Parse the command-line form `ramp:users=50,ramp_time=30,hold=60`.

    Raises:
        InvalidConfiguration: malformed text or invalid parameters.
    """
    kind, _, params = text.partition(":")
    spec: dict[str, Any] = {"kind": kind.strip()}
    for item in filter(None, (p.strip() for p in params.split(","))):
        name, sep, raw = item.partition("=")
        if not sep:
            raise InvalidConfiguration(
                f"load shape {text!r}: {item!r} is not name=value",
                fix="write KIND:name=value,name=value (e.g. constant:users=10,seconds=30)",
            )
        if name.strip() in spec:
            raise InvalidConfiguration(
                f"load shape {text!r}: {name.strip()!r} is given twice",
                fix="give each parameter once (the kind goes before the ':')",
            )
        spec[name.strip()] = _number(raw.strip())
    return shape_from_spec(spec)


def _number(raw: str) -> int | float | str:
    for convert in (int, float):
        try:
            return convert(raw)
        except ValueError:
            pass
    return raw  # left for the shape's own validation to reject, with its field name
