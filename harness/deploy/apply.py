"""Server-side apply, dry runs and deletion of manifest objects, as the harness's field
manager."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from harness.deploy.node_ports import NodePortPool, is_node_port_service
from harness.errors import InvalidConfiguration
from harness.kube import API_NOT_UP, Kube
from harness.render import Object, describe
from harness.wait import Pending, wait_for

FIELD_MANAGER = "kube-harness"


def _api_message(exc: ApiException) -> str:
    try:
        return json.loads(exc.body or "{}").get("message") or str(exc.reason)
    except ValueError:
        return str(exc.body or exc.reason)


class Applier:
    """Server-side apply, dry runs and deletion of manifest objects in one cluster."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.dynamic = kube.dynamic

    def resource(self, obj: Mapping[str, Any]) -> Any:
        """The API resource serving `obj`'s kind.

        Raises:
            InvalidConfiguration: the cluster does not serve that kind (a typo, or a CRD that
                is not installed).
        """
        try:
            return self.dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        except ResourceNotFoundError:
            raise InvalidConfiguration(
                f"{describe(obj)}: kind {obj['kind']!r} of {obj['apiVersion']!r} is not served "
                "by this cluster",
                fix="check the spelling of kind and apiVersion, or install the CRD first",
            ) from None

    def apply(self, obj: Object, *, dry_run: bool = False) -> None:
        """Server-side apply `obj` as the harness's field manager, fields checked strictly.

        Raises:
            ApiException: the API server refused it.
        """
        extra = {"dry_run": "All"} if dry_run else {}
        self.dynamic.server_side_apply(
            self.resource(obj),
            body=obj,
            namespace=obj["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            query_params=[("fieldValidation", "Strict")],
            **extra,
        )

    def exists(self, obj: Mapping[str, Any]) -> bool:
        try:
            self.dynamic.get(
                self.resource(obj),
                name=obj["metadata"]["name"],
                namespace=obj["metadata"].get("namespace"),
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def delete(self, objects: Sequence[Object], *, timeout: float) -> None:
        """Delete objects (dependents first, pods included) and wait until they are gone."""
        for obj in reversed(objects):
            try:
                self.dynamic.delete(
                    self.resource(obj),
                    name=obj["metadata"]["name"],
                    namespace=obj["metadata"].get("namespace"),
                    propagation_policy="Foreground",
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise

        def all_gone() -> bool | Pending:
            left = [describe(o) for o in objects if self.exists(o)]
            return Pending("still there: " + ", ".join(left)) if left else True

        wait_for(
            all_gone,
            what="deleted objects to disappear",
            timeout=timeout,
            interval=1,
            transient=API_NOT_UP,
        )


def _port_taken(exc: ApiException) -> bool:
    return exc.status == 422 and "already allocated" in _api_message(exc)


def _rejected(obj: Mapping[str, Any], exc: ApiException) -> InvalidConfiguration:
    return InvalidConfiguration(
        f"{describe(obj)} is refused by the API server ({exc.status}): {_api_message(exc)}",
        fix="fix the manifest field named above",
    )


def apply_all(
    applier: Applier, objects: Sequence[Object], pool: NodePortPool, *, dry_run: bool
) -> None:
    """Apply objects in order; a NodePort taken meanwhile is swapped for another free one.

    Raises:
        InvalidConfiguration: the API server refused an object.
    """
    for obj in objects:
        while True:
            try:
                applier.apply(obj, dry_run=dry_run)
                break
            except ApiException as exc:
                if is_node_port_service(obj) and _port_taken(exc):
                    pool.assign(obj)  # another deploy won the race for that port
                elif 400 <= (exc.status or 0) < 500:
                    raise _rejected(obj, exc) from None
                else:
                    raise
