"""The one way libresh reads YAML it did not write itself: bounded, so a hostile file is refused
in well under a second instead of exhausting memory.

app.yaml, rendered templates, values files, cluster files, kubeconfigs and profiles may come
from someone else. PyYAML follows aliases without limit (nine anchors of nine aliases each
expand to 9**9 nodes), composes nesting by recursion, and quotes the offending line in its
errors. Here: anchors and aliases are refused, the input size, the nesting depth and the number
of nodes are capped, bytes must be UTF-8, and an error names the file, the line and the column,
never the text (a values file may hold a password).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from libresh_cli.errors import BadInputError

MIB = 1024 * 1024
MAX_FILE_BYTES = 1 * MIB  # app.yaml, templates, values files, cluster files, profiles
MAX_KUBECONFIG_BYTES = 4 * MIB  # embedded certificates make kubeconfigs bigger
MAX_RENDERED_BYTES = 4 * MIB  # what one template renders to (ConfigMaps may carry files)
MAX_DEPTH = 64  # nested mappings and sequences
MAX_NODES = 50_000  # scalars, mappings and sequences in one file (all its documents)


class YamlRefusedError(BadInputError):
    """A YAML file or text libresh will not read, with where (file, line, column) and why."""

    def __init__(
        self, source: str, reason: str, line: int | None = None, column: int | None = None
    ) -> None:
        where = source if line is None else f"{source}, line {line}, column {column}"
        super().__init__(
            f"{where}: {reason}.",
            hint="libresh reads plain YAML only: no anchors (&) or aliases (*), nesting up to "
            f'{MAX_DEPTH} levels, UTF-8 text (README, "Exit codes").',
        )
        self.source = source
        self.reason = reason
        self.line = line
        self.column = column


class _Limits:
    """Composition with the limits: mixed into a loader before its composer."""

    depth = 0
    nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[attr-defined]
        if isinstance(event, yaml.AliasEvent):
            raise _Limit("uses a YAML alias (*); aliases are not allowed", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise _Limit("uses a YAML anchor (&); anchors are not allowed", event.start_mark)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Limit(f"has more than {MAX_NODES} values", event.start_mark)
        collection = isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent)
        if collection:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise _Limit(f"is nested deeper than {MAX_DEPTH} levels", event.start_mark)
        try:
            node: yaml.Node | None = super().compose_node(parent, index)  # type: ignore[misc]
            return node
        finally:
            if collection:
                self.depth -= 1


class _PythonLoader(_Limits, yaml.SafeLoader):
    """Without libyaml: PyYAML's pure-Python scanner, whose look-ahead for simple keys costs
    the square of the flow nesting, so flow nesting is cut while scanning."""

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise _Limit(f"is nested deeper than {MAX_DEPTH} levels", self.get_mark())
        super().fetch_flow_collection_start(token_class)


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _LibyamlLoader(
        _Limits,
        yaml.composer.Composer,
        yaml.constructor.SafeConstructor,
        yaml.resolver.Resolver,
        CParser,
    ):
        """libyaml's scanner and parser (fast, no recursion); composition in Python, bounded."""

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    _Loader: type = _LibyamlLoader
else:  # pragma: no cover - PyYAML wheels ship libyaml
    _Loader = _PythonLoader


class _Limit(yaml.YAMLError):
    def __init__(self, reason: str, mark: Any) -> None:  # PyYAML's Mark or libyaml's
        super().__init__(reason)
        self.reason = reason
        self.mark = mark


def read_text(path: Path, *, what: str, limit: int = MAX_FILE_BYTES) -> str:
    """A file's text, at most `limit` bytes of UTF-8; BadInputError naming `what` and the file
    otherwise (OSError included)."""
    try:
        data = _read_regular_file(path, limit + 1)
    except OSError as error:
        raise BadInputError(f"Cannot read the {what} {path}: {error.strerror}.") from error
    if data is None:
        raise BadInputError(
            f"Cannot read the {what} {path}: it is not a regular file (a pipe, a device or a "
            "folder).",
            hint=f"Give the path of the {what} itself.",
        )
    return decode(data, source=f"the {what} {path}", limit=limit)


def _read_regular_file(path: Path, size: int) -> bytes | None:
    """At most `size` bytes of a regular file; None for anything else. Opened without
    waiting, so a named pipe cannot hold libresh forever, and never read endlessly
    (/dev/zero)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        return None
    with os.fdopen(descriptor, "rb") as handle:
        return handle.read(size)


def decode(data: bytes, *, source: str, limit: int = MAX_FILE_BYTES) -> str:
    if len(data) > limit:
        raise YamlRefusedError(source, f"is larger than {_size(limit)}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line = before.count(b"\n") + 1
        column = error.start - (before.rfind(b"\n") + 1) + 1
        raise YamlRefusedError(source, "is not UTF-8 text", line, column) from None


def load_file(path: Path, *, what: str, limit: int = MAX_FILE_BYTES) -> Any:
    """The one YAML document in a file (None when empty)."""
    return load(read_text(path, what=what, limit=limit), source=f"the {what} {path}", limit=limit)


def load(text: str, *, source: str, limit: int = MAX_FILE_BYTES) -> Any:
    """One YAML document from text (None when empty); `source` names it in errors."""
    loader = _loader(text, source, limit)
    try:
        return _guard(loader.get_single_data, source)
    finally:
        _dispose(loader)


def load_all(text: str, *, source: str, limit: int = MAX_FILE_BYTES) -> list[Any]:
    """Every document of a YAML stream (empty ones included, as None)."""
    loader = _loader(text, source, limit)
    documents: list[Any] = []

    def every() -> None:
        while loader.check_data():
            documents.append(loader.get_data())

    try:
        _guard(every, source)
    finally:
        _dispose(loader)
    return documents


def compose(text: str, *, source: str, limit: int = MAX_FILE_BYTES) -> yaml.Node | None:
    """The node tree of one document (for line numbers), under the same limits."""
    loader = _loader(text, source, limit)
    try:
        node: yaml.Node | None = _guard(loader.get_single_node, source)
        return node
    finally:
        _dispose(loader)


def _loader(text: str, source: str, limit: int) -> Any:
    # Characters, not bytes, once decoded: a cheap first cut before the exact byte count.
    if len(text) > limit or len(text.encode("utf-8", "surrogatepass")) > limit:
        raise YamlRefusedError(source, f"is larger than {_size(limit)}")
    return _Loader(text)


def _dispose(loader: Any) -> None:
    dispose = getattr(loader, "dispose", None)
    if callable(dispose):
        dispose()


def _guard(parse: Any, source: str) -> Any:
    try:
        return parse()
    except _Limit as error:
        mark = error.mark
        raise YamlRefusedError(
            source, error.reason, *((mark.line + 1, mark.column + 1) if mark else ())
        ) from None
    except yaml.MarkedYAMLError as error:
        # problem, never the snippet PyYAML quotes (it may be a password)
        mark = error.problem_mark or error.context_mark
        reason = f"is not valid YAML: {error.problem or error.context or 'syntax error'}"
        raise YamlRefusedError(
            source, reason, *((mark.line + 1, mark.column + 1) if mark else ())
        ) from None
    except yaml.YAMLError as error:
        # ReaderError (a control character) names the character's code and position only.
        raise YamlRefusedError(source, f"is not valid YAML: {_reader_reason(error)}") from None
    except (ValueError, OverflowError):
        # A constructor's conversion: a date such as 2024-13-45, an integer too long to read.
        raise YamlRefusedError(source, "holds a date or number that cannot be read") from None
    except RecursionError:
        raise YamlRefusedError(source, f"is nested deeper than {MAX_DEPTH} levels") from None


def _reader_reason(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.reader.ReaderError):
        return (
            f"a character libresh cannot read (#x{error.character:04x}) at offset {error.position}"
        )
    return "syntax error"


def _size(limit: int) -> str:
    return f"{limit // MIB} MiB" if limit % MIB == 0 else f"{limit} bytes"
