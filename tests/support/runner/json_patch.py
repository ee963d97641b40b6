"""RFC 6902 JSON Patch, as the API server applies the autoscaler's patches to a RayCluster."""

from __future__ import annotations

import copy
import re
from typing import Any


class PatchError(ValueError):
    pass


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"invalid JSON pointer {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(token: str, size: int, *, append_ok: bool) -> int:
    if append_ok and token == "-":
        return size
    if not re.fullmatch(r"0|[1-9][0-9]*", token):
        raise PatchError(f"invalid array index {token!r}")
    index = int(token)
    if index > size or (index == size and not append_ok):
        raise PatchError(f"array index {index} out of range")
    return index


def _parent(doc: Any, pointer: str) -> tuple[Any, str]:
    tokens = _tokens(pointer)
    if not tokens:
        raise PatchError("the whole document cannot be patched")
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(token, len(node), append_ok=False)]
        else:
            raise PatchError(f"doc is missing path: {pointer}")
    if not isinstance(node, dict | list):
        raise PatchError(f"doc is missing path: {pointer}")
    return node, tokens[-1]


def _get(doc: Any, pointer: str) -> Any:
    node = doc
    for token in _tokens(pointer):
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(token, len(node), append_ok=False)]
        else:
            raise PatchError(f"doc is missing path: {pointer}")
    return node


def _add(doc: Any, pointer: str, value: Any) -> None:
    node, key = _parent(doc, pointer)
    if isinstance(node, dict):
        node[key] = value
    else:
        node.insert(_index(key, len(node), append_ok=True), value)


def _remove(doc: Any, pointer: str) -> Any:
    node, key = _parent(doc, pointer)
    if isinstance(node, dict):
        if key not in node:
            raise PatchError(f"remove operation does not apply: doc is missing key: {pointer}")
        return node.pop(key)
    return node.pop(_index(key, len(node), append_ok=False))


def apply_json_patch(doc: Any, ops: Any) -> Any:
    """Applies a JSON patch to a copy of `doc` and returns it; PatchError leaves nothing half
    applied."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch is a list of operations")
    out = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or not isinstance(op.get("path"), str):
            raise PatchError(f"invalid operation {op!r}")
        kind, path = op.get("op"), op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"{kind} operation without a value: {op!r}")
        if kind == "add":
            _add(out, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(out, path)
        elif kind == "replace":
            node, key = _parent(out, path)
            if isinstance(node, dict):
                node[key] = copy.deepcopy(op["value"])  # a missing key is set (see above)
            else:
                node[_index(key, len(node), append_ok=False)] = copy.deepcopy(op["value"])
        elif kind == "test":
            if _get(out, path) != op["value"]:
                raise PatchError(f"testing value {path} failed")
        elif kind in ("move", "copy"):
            source = op.get("from")
            if not isinstance(source, str):
                raise PatchError(f"{kind} operation without from: {op!r}")
            value = _remove(out, source) if kind == "move" else copy.deepcopy(_get(out, source))
            _add(out, path, value)
        else:
            raise PatchError(f"unknown operation {kind!r}")
    return out


# ---------------------------------------------------------------------------------------------
# Objects as KubeRay writes them.
