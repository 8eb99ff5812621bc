"""Reading a YAML file a user wrote, with every size bounded and every error naming the file.

``yaml.safe_load`` refuses Python tags but not the rest of what a hostile or mistaken file can do:

- **alias bombs**: ``&a [x, x, ...]``, ``&b [*a, *a, ...]``, ... expand a 600-byte file to 10^9 values, which
  any walk of the result (a type check, a message that reprs it) then never finishes. Anchors, aliases
  and merge keys stay allowed (the book's grids use ``&paper`` / ``<<: *paper``); what is bounded is the
  size of the document *after* expansion (``MAX_NODES``) and its nesting (``MAX_DEPTH``), checked on the
  composed node graph before anything is constructed. An alias inside its own anchor is refused;
- **duplicate keys**, which YAML resolves silently (the last one wins): refused, naming the key and lines;
- **bytes that are not UTF-8 text** (Latin-1, UTF-16, a binary file), a FIFO or device that never ends, a
  file of gigabytes: refused before parsing, each in one line.

Errors are ``YamlError`` (a ``ValueError``) with a message that reads after the file's name:
``f"grid {path} {error}"``.
"""

from __future__ import annotations

import codecs
import stat
from pathlib import Path

import yaml

from milr_core.brief import brief, clip

MAX_BYTES = 1 << 20  # a settings file larger than 1 MiB is not a settings file
MAX_NODES = 100_000  # values, keys and items after aliases and merge keys are expanded
MAX_DEPTH = 32  # levels of nesting
MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlError(ValueError):
    """A YAML file that is refused; the message completes "<what> <path> ..."."""


class StrictLoader(yaml.SafeLoader):
    """yaml's safe loader, refusing a mapping that repeats a key (merge keys ``<<`` aside)."""

    def compose_mapping_node(self, anchor):
        node = super().compose_mapping_node(anchor)
        first_line: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == MERGE_TAG:
                continue
            line, seen = key.start_mark.line + 1, first_line.get((key.tag, key.value))
            if seen is not None:
                raise YamlError(f"repeats the key {brief(key.value)} on line {line} (first on line {seen})")
            first_line[key.tag, key.value] = line
        return node


def children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expanded_size(root: yaml.Node) -> None:
    """Refuse a node graph whose expansion (every alias copied out) exceeds MAX_NODES or MAX_DEPTH, or is cyclic.

    Each distinct node is visited once (aliases share nodes), so this costs the file's size, not the expansion's.
    """
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes once expanded, nesting depth)
    open_nodes: set[int] = set()  # on the current path: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        line = node.start_mark.line + 1
        if finished:
            parts = [sizes[id(child)] for child in children(node)]
            size, depth = 1 + sum(s for s, _ in parts), 1 + max((d for _, d in parts), default=0)
            if size > MAX_NODES:
                raise YamlError(f"expands to more than {MAX_NODES} values through its aliases (line {line})")
            if depth > MAX_DEPTH:
                raise YamlError(f"is nested more than {MAX_DEPTH} levels deep (line {line})")
            open_nodes.discard(id(node))
            sizes[id(node)] = size, depth
        elif id(node) in open_nodes:
            raise YamlError(f"holds an alias inside its own anchor (line {line}): a value cannot contain itself")
        elif id(node) not in sizes:
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children(node) if id(child) not in sizes)


def read_text(path: Path) -> str:
    """The file's text: a regular file of at most MAX_BYTES, UTF-8 (with or without a BOM), no NUL."""
    info = path.stat()  # OSError (missing, a folder's permissions) is the caller's to word
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(21, "Is a directory", str(path))
    if not stat.S_ISREG(info.st_mode):
        raise YamlError("is not a regular file (a pipe or a device?); give a file")
    if info.st_size > MAX_BYTES:
        raise YamlError(f"is {info.st_size} bytes; a settings file is at most {MAX_BYTES} bytes")
    data = path.read_bytes()[: MAX_BYTES + 1]
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise YamlError("is UTF-16 text; save it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        byte = f"byte 0x{data[error.start]:02x} at offset {error.start}"
        raise YamlError(f"is not UTF-8 text ({byte}); save it as UTF-8") from None
    if "\0" in text:
        raise YamlError("holds NUL bytes: a binary file or UTF-16 text, not UTF-8 YAML")
    return text


def parse(text: str) -> object:
    """The YAML document in ``text``, checked as the module says; YamlError otherwise."""
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node)
        return loader.construct_document(node)
    except YamlError:
        raise
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        said = [getattr(error, part, None) for part in ("context", "problem")]
        raise YamlError(f"is not valid YAML: {clip(', '.join(filter(None, said)) or str(error))}{where}") from None
    except RecursionError:
        raise YamlError(f"is not valid YAML: nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as error:  # e.g. an integer of more than 4300 digits
        raise YamlError(f"holds a value YAML cannot read: {clip(str(error))}") from None
    finally:
        loader.dispose()


def load(path: str | Path) -> object:
    """Read and parse a YAML file a user gave; OSError or YamlError, each saying what is wrong."""
    return parse(read_text(Path(path)))
