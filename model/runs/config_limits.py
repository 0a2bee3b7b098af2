"""Limits on config values: ranges, names that become paths, and how far YAML may expand (config
files and override values are read here, within those limits).

:func:`deepfusion.model.runs.config.validate` applies them after the type checks. Each limit is
where a larger or stranger value cannot mean anything useful and would otherwise fail deep inside a
library (numpy's seed range, an overflow in the schedule) or put files where the user did not
ask (a ``preset`` of ``../../x``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from deepfusion.errors import ConfigError, first_line

MAX_EPOCHS = 100_000
MIN_BATCH = 2  # NT-Xent needs one negative, the head's BatchNorm two samples
TEMPERATURE = (1e-3, 100.0)  # below, 1/t makes the logits meaningless; above, every pair looks alike
RANGES = {
    ("data", "seed"): (0, 2**32 - 1),
    ("train", "seed"): (0, 2**32 - 1),  # numpy's seed range
    ("train", "epochs"): (1, MAX_EPOCHS),
    ("optim", "warmup_epochs"): (0, MAX_EPOCHS),
    ("loss", "temperature"): TEMPERATURE,
    ("eval", "knn_t"): TEMPERATURE,
}
INT_MAX = 2**31 - 1  # every other integer key: what torch's C++ side takes without overflowing
# Strings that become file or folder names: a plain name, never a path.
NAME_KEYS = (("train", "name"), ("preset",))
NAME_BYTES = 200  # train.name is the whole folder name, within the 255 bytes a file name may have
# Strings that are paths: only NUL, which no path can hold, is refused.
PATH_KEYS = (("train", "out_dir"), ("data", "root"))
YAML_VALUES = 100_000  # values a YAML document may expand to through aliases
YAML_BYTES = 1_000_000  # a config is a few kB; parsing megabytes takes minutes and gigabytes of memory


def check_size(size: int, source: str, limit: int = YAML_BYTES) -> None:
    """Refuse a YAML text of more than ``limit`` bytes before it is parsed."""
    if size > limit:
        raise ConfigError(
            f"{source} holds {size} bytes of YAML, more than a config needs ({limit} at most); "
            "pass a config file of the keys you set, or put data in a data file"
        )


def unique_key_loader():
    """A ``yaml.SafeLoader`` that refuses a key given twice in one mapping (two ``train:`` sections
    would otherwise merge silently, the later one winning)."""

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: the base class reports it
                    break
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} is given twice", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def check_expansion(data: Any, source: str, limit: int = YAML_VALUES) -> None:
    """Refuse YAML whose aliases expand to more than ``limit`` values (an alias bomb, or a cycle).

    PyYAML builds aliases as shared references, so loading is quick; it is every later walk (the
    config hash, ``dataclasses.asdict``) that would expand them. This walk stops at the limit.
    """
    stack, seen = [data], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > limit:
            raise ConfigError(
                f"{source}: the YAML expands to more than {limit} values (through aliases '*name' "
                "or a cycle); write the values out"
            )
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)


def _get(cfg, keys: tuple[str, ...]):
    return getattr(cfg, keys[0]) if len(keys) == 1 else getattr(getattr(cfg, keys[0]), keys[1])


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_ranges(cfg, sections) -> None:
    """Every key within its range (:data:`RANGES`), every other integer at most :data:`INT_MAX`."""
    for section in sections:
        for f in dataclasses.fields(getattr(cfg, section)):
            value = getattr(getattr(cfg, section), f.name)
            lo, hi = RANGES.get((section, f.name), (None, INT_MAX if _is_int(value) else None))
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                span = f"lie in [{_show(lo)}, {_show(hi)}]" if lo is not None else f"be at most {hi}"
                raise ConfigError(f"{section}.{f.name}={value!r} must {span}")


def _show(bound) -> str:
    return str(bound) if _is_int(bound) else f"{bound:g}"


def check_name(where: str, value) -> None:
    """A name that becomes a folder or file name: not empty, no '/', no NUL, not '.' or '..', short."""
    if (
        not isinstance(value, str)
        or not value
        or value in (".", "..")
        or "/" in value
        or "\0" in value
        or len(value.encode("utf-8", "surrogateescape")) > NAME_BYTES
    ):
        raise ConfigError(
            f"{where}={value!r} must be a plain folder name: not empty, not '.' or '..', without '/' "
            f"or NUL bytes, at most {NAME_BYTES} bytes"
        )


def check_names_and_paths(cfg) -> None:
    """:data:`NAME_KEYS` follow :func:`check_name` (``train.name`` may be unset); :data:`PATH_KEYS` hold no NUL."""
    for keys in NAME_KEYS:
        value = _get(cfg, keys)
        if not (keys == ("train", "name") and value is None):
            check_name(".".join(keys), value)
    for keys in PATH_KEYS:
        value = _get(cfg, keys)
        if isinstance(value, str) and "\0" in value:
            raise ConfigError(f"{'.'.join(keys)}={value!r} holds a NUL byte, which no path can hold")


_LOADER = unique_key_loader()


def read_yaml(path: Path) -> Any:
    """The YAML of a config file, read within the size limit."""
    try:
        check_size(path.stat().st_size, str(path))  # before reading: parsing megabytes takes minutes
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str) -> Any:
    """YAML text parsed within the size and alias-expansion limits, a key given twice refused."""
    check_size(len(text.encode(errors="replace")), source)
    try:
        data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or first_line(err)
        raise ConfigError(f"malformed YAML in {source}{line}: {problem}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as err:  # e.g. bad !!timestamp
        raise ConfigError(f"malformed YAML in {source}: {err}") from None
    check_expansion(data, source)  # an alias bomb is refused before anything walks it
    return data
