"""Keep Secret values, tokens and kubeconfig contents out of every report.

Reports are published (CI job summaries, artefacts), so the reader applies this at the
boundary: every string taken from a run folder into the report model goes through `redact`
or `redact_value`. Two layers, because neither alone is enough:

- by key: a mapping entry whose key names a credential (`token`, `password`,
  `client-key-data`, ...) keeps its key and loses its value;
- by shape: credentials inside free text (`Authorization: Bearer ...`, `token=...`,
  `"password": "..."`, PEM blocks, JWTs) are masked where they stand.

Besides, the report never reads the files where credentials can legitimately be (diagnostics,
container logs, kubeconfigs, chaos journals): it links to them at most, and `redact_folder`
masks them in place before the run folder is published.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
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


# Quotes around keys and values: none, one, CSV's doubled ones (JSON inside a CSV field) or
# escaped ones (JSON inside a JSON or script string).
_Q = r'(?:""|\\"|["\'])?'
_QUOTED = r'(?:""[^"\r\n]+""|\\"[^"\\\r\n]*\\"|"[^"]*"|\'[^\']*\')'
# Space, or the escaped line breaks of text inside a JSON or script string.
_SPACE = r"(?:\s|\\[nrt])*"
# Where a token starts: a word boundary, or just after an escaped line break ("...\nghp_...").
_START = r"(?:(?<=\\[nrt])|\b)"


def _masked_value(match: re.Match[str]) -> str:
    """The key as it was and the value masked, inside its quotes when it had them (so JSON,
    YAML, CSV and scripts stay well-formed)."""
    value = match.group(2)
    if value in ('""', "''", '\\"\\"'):  # empty: nothing to hide
        return match.group(0)
    quote = next((q for q in ('""', '\\"', '"', "'") if value.startswith(q)), "")
    return f"{match.group(1)}{quote}{MASK}{quote}"


_PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.S), MASK),
    # Digest's response (the rest of its fields are no secret)
    (re.compile(rf"(\bDigest\s[^\r\n]*?\bresponse=)({_QUOTED}|[^\s,\"]+)"), _masked_value),
    # Every scheme of an Authorization header: to the end of the line, or of the quoted string
    # or escaped line (JSON, CSV, a script) it stands in
    (re.compile(r"(\b(?:proxy-)?authorization[\"']?\s*:\s*)[^\r\n)\"\\]+", re.I), rf"\1{MASK}"),
    # user:password@ in a URL
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@", re.I), rf"\1{MASK}@"),
    # an env list entry: {"name": "ADMIN_TOKEN", "value": "..."} or its YAML form
    (
        re.compile(
            rf"(\bname{_Q}\s*:\s*{_Q}[A-Za-z0-9._-]{{0,64}}?{_CREDENTIAL}s?{_Q}{_SPACE},?{_SPACE}"
            rf"{_Q}value{_Q}\s*:\s*)({_QUOTED}|[^\s,}}\\]+)",
            re.I,
        ),
        _masked_value,
    ),
    # --password VALUE on a command line (the = form is a key=value below)
    (
        re.compile(rf"((?<![A-Za-z0-9-])--[A-Za-z0-9-]{{0,64}}?{_CREDENTIAL}s?\s+)[^\s-]\S*", re.I),
        rf"\1{MASK}",
    ),
    # key=value, key: value, "key": "value" (JSON, YAML, query strings, headers), camelCase
    # keys too (adminToken=...)
    (
        re.compile(
            rf"(\b[A-Za-z0-9_-]{{0,64}}?{_CREDENTIAL}s?\b{_Q}\s*[:=]\s*)"
            rf"(?!{_Q}\[redacted\])((?:(?:Bearer|Basic)\s+)?(?:{_QUOTED}|[^\s,;&)}}\]\"'\\]+))",
            re.IGNORECASE,
        ),
        _masked_value,
    ),
    (re.compile(r"\b(Bearer|Basic)(\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE), rf"\1\2{MASK}"),
    # "token s3cr3t..." in prose: the next word, when it looks generated (long, with a digit)
    (
        re.compile(rf"(\b{_CREDENTIAL}s?\s+)(?=[^\s]*\d)[^\s,;)]{{8,}}", re.IGNORECASE),
        rf"\1{MASK}",
    ),
    (re.compile(rf"{_START}eyJ[A-Za-z0-9_-]{{6,}}\.[A-Za-z0-9_-]{{6,}}\.[A-Za-z0-9_-]*"), MASK),
    # tokens recognisable by their prefix: GitHub, Slack, AWS access key ids
    (
        re.compile(
            rf"{_START}(?:gh[pousr]_[A-Za-z0-9]{{20,}}|xox[abposr]-[A-Za-z0-9-]{{10,}}"
            r"|AKIA[0-9A-Z]{16})\b"
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
    captured output quote what the tests saw)."""
    text = source.read_text(encoding="utf-8", errors="replace")
    dest.write_text(_redacted_xml(text), encoding="utf-8")


def _redacted_xml(text: str) -> str:
    """XML with every text and attribute redacted; XML that does not parse, as text."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return redact(text)
    for element in root.iter():
        element.text = redact(element.text) if element.text else element.text
        element.tail = redact(element.tail) if element.tail else element.tail
        for name, value in element.attrib.items():
            element.attrib[name] = redact(value)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True)


# Anything `redact` could mask has one of these in it: text without them is left unread.
_MAYBE_CREDENTIAL = re.compile(
    rf"{_CREDENTIAL}|eyJ|gh[pousr]_|xox[abposr]-|AKIA|-----BEGIN|://[^/\s:@]+:[^/\s@]+@",
    re.IGNORECASE,
)
_SNIFF_BYTES = 8192  # a NUL byte in the first ones: a binary file (a screenshot), left alone


def redact_folder(folder: Path) -> list[Path]:
    """Mask credentials in every text file of the run folder `folder` (its record folders and
    JUnit XML: `RECORD_FILES`), in place; return those changed.

    The whole run folder is published (CI artefacts), not only the report: diagnostics,
    container and component logs, chaos journals, timelines, Locust's files. JSON and JSON
    lines are masked by key (`redact_value`) and still parse; XML element by element; other
    text by shape. Symlinks are not followed; running it again changes nothing.
    """
    changed = []
    for path in sorted(_run_files(folder)):
        if path.is_symlink() or not path.is_file():
            continue
        with path.open("rb") as file:
            if b"\0" in file.read(_SNIFF_BYTES):
                continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if not _MAYBE_CREDENTIAL.search(text):
            continue
        masked = _redacted_file_text(path.suffix, text)
        if masked != text:
            partial = path.with_name(path.name + ".redacting")
            partial.write_text(masked, encoding="utf-8")
            partial.replace(path)
            changed.append(path)
    return changed


# A folder that holds one of these is a test's (or an experiment's) record folder: what is in
# it is the run's. Nothing else is touched, so `harness report` pointed at the wrong folder
# (a checkout, a home directory) rewrites none of it.
RECORD_FILES = ("result.json", "timeline.jsonl", "journal.json")
RUN_ROOT_FILES = ("junit.xml",)


def _run_files(folder: Path) -> set[Path]:
    """Every file in the record folders under `folder`, and its JUnit XML."""
    records = {p.parent for name in RECORD_FILES for p in folder.rglob(name) if p.is_file()}
    files = {p for record in records for p in record.rglob("*")}
    return files | {folder / name for name in RUN_ROOT_FILES}


def _redacted_file_text(suffix: str, text: str) -> str:
    if suffix == ".json":
        return _redacted_json(text, indent=2) if text.strip() else text
    if suffix == ".jsonl":
        return "".join(
            _redacted_json(line, indent=None) if _MAYBE_CREDENTIAL.search(line) else line
            for line in text.splitlines(keepends=True)
        )
    if suffix == ".xml":
        return _redacted_xml(text)
    return redact(text)


def _redacted_json(text: str, *, indent: int | None) -> str:
    """One JSON document (or line) masked by key; unchanged when nothing is masked, as text
    when it does not parse."""
    try:
        data = json.loads(text)
    except ValueError:
        return redact(text)
    masked = redact_value(data)
    if masked == data:
        return text
    ending = "\n" if text.endswith("\n") else ""
    return json.dumps(masked, indent=indent) + ending
