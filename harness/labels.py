"""The labels the harness puts on what it creates, in one place: the namespaces, the load
pods and the recorder that leaves those pods out of a service's timeline all read them here."""

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "kube-harness"
LOAD_LABEL = "kube-harness.io/load"  # the load run's name, on every object of the run
LOAD_ROLE_LABEL = "kube-harness.io/load-role"  # master or worker
