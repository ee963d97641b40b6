"""The refusal messages of KubeRay v1.7.0's validation.go, and the port's own, compared.

`python -m tests.support.kuberay.go_messages` reads `../shared/kuberay-v1.7.0/src/
validation.go` and writes validation_messages.json beside this file: every format string
passed to fmt.Errorf, fmt.Sprintf or errors.New (string literals joined with `+` are one
message), with the source file's sha256. The JSON travels with the project, so the check
that every message of tests/support/kuberay/validation.py is one of them runs everywhere;
where the source is beside the project, a test also rebuilds the JSON and compares.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
MESSAGES = HERE / "validation_messages.json"
PORT = HERE / "validation.py"
GO_SOURCE = HERE.parents[2].parent / "shared" / "kuberay-v1.7.0" / "src" / "validation.go"
# Messages that are not validation.go's format strings: the port's own for what it does not
# port, and errors validation.go wraps from elsewhere (KubeRay's dashboard client,
# UnmarshalRuntimeEnvYAML; apimachinery's version.ParseGeneric).
NOT_VALIDATION_GO = (
    "<x>: not ported to tests/support/kuberay/validation.py yet",
    "failed to unmarshal RuntimeEnvYAML: ",
    'could not parse "<x>" as version',
)

_CALL = re.compile(r"(?:fmt\.Errorf|fmt\.Sprintf|errors\.New)\(\s*")
_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')
_JOIN = re.compile(r"\s*\+\s*")
_VERB = re.compile(r"%[-+# 0-9.]*[a-zA-Z]")


def go_formats(source: str) -> list[str]:
    """Every message format in a Go file: a call's first argument, if string literals."""
    formats = []
    for call in _CALL.finditer(source):
        pos, parts = call.end(), []
        while (literal := _LITERAL.match(source, pos)) is not None:
            parts.append(literal.group(1).encode().decode("unicode_escape"))
            pos = literal.end()
            joined = _JOIN.match(source, pos)
            if joined is None:
                break
            pos = joined.end()
        if parts:
            formats.append("".join(parts))
    return sorted(set(formats))


def snapshot(path: Path = GO_SOURCE) -> dict[str, object]:
    data = path.read_bytes()
    return {
        "source": "kuberay v1.7.0 ray-operator/pkg/utils/validation.go",
        "sha256": hashlib.sha256(data).hexdigest(),
        "formats": go_formats(data.decode()),
    }


def words(go_format: str) -> str:
    """A format's own text, without its verbs."""
    return "".join(_VERB.split(go_format))


def as_pattern(go_format: str) -> re.Pattern[str]:
    """A Go format as a regex: every verb (%s, %d, %v, %w, %q, ...) matches any text."""
    return re.compile(".*".join(re.escape(p) for p in _VERB.split(go_format)) + r"\Z", re.S)


def port_messages(path: Path = PORT) -> list[tuple[int, str]]:
    """(line, message) for every message the port builds: the first argument of Invalid() or
    problems.append(), or a returned string, with each {expression} shown as `<x>`."""

    def text(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.JoinedStr):
            return "".join(v.value if isinstance(v, ast.Constant) else "<x>" for v in node.values)
        if isinstance(node, ast.Name):  # a name bound to a string: prefix + "..."
            return strings.get(node.id)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = text(node.left), text(node.right)
            return None if left is None or right is None else left + right
        return None

    tree = ast.parse(path.read_text())
    strings = {
        target.id: node.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        argument = None
        if isinstance(node, ast.Call) and node.args:
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name in ("Invalid", "append"):
                argument = node.args[0]
        elif isinstance(node, ast.Return) and node.value is not None:
            argument = node.value
        if argument is None:
            continue
        message = text(argument)
        if message:
            found.append((node.lineno, message))
    return found


if __name__ == "__main__":
    MESSAGES.write_text(json.dumps(snapshot(), indent=1) + "\n")
    print(f"wrote {MESSAGES}", file=sys.stderr)
