"""Value parsers for settings, and ConfigError, the one-line error of a bad value.

Each parser turns the raw string of a flag or environment variable into a checked value, or
raises ConfigError with one line naming the variable.

Standard library only: the client tools (jobs.submit, jobs.results, jobs/kube/render.py) and the
Makefile's system Python read settings through these.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


class ConfigError(ValueError):
    """A setting is missing or invalid; the message is one line meant for the user."""


def integer(minimum: int) -> Callable[[str, str], int]:
    def parse(raw: str, name: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {value}")
        return value

    return parse


def optional(parse: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
    """Empty means unset (None)."""

    def parse_optional(raw: str, name: str) -> Any:
        return None if raw.strip() == "" else parse(raw, name)

    return parse_optional


def positive_float(raw: str, name: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ConfigError(f"{name} must be a finite number > 0, got {raw}")
    return value


def lr_list(raw: str, name: str) -> tuple[float, ...]:
    if raw.strip() == "":
        return ()
    return tuple(positive_float(part.strip(), name) for part in raw.split(","))


def choice(options: Sequence[str]) -> Callable[[str, str], str]:
    def parse(raw: str, name: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ConfigError(f"{name} must be one of {', '.join(options)}; got {raw!r}")
        return value

    return parse


def accelerator_type(raw: str, name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", raw):
        raise ConfigError(f"{name} must be an accelerator name such as T4 or A10G, got {raw!r}")
    return raw


def gpu_share(raw: str, name: str) -> float:
    """A trial's share of one GPU: a number in (0, 1]."""
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (0 < value <= 1):
        raise ConfigError(
            f"{name} must be a number in (0, 1]: 1 gives each trial a whole GPU, 0.5 packs two "
            f"trials onto one; got {raw!r}"
        )
    return value


def path(raw: str, name: str) -> str:
    if raw.strip() == "":
        raise ConfigError(f"{name} must not be empty")
    if "\0" in raw:
        raise ConfigError(f"{name} must not contain a NUL byte")
    return str(Path(raw).expanduser().absolute())


def host_port(address: str) -> tuple[str, int] | None:
    """The host and port of host:port or a URL, or None where either is missing or bad."""
    try:
        parsed = urlparse(address if "://" in address else f"tcp://{address}")
        host, port = parsed.hostname, parsed.port
    except ValueError:
        return None
    return (host, port) if host and port is not None else None


def ray_address(raw: str, name: str) -> str | None:
    """Empty (start a local cluster), `auto`, host:port, or an http(s)/ray:// URL with a port."""
    value = raw.strip()
    if value in ("", "auto", "local"):
        return value or None
    scheme = value.split("://", 1)[0] if "://" in value else None
    if scheme not in (None, "http", "https", "ray"):
        raise ConfigError(
            f"{name} must be host:port or an http(s):// or ray:// URL, got {raw!r} "
            f"(unknown scheme {scheme}://)"
        )
    if host_port(value) is None:
        raise ConfigError(f"{name} must be host:port or a URL with a port, got {raw!r}")
    return value


def node_prices(raw: str, name: str) -> dict[str, Any] | None:
    """Empty (no prices), or JSON: {"gpu_node": {"on_demand": USD, "spot": USD}, "head_node":
    {...}, "source": "..."} in USD per node-hour; null where a price is not known."""
    if raw.strip() == "":
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        raise ConfigError(f"{name} must be JSON, got {raw[:60]!r}") from None
    shape = '{"gpu_node": {"on_demand": 0.54, "spot": 0.15}, "head_node": {...}, "source": "..."}'
    if not isinstance(data, dict) or not isinstance(data.get("source", ""), str):
        raise ConfigError(f"{name} must be a JSON object like {shape}")
    for node in ("gpu_node", "head_node"):
        prices = data.get(node)
        if not isinstance(prices, dict) or set(prices) - {"on_demand", "spot"}:
            raise ConfigError(f"{name}: {node} must be an object of on_demand and spot prices")
        for kind, value in prices.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if value is not None and (not number or not 0 <= value < float("inf")):
                raise ConfigError(f"{name}: {node}.{kind} must be a price >= 0 or null")
    return data


def flag(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")
