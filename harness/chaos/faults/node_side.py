"""What runs on a node for a fault: the shell scripts that start, find and kill its processes
and insert, list and delete its packet filter rules, and the marker they all carry.

Node-side scripts are POSIX sh (kind nodes have no python). The marker reaches them in two
halves that they join, so that no helper shell's command line holds the whole marker and
is mistaken for a fault process by a `leftovers()` running at the same time.
"""

from __future__ import annotations

import re

from harness.chaos.ledger import Injected

CHAOS_MARKER = "kube-harness-chaos"
# A fault's marker, with the namespace it was injected for when it carries one.
MARKED = re.compile(rf"{CHAOS_MARKER}-([0-9a-f]+)(?:@([a-z0-9.-]+))?")
# Runs `hog` in the container's cgroups, bounded by `timeout`.
HOG = """
m="$1$2" seconds=$3 hog=$4
shift 4
# Join the container's cgroups first: the hog started below inherits them, so the pod's
# CPU and memory accounting and limits see it.
for procs in "$@"; do echo $$ > "$procs"; done
setsid timeout "$seconds" sh -c "$hog" "$m" </dev/null >/dev/null 2>&1 &
"""
# action "list": print "pid cmdline" of every process whose command line holds the marker;
# action "kill": SIGKILL them, a process-group leader with its whole group (the `timeout`
# that bounds a hog leads it, so its pipeline goes too).
PROCESSES = """
action=$1 m="$2$3"
# grep reads the marker from its input, so that its own command line does not hold it.
for f in $(printf '%s\\n' "$m" | grep -lF -f - /proc/[0-9]*/cmdline 2>/dev/null); do
  p=${f#/proc/}
  p=${p%/cmdline}
  [ "$p" = "$$" ] && continue
  c=$(tr '\\0' ' ' < "$f" 2>/dev/null) || continue
  if [ "$action" = list ]; then echo "$p $c"; continue; fi
  s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
  s=${s##*) }
  set -- $s
  if [ "$3" = "$p" ]; then kill -KILL -"$p" 2>/dev/null; else kill -KILL "$p" 2>/dev/null; fi
done
true
"""
# Every rule goes into IPv4's and IPv6's tables alike: a command that dials `localhost`
# inside the pod (an exec probe) may well reach the service over ::1.
_FAMILIES = """
families() {
  echo iptables
  nsenter -t "$1" -n ip6tables -w -S >/dev/null 2>&1 && echo ip6tables
  true
}
"""
RULES_INSERT = (
    _FAMILIES
    + """
pid=$1 m="$2$3"
shift 3
for ipt in $(families "$pid"); do
  for rule in "$@"; do
    nsenter -t "$pid" -n $ipt -w -I $rule -m comment --comment "$m" -j DROP
  done
done
"""
)
# A pod that is gone took its network namespace, and our rules, with it.
RULES_DELETE = (
    _FAMILIES
    + """
pid=$1 netns=$2 m="$3$4"
shift 4
[ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$netns" ] || exit 0
left=
for ipt in $(families "$pid"); do
  for rule in "$@"; do
    while nsenter -t "$pid" -n $ipt -w -D $rule -m comment --comment "$m" -j DROP 2>/dev/null
    do :; done
  done
  left="$left$(nsenter -t "$pid" -n $ipt -w -S | while read -r r; do
    case "$r" in *"$m"*) echo "$ipt $r" ;; esac
  done)"
done
[ -z "$left" ] || { echo "rules still in place: $left" >&2; exit 1; }
"""
)
# Arguments: marker halves, then "pid=label" per pod sandbox; the node's own rules first
# (sandboxes in the node's network namespace are not listed twice).
RULES_LIST = """
m="$1$2" node=$(readlink /proc/self/ns/net)
shift 2
show() { while read -r r; do case "$r" in *"$m"*) echo "$1: $r" ;; esac; done; }
for ipt in iptables ip6tables; do
  $ipt -w -S 2>/dev/null | show "host network ($ipt)"
  for p in "$@"; do
    [ "$(readlink "/proc/${p%%=*}/ns/net" 2>/dev/null)" = "$node" ] && continue
    nsenter -t "${p%%=*}" -n $ipt -w -S 2>/dev/null | show "${p#*=} ($ipt)"
  done
done
true
"""
READ_FILES = """
for f in "$@"; do [ -r "$f" ] && { echo "== $f"; cat "$f"; }; done
true
"""


def duration(seconds: float) -> str:
    """Seconds as `timeout` and `sleep` read them (no exponent notation)."""
    return f"{seconds:.3f}"


def halves(marker: str) -> list[str]:
    """`marker` cut in two, as the node-side scripts take it."""
    cut = len(CHAOS_MARKER) // 2
    return [marker[:cut], marker[cut:]]


def fault_marker(entry: Injected) -> str:
    """What a fault's processes and iptables rules carry: `kube-harness-chaos-<id>@<namespace>`,
    so that `leftovers()` finds them, and tells whose they are, without the ledger."""
    return f"{CHAOS_MARKER}-{entry.id}@{entry.namespace}"
