"""How a settings section is declared and read from the environment, for all three sections
(the pipeline's ``core.options``, the training packages' ``packaging.settings``, the caption
service's ``core.caption_settings``).

A section is a pydantic model (pydantic is not Dagster: core stays Dagster-free) whose fields are
declared once with :func:`setting_field`: type, default, help and bounds. Its field types are ones
Dagster's config system takes too (``str``, ``int``, ``float``, ``bool``, ``X | None``,
``list[X]``), so each Dagster resource (``defs/shared/resources.py``) subclasses its section and
restates nothing: a type checker follows the inheritance, the launchpad shows the help as the
field's description. :func:`read_env` is the one environment reader (``<PREFIX><FIELD>``).
"""

from __future__ import annotations

import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic


@dataclass(frozen=True)
class Setting:
    """What a field means and how it is bounded; ``flag`` is its CLI flag (``""``: none)."""

    help: str
    flag: str | None = None
    choices: tuple[str, ...] | None = None
    ge: float | None = None  # value >= ge
    gt: float | None = None  # value > gt
    le: float | None = None  # value <= le
    path: bool = False  # a local path or URL: made absolute (local) before use and hashing
    hashed: bool = True  # part of the `pipeline` record's settings_hash (shapes the output)
    steps: tuple[str, ...] = ()  # the intermediate steps whose values it shapes (core.layout.STEPS)
    # a setting added after outputs were written: in the `pipeline` record and the step digests only
    # when set away from its default, so what earlier versions wrote keeps its record, data version
    # and step keys (core.options.recorded_settings)
    recorded_when_set: bool = False
    # a setting of the code location (sensor, schedule, checks), read when it loads or ticks: no
    # CLI flag, and a run's own config may not change it (the run would not use it)
    location: bool = False


def flag_help(text: str) -> str:
    """``text`` as an argparse flag's help: argparse %-formats help strings (``%(default)s``), so a
    literal % of a setting's help or default is doubled."""
    return text.replace("%", "%%")


def setting_field(default: Any, help: str, **meta: Any) -> Any:
    """A section's field: its default, its help (the launchpad's description) and its
    :class:`Setting`, kept in the field's pydantic metadata."""
    info = pydantic.Field(default=default, description=help)
    info.metadata.append(Setting(help, **meta))
    return info


class Section(pydantic.BaseModel):
    """A settings section: fields declared with :func:`setting_field`, nothing validated here
    (each section's own value or resource checks its values, with messages that name them)."""

    # fields named model_dir / model_frames are settings, not pydantic's namespace
    model_config = pydantic.ConfigDict(protected_namespaces=())


def setting_of(info: Any) -> Setting:
    """The :class:`Setting` of a pydantic field."""
    return next((m for m in info.metadata if isinstance(m, Setting)), Setting(info.description or ""))


def section_fields(section: type[pydantic.BaseModel]) -> list[tuple[str, Any, Any, Setting]]:
    """``(name, type, default, Setting)`` of every field of ``section``, in declaration order."""
    return [(name, info.annotation, info.default, setting_of(info)) for name, info in section.model_fields.items()]


def base_type(kind: Any) -> tuple[type, bool]:
    """``(scalar type, optional)`` of a field type: ``float | None`` -> ``(float, True)``;
    ``list[str]`` and ``tuple[str, ...]`` -> ``(list, False)``."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return base_type(args[0])[0], True
    if origin in (list, tuple):
        return list, False
    return kind, False


def item_type(kind: Any) -> type:
    """The item type of a list field (``list[float]`` -> ``float``); ``str`` otherwise."""
    args = [a for a in typing.get_args(kind) if a is not Ellipsis]
    return args[0] if args else str


def parse_text(raw: str, kind: Any) -> Any:
    """One setting's value from text (an environment variable or a CLI argument); a list is
    comma-separated and comes back as a tuple."""
    scalar, optional = base_type(kind)
    text = raw.strip()
    if optional and text.lower() in ("", "none", "null", "off"):
        return None
    if scalar is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {raw!r}")
    if scalar is list:
        item = item_type(kind)
        return tuple(part.strip() if item is str else parse_text(part, item)
                     for part in text.split(",") if part.strip())
    if scalar is int:
        try:
            return int(text)
        except ValueError:
            pass
        try:  # a whole number written as a float: 25e12 pixels, 1e6 clips
            number = float(text)
        except ValueError:
            number = math.nan
        if math.isfinite(number) and number.is_integer() and abs(number) < 2**53:
            return int(number)
        raise ValueError(f"not a whole number: {raw!r}") from None
    if scalar is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"not a number: {raw!r}") from None
    return raw


def read_env(section: type[pydantic.BaseModel], prefix: str,
             environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``<prefix><FIELD>`` variables that are set, parsed (unknown names are ignored): the one
    environment reader of every section."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, kind, _default, _meta in section_fields(section):
        raw = environ.get(prefix + name.upper())
        if raw is None:
            continue
        try:
            values[name] = parse_text(raw, kind)
        except ValueError as exc:
            raise ValueError(f"{prefix}{name.upper()}: {exc}") from None
    return values


def coerce(value: Any, kind: Any) -> Any:
    """``value`` as a field of type ``kind`` takes it (a list becomes a tuple), or TypeError /
    ValueError saying what was expected."""
    scalar, optional = base_type(kind)
    if value is None:
        if optional:
            return None
        raise TypeError("a value is required")
    if scalar is list:
        if isinstance(value, str):
            raise TypeError("expected a list of names")
        return tuple(str(v) for v in value)
    if scalar is bool:
        if not isinstance(value, bool):
            raise TypeError("expected true or false")
        return value
    if scalar is int:
        if isinstance(value, bool) or not isinstance(value, int) and not (
                isinstance(value, float) and value.is_integer()):
            raise TypeError("expected a whole number")
        return int(value)
    if scalar is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("expected a number")
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return float(value)
    if not isinstance(value, str):
        raise TypeError("expected text")
    return value


def bound_text(value: float) -> str:
    """A bound as written: whole numbers in full (``268435456``, not ``2.68435e+08``)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def allowed_range(meta: Setting) -> str:
    """A numeric setting's bounds in words: ``1 to 256``, ``above 0, at most 86400``."""
    low = (bound_text(meta.ge) if meta.ge is not None
           else f"above {bound_text(meta.gt)}" if meta.gt is not None else None)
    if meta.le is None:
        return f"at least {low}" if meta.ge is not None else low or "any number"
    if meta.ge is not None:
        return f"{low} to {bound_text(meta.le)}"
    return f"{low}, at most {bound_text(meta.le)}" if low else f"at most {bound_text(meta.le)}"


def check(name: str, value: Any, meta: Setting) -> list[str]:
    """What is wrong with ``value`` against the choices and bounds of ``meta`` (empty: nothing)."""
    if value is None:
        return []
    if meta.choices is not None and value not in meta.choices:
        return [f"{name}={value!r} (choose one of {', '.join(meta.choices)})"]
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return []
    within = (meta.ge is None or value >= meta.ge) and (meta.gt is None or value > meta.gt) \
        and (meta.le is None or value <= meta.le)
    return [] if within else [f"{name}={value!r} is out of bounds (allowed: {allowed_range(meta)})"]
