"""jobs/README.md's settings table, generated from the declarations of every registered stage.

`python -m jobs.settings_table` prints it; tests/unit/test_settings.py keeps jobs/README.md in step.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from jobs import registry
from jobs.core.reading import applies, shown, stage_classes
from jobs.core.settings import Settings, settings_fields

if TYPE_CHECKING:
    from jobs.core.stage import Stage


def readme_table(stages: Sequence[Stage]) -> str:
    """The settings of every stage as a Markdown table (jobs/README.md's, kept in step by a
    test)."""
    rows = ["| Variable | Flag | Default | Stages | Meaning |", "|---|---|---|---|---|"]
    seen: set[str] = set()
    for cls in [Settings, *(s.options for s in stages if s.options is not None)]:
        for f, s in settings_fields(cls):
            if s.switch or f.name in seen:
                continue
            seen.add(f.name)
            users = [st.name for st in stages if applies(s, st, cls) and cls in stage_classes(st)]
            used_by = "all" if len(users) == len(stages) else ", ".join(users)
            rows.append(f"| `{s.env}` | `{s.flag}` | {shown(f, s)} | {used_by} | {s.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(readme_table([registry.load(name) for name in registry.names()]))
    sys.exit(0)
