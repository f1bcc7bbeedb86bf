"""Service discovery: a client pod that finds the service by its DNS name, again and again.

The client (the harness's busybox, in the service's namespace, like any pod of a team's)
looks the Service's name up every `EVERY_S` and sends a request to the address the answer
gives, each on its own: a lookup that gets NXDOMAIN or no answer, or a request that fails,
is a moment the service could not be found or reached by its name. It runs a bounded
number of rounds, and its log, read with the kubelet's timestamps, is the record the
service-discovery scenario judges (harness.assertions.lookups_answered).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from kubernetes.client.exceptions import ApiException

from harness.images.builders import RESTRICTED
from harness.kube import API_NOT_UP, Kube
from harness.wait import Pending, wait_for

CLIENT = "kh-discovery-client"
EVERY_S = 0.25
LOOKUP_TIMEOUT_S = 3
REQUEST_TIMEOUT_S = 2
# The longest a round can take: a stretch without one means the client stopped or stalled.
LONGEST_ROUND_S = LOOKUP_TIMEOUT_S + REQUEST_TIMEOUT_S + EVERY_S + 1

# busybox's nslookup takes no search path: NAME.NAMESPACE.svc is made whole with the
# cluster's domain, read from the pod's search domains (svc.DOMAIN). Sets $name.
WHOLE_NAME_SCRIPT = """
name="$DNS_NAME"
while read -r key rest; do
  if [ "$key" = search ]; then
    for domain in $rest; do
      case "$domain" in svc.*) name="$DNS_NAME.${domain#svc.}" ;; esac
    done
  fi
done < /etc/resolv.conf
"""

# Its wget cannot resolve names in an image without glibc's NSS: the client requests the
# address its own lookup gave, the name in Host. The address is the one after `Name:`: an
# answer without a record still names the server's own `Address:`, and is no answer.
CLIENT_SCRIPT = (
    WHOLE_NAME_SCRIPT
    + f"""
i=0
while [ "$i" -lt "$ROUNDS" ]; do
  address=""
  if out=$(timeout {LOOKUP_TIMEOUT_S} nslookup -type=a "$name" 2>&1); then
    named=""; after=""
    for word in $out; do
      if [ -n "$after" ]; then address="$word"; after=""; fi
      if [ "$word" = "Name:" ]; then named=1; fi
      if [ -n "$named" ] && [ "$word" = "Address:" ]; then after=1; fi
    done
    if [ -n "$address" ]; then lookup=answered; else lookup="no answer"; fi
  else
    case "$out" in
      *NXDOMAIN*) lookup=nxdomain ;;
      *) lookup="no answer" ;;
    esac
  fi
  request=skipped
  if [ -n "$address" ] && [ "$lookup" = answered ]; then
    if timeout {REQUEST_TIMEOUT_S} wget -q -O /dev/null --header "Host: $HOST" \\
        "http://$address:$PORT$PATH_"; then
      request=ok
    else
      request=failed
    fi
  fi
  echo "ROUND $lookup/$request"
  i=$((i + 1))
  sleep {EVERY_S}
done
"""
)


@dataclass(frozen=True)
class Round:
    """One lookup of the Service's name and the request to the address it gave."""

    t: float
    lookup: str  # answered, nxdomain, no answer
    request: str  # ok, failed, skipped (no address to send it to)


def client_pod(
    namespace: str, *, image: str, dns_name: str, port: int, path: str, host: str, rounds: int
) -> dict[str, Any]:
    """The client pod: `rounds` lookups of `dns_name` (NAME.NAMESPACE.svc), each followed by
    a request for `path` on `port` of the address it gave, `host` in its Host header."""
    env = {
        "DNS_NAME": dns_name, "HOST": host, "PORT": str(port), "PATH_": path,
        "ROUNDS": str(rounds),
    }  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": CLIENT, "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "client",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", CLIENT_SCRIPT],
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                    "securityContext": RESTRICTED,
                }
            ],
        },
    }


def read_rounds(log: str) -> list[Round]:
    """The rounds of the client's log, read with the kubelet's timestamps.

    >>> read_rounds("2026-12-03T16:30:00.250000000Z ROUND answered/ok\\n")
    [Round(t=1796315400.25, lookup='answered', request='ok')]
    """
    rounds = []
    for line in log.splitlines():
        stamp, _, rest = line.partition(" ")
        if not rest.startswith("ROUND "):
            continue
        lookup, _, request = rest.removeprefix("ROUND ").strip().partition("/")
        rounds.append(Round(_epoch(stamp), lookup, request))
    return rounds


def _epoch(stamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 time with nanoseconds (the kubelet's), in UTC
    (Z) or with an offset.

    >>> _epoch("2026-12-03T18:30:00.5+02:00") - _epoch("2026-12-03T16:30:00Z")
    0.5
    """
    found = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", stamp)
    if found is None:
        raise ValueError(f"not an RFC 3339 time: {stamp!r}")
    whole, fraction, offset = found.groups()
    seconds = datetime.fromisoformat(whole + ("+00:00" if offset == "Z" else offset)).timestamp()
    return seconds + (float(f"0.{fraction}") if fraction else 0.0)


class DiscoveryClient:
    """The running client pod: `rounds()` reads what it recorded so far."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace

    def rounds(self) -> list[Round]:
        # The client answers None, not "", for a log with nothing in it yet.
        log = self.kube.core.read_namespaced_pod_log(CLIENT, self.namespace, timestamps=True)
        log = log or ""
        return read_rounds(log)


@contextmanager
def discovery_client(
    kube: Kube, namespace: str, *, image: str, service_url: str, path: str, seconds: float
) -> Iterator[DiscoveryClient]:
    """The client pod, looking up the name of `service_url`'s Service and requesting `path`
    for at least `seconds` (rounds of at least `EVERY_S`; its pod ends after twice that at
    most), running once its first round is recorded; removed afterwards.

    Raises:
        WaitTimeout: it recorded no round.
    """
    address = urlsplit(service_url)
    body = client_pod(
        namespace, image=image, dns_name=address.hostname or "", port=address.port or 80,
        path=path, host=address.netloc, rounds=math.ceil(seconds / EVERY_S),
    )  # fmt: skip
    body["spec"]["activeDeadlineSeconds"] = math.ceil(2 * seconds)
    kube.core.create_namespaced_pod(namespace, body)
    client = DiscoveryClient(kube, namespace)
    try:

        def first_round() -> bool | Pending:
            try:
                return bool(client.rounds()) or Pending("no round recorded yet")
            except ApiException as exc:
                return Pending(f"no log yet ({exc.reason})")

        wait_for(
            first_round,
            what=f"the discovery client in {namespace} to record its first round",
            timeout=90,
            transient=API_NOT_UP,
        )
        yield client
    finally:  # never in place of what made the test fail; the namespace goes after it anyway
        with contextlib.suppress(ApiException):
            kube.core.delete_namespaced_pod(CLIENT, namespace, grace_period_seconds=0)
