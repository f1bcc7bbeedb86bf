"""Deploying a service's manifests into a test namespace, and knowing within seconds when it
cannot work.

`deploy()` renders the manifests (harness.render, with the provider's images and the test
namespace), adds a NodePort Service of the harness's own where none reaches the pods that take
the load (harness.access), checks everything against the cluster before creating anything
(every kind served, a server-side dry run), gives each NodePort Service a free port from the
harness's range, applies everything with server-side apply and waits, through `wait_for`,
until every Deployment has rolled out. Pod states that waiting cannot fix (image pulls, crash loops,
missing config) abort the wait at once, naming the resource, the reason and the last state;
a timeout names the probe that has not passed. A failed deploy deletes what it created.

Where to look: `deployed` (deploy() and Deployed), `apply` (server-side apply, dry runs,
deletion), `node_ports` (free NodePorts, and waiting until they answer), `rollout` (judging
a rollout as it happens).
"""

from harness.deploy.apply import FIELD_MANAGER, Applier, apply_all
from harness.deploy.deployed import DEFAULT_TEARDOWN_TIMEOUT, Deployed, deploy
from harness.deploy.node_ports import (
    NodePortPool,
    NodePortRotation,
    is_node_port_service,
    node_ports_in_use,
    wait_node_ports_answer,
)
from harness.deploy.rollout import (
    DEFAULT_ROLLOUT_TIMEOUT,
    FATAL_WAITING_REASONS,
    FIXES,
    Problem,
    Verdict,
    deployment_and_pods,
    last_probe_failure,
    pod_verdict,
    rollout_verdict,
    wait_rolled_out,
)

__all__ = [
    "DEFAULT_ROLLOUT_TIMEOUT",
    "DEFAULT_TEARDOWN_TIMEOUT",
    "FATAL_WAITING_REASONS",
    "FIELD_MANAGER",
    "FIXES",
    "Applier",
    "Deployed",
    "NodePortPool",
    "NodePortRotation",
    "Problem",
    "Verdict",
    "apply_all",
    "deploy",
    "deployment_and_pods",
    "is_node_port_service",
    "last_probe_failure",
    "node_ports_in_use",
    "pod_verdict",
    "rollout_verdict",
    "wait_node_ports_answer",
    "wait_rolled_out",
]
