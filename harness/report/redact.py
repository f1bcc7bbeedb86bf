"""Keep Secret values, tokens and kubeconfig contents out of every report.

Reports are published (CI job summaries, artefacts), so the reader applies this at the
boundary: every string taken from a run folder into the report model goes through `redact`
or `redact_value`. Two layers, because neither alone is enough:

- by key: a mapping entry whose key names a credential (`token`, `password`,
  `client-key-data`, ...) keeps its key and loses its value;
- by shape: credentials inside free text (`Authorization: Bearer ...`, `token=...`,
  `"password": "..."`, PEM blocks, JWTs) are masked where they stand.

Besides, the report never reads the files where credentials can legitimately be (diagnostics,
container logs, kubeconfigs, chaos journals): it links to them at most.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "[redacted]"

_CREDENTIAL = (
    r"(?:token|secret|password|passwd|pwd|api[-_]?key|apikey|access[-_]?key|private[-_]?key"
    r"|client[-_]key[-_]data|client[-_]certificate[-_]data|certificate[-_]authority[-_]data"
    r"|authorization|auth|credentials?|kubeconfig|cookie)"
)
# A mapping key that names a credential, alone or qualified ("admin token", "ADMIN_TOKEN").
SENSITIVE_KEY = re.compile(rf"^(?:[A-Za-z0-9]+[-_ ])*{_CREDENTIAL}s?$", re.IGNORECASE)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.S), MASK),
    # key=value, key: value, "key": "value" (JSON, YAML, query strings, headers)
    (
        re.compile(
            rf"(\b(?:[A-Za-z0-9]+[-_])*{_CREDENTIAL}s?\b[\"']?\s*[:=]\s*)"
            r"(?:(?:Bearer|Basic)\s+)?(?:\"[^\"]*\"|'[^']*'|[^\s,;&)}\]\"']+)",
            re.IGNORECASE,
        ),
        rf"\1{MASK}",
    ),
    (re.compile(r"\b(Bearer|Basic)(\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE), rf"\1\2{MASK}"),
    # "token s3cr3t..." in prose: the next word, when it looks generated (long, with a digit)
    (
        re.compile(rf"(\b{_CREDENTIAL}s?\s+)(?=[^\s]*\d)[^\s,;)]{{8,}}", re.IGNORECASE),
        rf"\1{MASK}",
    ),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*"), MASK),
)


def redact(text: str) -> str:
    """`text` with every credential it visibly carries masked.

    Example:
        >>> redact("GET /admin -> 403 (Authorization: Bearer abc123)")
        'GET /admin -> 403 (Authorization: [redacted])'
    """
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any, key: str = "") -> Any:
    """A JSON-like value with credentials masked: by its key, then inside its strings."""
    if key and SENSITIVE_KEY.match(key) and value not in (None, "", [], {}):
        return MASK
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact(str(k)): redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(item) for item in value]
    return value
