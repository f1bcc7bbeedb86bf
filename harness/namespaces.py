"""Per-test namespaces: named after the run, labelled as the harness's, removed afterwards."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness.kube import Kube
from harness.labels import MANAGED_BY, MANAGER

RUN_LABEL = "kube-harness/run-id"
TEST_LABEL = "kube-harness/test"


def namespace_name(run_id: str) -> str:
    """`kh-<run id>-<random>`: unique per test, grouped by run, a valid DNS label."""
    return f"kh-{run_id}-{secrets.token_hex(3)}"[:63]


def label_value(text: str) -> str:
    """Fold free text into a valid label value (63 chars, alphanumeric at both ends)."""
    value = re.sub(r"[^A-Za-z0-9._-]+", "_", text)[-63:]
    return value.strip("._-")


def create_namespace(
    kube: Kube, name: str, *, run_id: str, test: str, labels: Mapping[str, str] | None = None
) -> None:
    """Create namespace `name` as the harness's, for `test` of run `run_id`; with `labels`
    too (those a test's NetworkPolicies select namespaces by)."""
    labels = {
        **(labels or {}),
        MANAGED_BY: MANAGER,
        RUN_LABEL: run_id,
        TEST_LABEL: label_value(test),
    }
    kube.core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )


def is_harness_namespace(kube: Kube, name: str) -> bool:
    """True only for namespaces the harness created (the guard for faults and cleanup)."""
    try:
        labels = kube.core.read_namespace(name).metadata.labels or {}
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return labels.get(MANAGED_BY) == MANAGER


def delete_namespace(kube: Kube, name: str) -> None:
    """Delete a namespace (in the background); a missing one is not an error."""
    try:
        kube.core.delete_namespace(name, propagation_policy="Background")
    except ApiException as exc:
        if exc.status != 404:
            raise
