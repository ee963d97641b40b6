"""Reading settings: a stage's flags and environment into validated `Settings`.

Also its `--help`, and the environment variables `make submit` forwards (`env_names`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from jobs.core.parsers import ConfigError
from jobs.core.settings import Scope, Setting, Settings, settings_fields

if TYPE_CHECKING:
    from jobs.core.stage import Stage


def stage_classes(stage: Stage) -> list[type]:
    return [Settings] + ([stage.options] if stage.options is not None else [])


def applies(s: Setting, stage: Stage, cls: type) -> bool:
    return cls is not Settings or s.scope is Scope.ALL or s.scope in stage.scopes


def env_names(stage: Stage) -> list[str]:
    """The environment variables this stage reads (what `make submit` forwards)."""
    return [
        s.env
        for cls in stage_classes(stage)
        for _, s in settings_fields(cls)
        if s.env and applies(s, stage, cls)
    ]


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one ConfigError line, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see --help)")


def shown(f: dataclasses.Field[Any], s: Setting, stage: Stage | None = None) -> str:
    if stage is not None and f.name in stage.defaults:
        return str(stage.defaults[f.name])
    if s.shown is not None:
        return s.shown
    if f.default is None or f.default == ():
        return "unset"
    return str(f.default).lower() if isinstance(f.default, bool) else str(f.default)


def build_parser(stage: Stage) -> argparse.ArgumentParser:
    parser = Parser(
        prog=f"python -m jobs.{stage.name}",
        description=f"Run the '{stage.name}' stage (walkthrough part {stage.part}). Every "
        "option also reads the environment variable shown; flags win over the environment.",
    )
    for cls in stage_classes(stage):
        for f, s in settings_fields(cls):
            if not applies(s, stage, cls):
                continue
            if s.switch:
                parser.add_argument(s.flag, dest=f.name, action="store_true", help=s.help)
                continue
            parser.add_argument(
                s.flag,
                dest=f.name,
                metavar=f.name.upper(),
                help=f"{s.help} [env {s.env}; default: {shown(f, s, stage)}]",
            )
    return parser


def _read(
    cls: type, stage: Stage, args: argparse.Namespace, env: Mapping[str, str]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f, s in settings_fields(cls):
        if not applies(s, stage, cls):
            continue  # not this stage's: the field's default, unread
        given = getattr(args, f.name)
        if s.switch:
            values[f.name] = bool(given)
        elif given is not None:
            values[f.name] = s.parse(str(given), s.flag)
        elif s.env and s.env in env:
            values[f.name] = s.parse(env[s.env], s.env)
        elif f.name in stage.defaults:
            values[f.name] = stage.defaults[f.name]
    return values


def resolve(
    stage: Stage,
    argv: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Parse flags and environment into validated settings. Raises ConfigError."""
    env = os.environ if env is None else env
    args, unknown = build_parser(stage).parse_known_args(list(argv))
    if unknown:
        raise ConfigError(f"unknown argument {unknown[0]!r} (see --help)")
    options = None
    if stage.options is not None:
        options = stage.options(**_read(stage.options, stage, args, env))
    return Settings(stage=stage.name, options=options, **_read(Settings, stage, args, env))
