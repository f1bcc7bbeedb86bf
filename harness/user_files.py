"""Reading the files a user hands the harness (specs, experiments, SLO files) strictly.

What a careless or hostile file can do to a plain `yaml.safe_load(path.read_text())`: a FIFO
or /dev/zero hangs it or exhausts memory, a directory, a binary or a UTF-16 file ends in a
traceback, a duplicate key silently wins over the first, and a few nested aliases (the
"billion laughs") expand into a structure that later exhausts memory when walked or shown.
Here each of these is refused with an error that names the file and the fix.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import yaml

from harness.errors import InvalidConfiguration

MAX_BYTES = 4 * 1024 * 1024  # a spec or an experiment is a few kilobytes
# Nodes once every alias is expanded: a spec has hundreds; nested aliases (the "billion
# laughs") reach billions with a few lines, and exhaust memory when walked or shown.
MAX_EXPANDED_NODES = 100_000
MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and aliases that expand past MAX_EXPANDED_NODES."""

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None and _expanded_size(node, {}) > MAX_EXPANDED_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"aliases (*name) expand to more than {MAX_EXPANDED_NODES} nodes",
                node.start_mark,
            )  # fmt: skip
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:  # `<<: *base`: its keys may be given again
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"the key {key!r} appears twice", key_node.start_mark,
                )  # fmt: skip
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many nodes `node` stands for with its aliases expanded (each anchored node is
    measured once: aliases are the same node object)."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = 1  # a node that contains itself counts once
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = []
    total = 1
    for child in children:
        total += _expanded_size(child, sizes)
        if total > MAX_EXPANDED_NODES:
            break
    sizes[id(node)] = total
    return total


def read_text(
    path: Path,
    what: str,
    *,
    fix: str | None = None,
    max_bytes: int = MAX_BYTES,
    errors: str = "strict",
) -> str:
    """The UTF-8 text of a regular file of at most `max_bytes`; `what` names it in errors
    ("resilience spec"), `fix` says what to give instead; `errors="replace"` reads bytes that
    are not UTF-8 as U+FFFD instead of refusing the file.

    Raises:
        InvalidConfiguration: missing, not a regular file, unreadable, too big, not UTF-8.
    """
    fix = fix or f"give the path of a {what} file (UTF-8 text)"
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InvalidConfiguration(f"{what} {path} does not exist", fix=fix) from None
    except OSError as exc:
        raise InvalidConfiguration(
            f"{what} {path} cannot be read: {exc.strerror}", fix=fix
        ) from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise InvalidConfiguration(f"{what} {path} is {kind}", fix=fix)
    if info.st_size > max_bytes:
        raise InvalidConfiguration(
            f"{what} {path} is {info.st_size} bytes, more than {max_bytes} allowed", fix=fix
        )
    try:
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise InvalidConfiguration(
            f"{what} {path} cannot be read: {exc.strerror}", fix=fix
        ) from None
    try:
        return data.decode("utf-8", errors)
    except UnicodeDecodeError as exc:
        raise InvalidConfiguration(
            f"{what} {path} is not UTF-8 text (byte {exc.start} cannot be decoded)",
            fix=fix,
        ) from None


def parse_yaml(text: str, path: Path, what: str) -> Any:
    """One YAML document (JSON is YAML too), with no duplicate keys and no alias bomb.

    Raises:
        InvalidConfiguration: not valid YAML, a key twice, aliases that expand too far, too
            deep.
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise InvalidConfiguration(
            f"{what} {path}: not valid YAML: {_problem(exc)}",
            fix="correct the file at the place named",
        ) from None
    except RecursionError:
        raise InvalidConfiguration(
            f"{what} {path}: nested too deeply to read", fix="flatten the file's structure"
        ) from None


def _problem(exc: yaml.YAMLError) -> str:
    """What is wrong and where, without the file's text around it (a kubeconfig's lines
    hold credentials)."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return str(exc)
    mark = exc.problem_mark or exc.context_mark
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return f"{exc.problem or exc.context}{where}"


def read_yaml(path: Path, what: str, *, fix: str | None = None) -> Any:
    """`read_text` and `parse_yaml` in one."""
    return parse_yaml(read_text(path, what, fix=fix), path, what)


def read_json(path: Path, what: str, *, fix: str | None = None) -> Any:
    """A JSON file, read as strictly as `read_yaml` (duplicate keys refused)."""
    text = read_text(path, what, fix=fix)

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ValueError(f"the key {key!r} appears twice")
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=unique)
    except ValueError as exc:
        raise InvalidConfiguration(
            f"{what} {path}: not valid JSON: {exc}", fix="correct the file at the place named"
        ) from None
    except RecursionError:
        raise InvalidConfiguration(
            f"{what} {path}: nested too deeply to read", fix="flatten the file's structure"
        ) from None
