"""An experiment's verdicts, each failed one explained in one plain sentence.

After a run the harness judges chaoslib's journal, the timeline and the load record. Every
failed verdict's note is made of sentences (harness.chaos.explain), each saying what broke and,
where the record tells, why. The checks are kept most telling first (the steady state before
the fault, failed activities, method probes, the steady state after, recovery, the SLO, what
was left behind), and `ExperimentEvidence` heads the pytest failure and summary.txt with the
first sentence of the first one that failed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chaoslib.hypothesis import within_tolerance

from harness.assertions import BehaviourViolation, Check, Evidence, slo_checks
from harness.chaos.explain import (
    JOIN,
    action_sentence,
    completion_sentence,
    probe_sentence,
    slo_sentence,
    slo_source,
)
from harness.chaos.facts import RunFacts, Timing
from harness.kube import Kube
from harness.load import SLO, LoadResult, Verdict
from harness.scenario import wait_for_check

SUMMARY_FILE = "summary.txt"
RUN_KINDS = ("Mark", "Pod", "EndpointSlice", "Event")


def sentence_check(name: str, sentences: list[str], since: float, until: float) -> Check:
    """A verdict counting problems, each told in a sentence (none: it passed)."""
    verdict = Verdict(
        name, len(sentences), 0, "", "fail" if sentences else "pass", JOIN.join(sentences)
    )
    return Check(verdict, since, until, RUN_KINDS)


def explained(check: Check, sentence: str) -> Check:
    """`check` with `sentence` leading its note (a passed check as it is)."""
    if check.passed:
        return check
    note = sentence + (f" ({check.verdict.note})" if check.verdict.note else "")
    return replace(check, verdict=replace(check.verdict, note=note))


def slo_verdicts(
    slo: SLO,
    load: LoadResult,
    *,
    overridden: Iterable[str],
    what: str,
    why_failed: str | None = None,
) -> list[Check]:
    """The SLO over a load run (harness.assertions.slo_checks), each failed limit explained;
    `overridden` names the SLO fields the experiment set (the others are the spec's), and
    `why_failed` what in the manifests makes requests fail under faults."""
    return [
        explained(
            check,
            slo_sentence(
                check.verdict,
                load,
                slo_source(check.verdict.name.rpartition(": ")[2], overridden),
                why_failed,
            ),
        )
        for check in slo_checks(slo, load, what=what)
    ]


def journal_checks(
    journal: Mapping[str, Any],
    configuration: Mapping[str, Any],
    facts: RunFacts,
    *,
    may_fail: tuple[str, ...] = (),
    since: float,
    until: float,
) -> list[Check]:
    """The verdicts the journal holds, most telling first: the steady state before, the
    activities that failed, method probes outside their tolerance, the steady state after."""
    states = journal.get("steady_states") or {}

    def hypothesis(when: str, lead: str) -> Check:
        state = states.get(when)
        if state is None:
            problems = ["the hypothesis was not checked: the run stopped before it"]
        else:
            problems = [
                lead + probe_sentence(facts, p)
                for p in state.get("probes", [])
                if not p.get("tolerance_met")
            ]
            if not state.get("steady_state_met") and not problems:
                problems = [lead + "the steady state was not met"]
        return sentence_check(
            f"steady-state probes not met {when} the method", problems, since, until
        )

    failed, outside = [], []
    for run in [*(journal.get("run") or []), *(journal.get("rollbacks") or [])]:
        activity = run.get("activity") or {}
        if run.get("status") != "succeeded":
            if activity.get("name") not in may_fail:
                failed.append(action_sentence(run))
        elif (
            activity.get("type") == "probe"
            and "tolerance" in activity
            and not within_tolerance(
                activity["tolerance"], run.get("output"), configuration=dict(configuration)
            )
        ):
            outside.append(probe_sentence(facts, run))
    return [
        hypothesis("before", "before the fault, "),
        sentence_check("activities failed", failed, since, until),
        sentence_check("method probes outside their tolerance", outside, since, until),
        hypothesis("after", "after the fault, "),
    ]


def completion_check(journal: Mapping[str, Any], since: float, until: float) -> Check:
    """Whether chaoslib completed the run (last in line: the others say why it did not)."""
    problems = [] if journal.get("status") == "completed" else [completion_sentence(journal)]
    return sentence_check("chaos run not completed", problems, since, until)


def ready_again(
    kube: Kube, namespace: str, deployment: str, *, since: float, within: Timing
) -> Check:
    """Wait until every replica is Ready and available after the rollbacks; judge the time."""

    def check() -> Check:
        status = kube.apps.read_namespaced_deployment(deployment, namespace)
        want = status.spec.replicas or 0
        ready = status.status.ready_replicas or 0
        ok = want > 0 and ready >= want and not status.status.unavailable_replicas
        took = time.time() - since if ok else None
        in_time = took is not None and took <= within.seconds
        note = f"{ready}/{want} Ready" + (": scaled to zero, nothing serves" if not want else "")
        return Check(
            Verdict(
                f"{deployment} fully Ready after the experiment",
                took,
                within.seconds,
                "s",
                "pass" if in_time else "fail",
                "" if in_time else (note if not ok else "Ready only after the time allowed"),
            ),
            since,
            since + within.seconds,
            ("Deployment", "Pod", "Mark"),
        )

    return wait_for_check(check, timeout=within.seconds, what=f"{deployment} to be fully Ready")


def headline(check: Check) -> str:
    """The sentence a failed check leads with."""
    return (check.verdict.note or str(check.verdict)).split(JOIN)[0]


def as_sentence(text: str) -> str:
    """`text` with a capital first letter and a full stop, for the head of a message."""
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


@dataclass
class ExperimentEvidence(Evidence):
    """Evidence of one experiment run, its checks most telling first: its failure and its
    summary.txt begin with the sentence of the first broken promise."""

    def summary(self) -> str:
        """The run in sentences: the first says what broke and why, one line per failed
        verdict follows."""
        bad = [c for c in self.checks if not c.passed]
        if not bad:
            return f"Every promise kept ({len(self.checks)} verdicts).\n{self.scenario}\n"
        lines = [as_sentence(headline(bad[0])), f"{self.scenario}: {len(bad)} promise(s) not kept"]
        lines += [f"- {c.verdict}" for c in bad]
        return "\n".join(lines) + "\n"

    def assert_all(self) -> None:
        __tracebackhide__ = True  # pytest shows the message, not this frame
        try:
            super().assert_all()
        except BehaviourViolation as exc:
            first = as_sentence(headline(next(c for c in self.checks if not c.passed)))
            raise BehaviourViolation(f"{first}\n{exc}") from None

    def write(self, directory: Path) -> Path:
        path = super().write(directory)
        (directory / SUMMARY_FILE).write_text(self.summary())
        return path
