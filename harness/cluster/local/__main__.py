"""`python -m harness.cluster.local STATE_DIR RUN_DIR`: run a cluster's supervisor."""

import sys

from harness.cluster.local.supervisor import main

main(sys.argv[1:])
