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
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

MASK = "[redacted]"

_CREDENTIAL = (
    r"(?:token|secret|password|passwd|pwd|api[-_]?key|apikey|access[-_]?key|private[-_]?key"
    r"|client[-_]key[-_]data|client[-_]certificate[-_]data|certificate[-_]authority[-_]data"
    r"|authorization|auth|credentials?|kubeconfig|cookie|signature|sig|tls[._-]key)"
)
# A mapping key that names a credential, alone or qualified: "admin token", "ADMIN_TOKEN",
# "adminToken", "x-amz-signature", "tls.key".
SENSITIVE_KEY = re.compile(rf"^[A-Za-z0-9 ._-]*?{_CREDENTIAL}s?$", re.IGNORECASE)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.S), MASK),
    # Every scheme of an Authorization header (Digest's fields too): the rest of the line
    (re.compile(r"(\b(?:proxy-)?authorization[\"']?\s*:\s*)[^\r\n)]+", re.I), rf"\1{MASK}"),
    # user:password@ in a URL
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@", re.I), rf"\1{MASK}@"),
    # an env list entry: {"name": "ADMIN_TOKEN", "value": "..."} or its YAML form
    (
        re.compile(
            rf"(\bname[\"']?\s*:\s*[\"']?[A-Za-z0-9._-]*?{_CREDENTIAL}s?[\"']?\s*,?\s*"
            r"[\"']?value[\"']?\s*:\s*)(?:\"[^\"]*\"|'[^']*'|[^\s,}]+)",
            re.I,
        ),
        rf"\1{MASK}",
    ),
    # --password VALUE on a command line (the = form is a key=value below)
    (re.compile(rf"(--[A-Za-z0-9-]*?{_CREDENTIAL}s?\s+)[^\s-]\S*", re.I), rf"\1{MASK}"),
    # key=value, key: value, "key": "value" (JSON, YAML, query strings, headers), camelCase
    # keys too (adminToken=...)
    (
        re.compile(
            rf"(\b[A-Za-z0-9_-]*?{_CREDENTIAL}s?\b[\"']?\s*[:=]\s*)"
            r"(?!\[redacted\])(?:(?:Bearer|Basic)\s+)?(?:\"[^\"]*\"|'[^']*'|[^\s,;&)}\]\"']+)",
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
    # tokens recognisable by their prefix: GitHub, Slack, AWS access key ids
    (
        re.compile(
            r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16})\b"
        ),
        MASK,
    ),
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
    """A JSON-like value with credentials masked: by its key (or, in an env list entry
    `{"name": "ADMIN_TOKEN", "value": ...}`, by its name), then inside its strings."""
    if key and SENSITIVE_KEY.match(key) and value not in (None, "", [], {}):
        return MASK
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        named = value.get("name")
        if isinstance(named, str) and SENSITIVE_KEY.match(named) and "value" in value:
            value = {**value, "value": MASK}
        return {redact(str(k)): redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(item) for item in value]
    return value


def write_redacted_junit(source: Path, dest: Path) -> None:
    """Copy pytest's JUnit XML with every text and attribute redacted (failure messages and
    captured output quote what the tests saw). XML that does not parse is redacted as text."""
    text = source.read_text(encoding="utf-8", errors="replace")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        dest.write_text(redact(text), encoding="utf-8")
        return
    for element in root.iter():
        element.text = redact(element.text) if element.text else element.text
        element.tail = redact(element.tail) if element.tail else element.tail
        for name, value in element.attrib.items():
            element.attrib[name] = redact(value)
    ElementTree.ElementTree(root).write(dest, encoding="utf-8", xml_declaration=True)
