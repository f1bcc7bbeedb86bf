"""Pass/fail thresholds for a load run (Locust has none of its own).

An `SLO` is a declarative set of limits; `evaluate` turns it into one `Verdict` per limit,
each with the measured value and the limit. When the load generator saturated its CPU, a
limit the run missed is "inconclusive", not "fail": the service is not to blame.

Example (YAML, see tests/data/load/valid-slo.yaml):
    error_rate: 1%      # at most 1% failed requests (or 0.01)
    p95: 250ms          # 95th percentile latency (ms, s or a number of ms)
    p99: 1s
    min_rps: 20         # average requests per second over the run
    endpoints:          # the same limits for single endpoints ("/work" means GET /work)
      /work: {p95: 800ms}
      POST /orders: {error_rate: 0%}
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.errors import InvalidConfiguration
from harness.load.merge import CPU_SATURATION_PERCENT
from harness.load.result import EndpointStats, LoadResult
from harness.user_files import read_yaml

Status = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class Verdict:
    """One limit judged: what was measured, the limit, and the outcome."""

    name: str
    measured: float | None
    limit: float
    unit: str
    status: Status
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def __str__(self) -> str:
        measured = "nothing measured" if self.measured is None else _show(self.measured, self.unit)
        text = f"{self.name}: {measured} (limit {_show(self.limit, self.unit)}): {self.status}"
        return f"{text} - {self.note}" if self.note else text


class SLOViolation(AssertionError):
    """A load run missed its SLO; the message lists every verdict."""


@dataclass(frozen=True, kw_only=True)
class SLO:
    """Limits for a load run; leave a limit None to not judge it.

    Args:
        max_error_rate: highest share of failed requests, 0..1.
        max_p95_ms: highest 95th percentile latency over all requests, ms.
        max_p99_ms: highest 99th percentile latency, ms.
        min_rps: lowest average throughput, requests per second.
        endpoints: limits for single endpoints, keyed "/path" (GET) or "METHOD /path"
            by their Locust name.

    Raises:
        InvalidConfiguration: no limit given, or a limit out of range.
    """

    max_error_rate: float | None = None
    max_p95_ms: float | None = None
    max_p99_ms: float | None = None
    min_rps: float | None = None
    endpoints: Mapping[str, SLO] = field(default_factory=dict)

    def __post_init__(self) -> None:
        limits = {k: v for k, v in vars(self).items() if v is not None and k != "endpoints"}
        if not limits and not self.endpoints:
            raise InvalidConfiguration(
                "SLO has no limits", fix=f"set at least one of {', '.join(YAML_KEYS.values())}"
            )
        for name, value in limits.items():
            valid = isinstance(value, int | float) and math.isfinite(value) and value >= 0
            if name == "max_error_rate":
                valid = valid and value <= 1
            if not valid:
                raise InvalidConfiguration(
                    f"SLO limit {name}={value!r} is out of range",
                    fix="error_rate is 0..1 (or a percentage like 1%); latencies and rates >= 0",
                )

    @classmethod
    def from_mapping(cls, spec: Mapping[str, Any], *, source: str = "SLO") -> SLO:
        """Build from the YAML form: error_rate, p95, p99, min_rps, endpoints (module docstring).

        Raises:
            InvalidConfiguration: unknown key or unreadable value, naming `source`.
        """
        spec = _mapping(spec, source, allowed=[*YAML_KEYS.values(), "endpoints"])
        endpoints = spec.pop("endpoints", None) or {}
        if not isinstance(endpoints, Mapping):
            raise InvalidConfiguration(
                f"{source}: endpoints must map endpoint names to limits",
                fix="write e.g. endpoints: {/work: {p95: 800ms}}",
            )
        per_endpoint = {}
        for name, limits in endpoints.items():
            where = f"{source}: endpoints: {name}"
            values = _limits(limits, where)
            with _named(where):
                per_endpoint[str(name)] = cls(**values)
        values = _limits(spec, source)
        with _named(source):
            return cls(**values, endpoints=per_endpoint)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The YAML form as a JSON Schema (part of the resilience spec's schema)."""
        duration = {
            "type": ["number", "string"],
            "minimum": 0,
            "pattern": r"^\s*[0-9.]+\s*(ms|s)?\s*$",
            "description": "a latency: 250ms, 1.5s, or a number of milliseconds",
        }
        limits = {
            "error_rate": {
                "type": ["number", "string"],
                "minimum": 0,
                "pattern": r"^\s*[0-9.]+\s*%?\s*$",
                "description": "the highest error rate: 1% or 0.01",
            },
            "p95": duration,
            "p99": duration,
            "min_rps": {"type": "number", "minimum": 0, "description": "the lowest throughput"},
        }
        per_endpoint = {"type": "object", "properties": limits, "additionalProperties": False}
        return {
            "type": "object",
            "description": "Limits on the load's results, overall and per endpoint.",
            "properties": {
                **limits,
                "endpoints": {"type": "object", "additionalProperties": per_endpoint},
            },
            "additionalProperties": False,
        }

    @classmethod
    def load(cls, path: Path) -> SLO:
        """Read an SLO from a YAML file.

        Raises:
            InvalidConfiguration: missing file, bad YAML, or bad limits.
        """
        spec = read_yaml(path, "SLO file", fix="give the path of a YAML mapping")
        return cls.from_mapping(spec, source=str(path))

    def evaluate(self, result: LoadResult) -> list[Verdict]:
        """One verdict per limit set (overall, then per endpoint), then one on the generator
        when it saturated."""
        verdicts = self._judge(result.total, "", reliable=result.reliable)
        for key, limits in self.endpoints.items():
            method, _, name = key.rpartition(" ")
            stats = next(
                (e for e in result.endpoints if e.name == name and e.method == (method or "GET")),
                _NOTHING,
            )
            verdicts += limits._judge(stats, f"{method or 'GET'} {name} ", result.reliable)
        if not result.reliable:
            peaks = [w.peak_busy for w in result.generator.workers if w.peak_busy is not None]
            peak = max(peaks, default=None)
            verdicts.append(
                Verdict(
                    "load generator busy",
                    peak,
                    CPU_SATURATION_PERCENT,
                    "%",
                    "inconclusive",
                    result.unreliable_reason or "",
                )
            )
        return verdicts

    def _judge(self, total: EndpointStats, prefix: str, reliable: bool) -> list[Verdict]:
        checks: list[tuple[str, float | None, float | None, str, bool]] = [
            (
                "error rate",
                total.error_rate if total.requests else None,
                self.max_error_rate,
                "ratio",
                True,
            ),
            ("p95 latency", total.p95_ms, self.max_p95_ms, "ms", True),
            ("p99 latency", total.p99_ms, self.max_p99_ms, "ms", True),
            ("throughput", total.rps if total.requests else None, self.min_rps, "req/s", False),
        ]
        verdicts = []
        for name, measured, limit, unit, is_maximum in checks:
            if limit is None:
                continue
            within = measured is not None and (
                measured <= limit if is_maximum else measured >= limit
            )
            status: Status = "pass" if within else "fail"
            note = "" if measured is not None else "no request completed"
            if not within and not reliable:
                status, note = "inconclusive", "the load generator saturated, see below"
            verdicts.append(Verdict(prefix + name, measured, limit, unit, status, note))
        return verdicts

    def check(self, result: LoadResult) -> list[Verdict]:
        """Evaluate and raise when any verdict is not a pass.

        Raises:
            SLOViolation: lists every verdict and the run's summary.
        """
        verdicts = self.evaluate(result)
        if not all(v.passed for v in verdicts):
            raise SLOViolation(format_verdicts(verdicts) + "\n" + result.summary())
        return verdicts


YAML_KEYS = {
    "max_error_rate": "error_rate",
    "max_p95_ms": "p95",
    "max_p99_ms": "p99",
    "min_rps": "min_rps",
}


# What an endpoint that received no requests measured.
_NOTHING = EndpointStats(
    method=None, name="", requests=0, failures=0, avg_ms=0.0, min_ms=None, max_ms=0.0,
    p50_ms=None, p95_ms=None, p99_ms=None, rps=0.0,
)  # fmt: skip


def format_verdicts(verdicts: list[Verdict]) -> str:
    """One line per verdict, failures first, for assertion messages and the CLI."""
    order = {"fail": 0, "inconclusive": 1, "pass": 2}
    return "\n".join(str(v) for v in sorted(verdicts, key=lambda v: order[v.status]))


def _mapping(spec: Any, source: str, *, allowed: list[str]) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise InvalidConfiguration(
            f"{source}: expected a mapping of limits, got {type(spec).__name__}",
            fix=f"write limits as key: value lines with keys {', '.join(allowed)}",
        )
    unknown = sorted(set(map(str, spec)) - set(allowed))
    if unknown:
        raise InvalidConfiguration(
            f"{source}: unknown SLO key(s) {', '.join(unknown)}", fix=f"use {', '.join(allowed)}"
        )
    return dict(spec)


@contextmanager
def _named(source: str) -> Iterator[None]:
    """An SLO's own refusal (no limits, a limit out of range), naming where it was read."""
    try:
        yield
    except InvalidConfiguration as exc:
        raise InvalidConfiguration(f"{source}: {exc.message}", fix=exc.fix) from None


def _limits(spec: Any, source: str) -> dict[str, float]:
    """The SLO's keyword arguments from YAML limits (no endpoints)."""
    parsers = {"error_rate": _rate, "p95": _duration_ms, "p99": _duration_ms, "min_rps": _float}
    values = {}
    for key, raw in _mapping(spec, source, allowed=list(YAML_KEYS.values())).items():
        try:
            values[{v: k for k, v in YAML_KEYS.items()}[key]] = parsers[key](raw)
        except ValueError:
            raise InvalidConfiguration(
                f"{source}: {key}: cannot read {raw!r}",
                fix="error_rate like 1% or 0.01; p95/p99 like 250ms or 1.5s; min_rps a number",
            ) from None
    return values


def _show(value: float, unit: str) -> str:
    if unit == "ratio":
        return f"{value:.2%}"
    if unit == "%":
        return f"{value:.0f}%"
    if unit == "req/s":
        return f"{value:.1f} {unit}"
    # A word (requests, pairs) is spaced from its count; a symbol (ms, s) is not.
    return f"{value:.0f} {unit}" if len(unit) > 2 else f"{value:.0f}{unit}"


def _float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError(raw)
    return float(raw)


def _rate(raw: Any) -> float:
    if isinstance(raw, str) and raw.strip().endswith("%"):
        return float(raw.strip()[:-1]) / 100
    return _float(raw)


def _duration_ms(raw: Any) -> float:
    if isinstance(raw, str):
        match = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s)?\s*", raw)
        if not match:
            raise ValueError(raw)
        return float(match[1]) * (1000 if match[2] == "s" else 1)
    return _float(raw)
