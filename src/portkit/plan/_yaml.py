"""YAML read the way Docker and Kubernetes read it, keeping line numbers.

Docker Compose (compose-go) and kubectl decode YAML with Go's ``yaml.v3``, which
follows YAML 1.2: an unquoted ``22:22`` is the *string* ``"22:22"``. PyYAML follows
YAML 1.1, where the same text is the base-60 integer 1342 (docker/compose#3109,
#3290), ``yes``/``on`` are booleans and ``0755`` is octal. This module gives PyYAML
(its C parser when present) a resolver for the YAML 1.2 core schema as yaml.v3
applies it, and converts the node tree itself so that every mapping and sequence
remembers the line of each entry.

Why PyYAML and not ruamel.yaml: PyYAML is already the ``yaml`` extra, has a C
parser (about ten times faster than ruamel's round-trip loader, which is the one
that keeps positions), and the only YAML 1.1 behaviour in the way lives in the
resolver and constructor, both of which are replaced here. The parser itself reads
YAML 1.2 documents correctly.

No I/O: :func:`load_documents` takes text.

    >>> docs = load_documents("ports:\\n  - 22:22\\n  - 8080\\n")
    >>> docs[0]["ports"], line_of(docs[0]["ports"], 0)
    (['22:22', 8080], 2)
    >>> isinstance(docs[0]["ports"][0], Base60Str), base60_value("22:22")
    (True, 1342)
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from portkit.errors import PlanError

if TYPE_CHECKING:
    import yaml

__all__ = [
    "Base60Str",
    "YamlList",
    "YamlMap",
    "base60_value",
    "line_of",
    "load_documents",
]

#: Largest input accepted; a port plan is a few kilobytes, a big manifest bundle a few MB.
MAX_BYTES = 32 * 1024 * 1024


class YamlMap(dict[Any, Any]):
    """A mapping that remembers its own line and the line of each key (1-based)."""

    __slots__ = ("key_lines", "line", "origins")

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}
        #: key -> the file the value came from, for mappings merged from several files
        self.origins: dict[Any, str] | None = None


class YamlList(list[Any]):
    """A sequence that remembers its own line and the line of each item (1-based)."""

    __slots__ = ("item_lines", "line", "origins")

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []
        #: the file of each item, for sequences merged from several files
        self.origins: list[str] | None = None


class Base60Str(str):
    """A plain (unquoted) scalar that a YAML 1.1 reader would take as a base-60 int.

    It is an ordinary string here, as for Docker; the type only records that the
    file should quote it.
    """

    __slots__ = ()


def line_of(container: Any, key: Any = None) -> int | None:
    """The line of ``container[key]`` (or of the container itself), None if unknown."""
    if isinstance(container, YamlMap):
        if key is None:
            return container.line or None
        return container.key_lines.get(key, container.line) or None
    if isinstance(container, YamlList):
        if key is None:
            return container.line or None
        if isinstance(key, int) and 0 <= key < len(container.item_lines):
            return container.item_lines[key]
        return container.line or None
    return None


# --- YAML 1.2 core schema, as yaml.v3 resolves plain scalars ------------------------

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
# yaml.v3 strips "_" and tries strconv.ParseInt(s, 0, 64): decimal, 0x, 0o, 0b and,
# for compatibility, 0-prefixed octal.
_INT = re.compile(
    r"^[-+]?(?:[0-9][0-9_]*|0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+)$",
)
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9_]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
#: YAML 1.1's sexagesimal integer (PyYAML's resolver): ``22:22`` -> 1342.
_BASE60 = re.compile(r"^[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+$")

_TAG_NULL = "tag:yaml.org,2002:null"
_TAG_BOOL = "tag:yaml.org,2002:bool"
_TAG_INT = "tag:yaml.org,2002:int"
_TAG_FLOAT = "tag:yaml.org,2002:float"
_TAG_STR = "tag:yaml.org,2002:str"
_TAG_MERGE = "tag:yaml.org,2002:merge"
_INT64 = 1 << 63


def base60_value(text: str) -> int:
    """What a YAML 1.1 reader makes of ``text``: ``"22:22"`` -> 1342.

    >>> base60_value("2122:22")
    127342
    """
    body = text.replace("_", "")
    sign = -1 if body.startswith("-") else 1
    value = 0
    for part in body.lstrip("+-").split(":"):
        value = value * 60 + int(part)
    return sign * value


def _go_int(text: str) -> int | None:
    """``strconv.ParseInt(text without "_", 0, 64)`` plus yaml.v3's 0o/0b forms."""
    body = text.replace("_", "")
    sign = 1
    if body[:1] in "+-":
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if not body:
        return None
    low = body.lower()
    try:
        if low.startswith("0x"):
            value = int(low[2:], 16)
        elif low.startswith("0o"):
            value = int(low[2:], 8)
        elif low.startswith("0b"):
            value = int(low[2:], 2)
        elif len(low) > 1 and low.startswith("0"):
            value = int(low[1:], 8)
        else:
            value = int(low, 10)
    except ValueError:
        return None
    value *= sign
    return value if -_INT64 <= value < _INT64 else None


def _scalar(node: yaml.ScalarNode) -> Any:
    tag, value, style = node.tag, node.value, node.style
    if tag == _TAG_NULL:
        return None
    if tag == _TAG_BOOL:
        return value.lower() == "true"
    if tag == _TAG_INT:
        number = _go_int(value)
        if number is not None:
            return number
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return value
    if tag == _TAG_FLOAT:
        low = value.lower().replace("_", "")
        if low.endswith("inf"):
            return float("-inf") if low.startswith("-") else float("inf")
        if low == ".nan":
            return float("nan")
        try:
            return float(low)
        except ValueError:
            return value
    if not style and tag == _TAG_STR and _BASE60.match(value):  # plain: None, or "" in C
        return Base60Str(value)
    # Strings and anything with an explicit local tag (!Ref, !!binary...): the text.
    return value


def _loader_class() -> type[Any]:
    """A PyYAML loader (C parser when available) with the YAML 1.2 core resolvers."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    base: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc]
        # Our own table, replacing PyYAML's YAML 1.1 one (it copies on first add).
        yaml_implicit_resolvers: ClassVar[dict[str | None, list[tuple[str, re.Pattern[str]]]]] = {}

    resolvers: list[tuple[str, re.Pattern[str], str]] = [
        (_TAG_BOOL, _BOOL, "tTfF"),
        (_TAG_INT, _INT, "-+0123456789"),
        (_TAG_FLOAT, _FLOAT, "-+0123456789."),
        (_TAG_NULL, _NULL, "~nN"),
        (_TAG_MERGE, re.compile(r"^<<$"), "<"),
    ]
    for tag, pattern, first in resolvers:
        Loader.add_implicit_resolver(tag, pattern, list(first))
    # The empty scalar resolves through the "" key in PyYAML's resolver.
    Loader.yaml_implicit_resolvers.setdefault("", []).append((_TAG_NULL, _NULL))
    _LOADER = Loader
    return Loader


_LOADER: type[Any] | None = None


#: At most this many nodes may be added by aliases in one stream (every time an alias
#: is used, its whole subtree counts again). yaml.v3 (Docker Compose, kubectl) and
#: goyaml.v2 (sigs.k8s.io/yaml, the API server) refuse "excessive aliasing" by a
#: ratio of aliases to decoded nodes; a fixed budget is simpler to state and still
#: lets every real file through (anchors for x- defaults add a few hundred nodes).
MAX_ALIAS_NODES = 1_000_000

_ANCHOR = re.compile(r"&([^\s,\[\]{}]+)")


class _Frame:
    """A mapping or sequence being converted: where its children go, what they cost."""

    __slots__ = ("i", "key", "merges", "node", "out", "seq", "size")

    def __init__(self, node: Any, out: Any, seq: bool) -> None:
        self.node = node
        self.out = out
        self.seq = seq
        self.i = 0
        self.size = 1
        self.key: Any = _NO_KEY
        self.merges: list[YamlMap] | None = None


_NO_KEY = object()
_MERGE_PENDING = object()


class _Converter:
    """Node tree -> YamlMap / YamlList / scalars, sharing aliased nodes once.

    Iterative (libyaml nests up to 1,000 levels, more than Python's recursion limit
    allows), and it counts what aliases would expand to without expanding them: each
    node's size (itself and everything below, aliases included) is computed once, and
    every later use of the node (an alias) adds that size again. A stream whose
    aliases add more than :data:`MAX_ALIAS_NODES` nodes is refused, as is an alias
    inside the very node it names (``ports: &p [*p]``), which yaml.v3 refuses as
    "anchor 'p' value contains itself".
    """

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.text = text
        # id(node) -> (node, value, size). The node is kept so that its id cannot be
        # reused by another node while the cache lives (one stream).
        self.done: dict[int, tuple[Any, Any, int]] = {}
        self.building: set[int] = set()
        self.added = 0  # nodes added by aliases so far

    def value(self, root: yaml.Node) -> Any:
        import yaml

        scalar = yaml.ScalarNode
        result, _ = self._use(root)
        if result is not _PENDING:
            return result
        stack: list[_Frame] = [self._open(root)]
        while True:
            frame = stack[-1]
            items = frame.node.value
            n = len(items)
            i = frame.i
            # Children in a tight loop; a mapping or sequence met for the first time
            # is pushed, and its value delivered here when it is complete.
            if frame.seq:
                out, lines = frame.out, frame.out.item_lines
                while i < n:
                    child = items[i]
                    if type(child) is scalar:
                        value, size = _scalar(child), 1
                    else:
                        value, size = self._use(child)
                        if value is _PENDING:
                            break
                    out.append(value)
                    lines.append(child.start_mark.line + 1)
                    frame.size += size
                    i += 1
            else:
                while i < n:
                    key_node, child = items[i]
                    if frame.key is _NO_KEY:
                        merge = key_node.tag == _TAG_MERGE
                        frame.key = _MERGE_PENDING if merge else self._key(key_node, frame)
                    if type(child) is scalar:
                        value, size = _scalar(child), 1
                    else:
                        value, size = self._use(child)
                        if value is _PENDING:
                            break
                    self._put(frame, key_node, child, value, size)
                    i += 1
            frame.i = i
            if i < n:
                child = items[i] if frame.seq else items[i][1]
                stack.append(self._open(child))
                continue
            stack.pop()
            done = self._close(frame)
            if not stack:
                return done
            parent = stack[-1]
            size = self.done[id(frame.node)][2]
            if parent.seq:
                parent.out.append(done)
                parent.out.item_lines.append(frame.node.start_mark.line + 1)
                parent.size += size
            else:
                key_node = parent.node.value[parent.i][0]
                self._put(parent, key_node, frame.node, done, size)
            parent.i += 1

    def _use(self, node: yaml.Node) -> tuple[Any, int]:
        """The value of a mapping or sequence seen before (an alias), or of a scalar
        (converted again: an aliased scalar adds one node, and costs its own alias
        token in the text), or _PENDING for a collection met for the first time."""
        import yaml

        if isinstance(node, yaml.ScalarNode):
            return _scalar(node), 1
        key = id(node)
        if key in self.done:
            _, value, size = self.done[key]
            self.added += size
            if self.added > MAX_ALIAS_NODES:
                raise self._error(
                    "document contains excessive aliasing: its aliases expand it by more "
                    f"than {MAX_ALIAS_NODES:,} nodes",
                    node,
                )
            return value, size
        if key in self.building:
            name = _ANCHOR.match(self.text, node.start_mark.index)
            anchor = f"anchor '{name.group(1)}'" if name else "an anchor"
            raise self._error(f"{anchor} value contains itself", node)
        return _PENDING, 0

    def _open(self, node: yaml.Node) -> _Frame:
        import yaml

        line = node.start_mark.line + 1
        seq = isinstance(node, yaml.SequenceNode)
        out: YamlMap | YamlList = YamlList(line) if seq else YamlMap(line)
        self.building.add(id(node))
        return _Frame(node, out, seq)

    def _key(self, key_node: yaml.Node, frame: _Frame) -> Any:
        import yaml

        if not isinstance(key_node, yaml.ScalarNode):
            raise self._error("invalid map key: a mapping or sequence", key_node)
        key = _scalar(key_node)
        frame.size += 1
        if isinstance(key, float) and key != key:  # NaN keys never compare equal
            key = str(key)
        out = frame.out
        if key in out:
            first = out.key_lines[key]
            raise self._error(f'mapping key "{key}" already defined at line {first}', key_node)
        return key

    def _put(self, frame: _Frame, key_node: Any, value_node: Any, value: Any, size: int) -> None:
        """A mapping's value (or its merge key's source maps) in place."""
        frame.size += size
        if frame.key is _MERGE_PENDING:
            sources = value if isinstance(value, list) else [value]
            for source in sources:
                if not isinstance(source, YamlMap):
                    raise self._error(
                        "map merge requires map or sequence of maps as the value", value_node
                    )
                if frame.merges is None:
                    frame.merges = []
                frame.merges.append(source)
        else:
            out = frame.out
            out[frame.key] = value
            out.key_lines[frame.key] = key_node.start_mark.line + 1
        frame.key = _NO_KEY

    def _close(self, frame: _Frame) -> Any:
        out = frame.out
        # Merge keys (yaml.v3 supports them; compose files use them with x- anchors):
        # explicit keys win, earlier merge sources win over later ones.
        for source in frame.merges or ():
            for k, v in source.items():
                if k not in out:
                    out[k] = v
                    out.key_lines[k] = source.key_lines.get(k, source.line)
        key = id(frame.node)
        self.building.discard(key)
        self.done[key] = (frame.node, out, frame.size)
        return out

    def _error(self, message: str, node: yaml.Node) -> PlanError:
        line = node.start_mark.line + 1
        return PlanError(f"{self.source}:{line}: {message}", file=self.source, line=line)


_PENDING = object()


def load_documents(text: str, source: str = "<text>") -> list[Any]:
    """Every document of a YAML stream, as yaml.v3 would decode it, with lines kept.

    Args:
        text: the YAML text (one or more ``---`` separated documents).
        source: the file name used in error messages.

    Returns:
        One value per document (``None`` for an empty one): YamlMap, YamlList or a
        scalar.

    Raises:
        PlanError: the text is not YAML (with the line of the problem), or it
            repeats a key in one mapping, which Docker and kubectl refuse too.
    """
    import yaml

    if len(text) > MAX_BYTES:
        raise PlanError(f"{source}: larger than {MAX_BYTES // (1024 * 1024)} MB", file=source)
    loader = _loader_class()(text)
    converter = _Converter(source, text)
    docs: list[Any] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            docs.append(None if node is None else converter.value(node))
            converter.done.clear()  # anchors do not cross documents
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or exc.context or "invalid YAML"
        where = f"{source}:{line}" if line else source
        raise PlanError(f"{where}: YAML error: {what}", file=source, line=line) from exc
    except yaml.YAMLError as exc:
        raise PlanError(f"{source}: YAML error: {exc}", file=source) from exc
    finally:
        loader.dispose()
    return docs
