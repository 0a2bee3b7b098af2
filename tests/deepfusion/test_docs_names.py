"""The names the docs list are the names the code has.

README.md's command table against ``deepfusion.cli.COMMANDS``, its preset table against the YAML
files in ``model/runs/configs/``, ARCHITECTURE.md's registry table against the registries of
``model/network/registry.py``, and its config listing against the config dataclasses. A name missing
or extra on either side fails, naming it.
"""

import dataclasses
import re
from pathlib import Path

import pytest

import deepfusion.model.runs as runs_package
from deepfusion.cli import COMMANDS
from deepfusion.model.network.registry import BACKBONES, HEADS, NORMS, SCOPES
from deepfusion.model.runs.config import Config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = Path(runs_package.__file__).parent / "configs"
REGISTRIES = {"HEADS": HEADS, "BACKBONES": BACKBONES, "SCOPES": SCOPES, "NORMS": NORMS}


def table_rows(text: str, header: str) -> list[list[str]]:
    """The body rows (cells stripped) of the Markdown table whose header line starts with ``header``."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert len(starts) == 1, f"expected one table starting {header!r}, found {len(starts)}"
    rows = []
    for line in lines[starts[0] + 2 :]:  # past the header and the |---| line
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def code_names(cell: str) -> list[str]:
    """Every `name` in backticks in a table cell."""
    return re.findall(r"`([^`]+)`", cell)


def differences(documented, actual) -> str:
    documented, actual = set(documented), set(actual)
    parts = []
    if actual - documented:
        parts.append(f"missing from the docs: {sorted(actual - documented)}")
    if documented - actual:
        parts.append(f"in the docs but not in the code: {sorted(documented - actual)}")
    return "; ".join(parts)


def readme_commands(text: str) -> list[str]:
    names = []
    for cells in table_rows(text, "| command | what it does |"):
        match = re.match(r"`deepfusion ([a-z_]+)", cells[0])
        assert match, f"README command row without `deepfusion NAME`: {cells[0]!r}"
        names.append(match.group(1))
    return names


def readme_presets(text: str) -> list[str]:
    return [name for cells in table_rows(text, "| preset | data | model |") for name in code_names(cells[0])]


def architecture_registries(text: str) -> dict[str, list[str]]:
    return {code_names(cells[0])[0]: code_names(cells[1]) for cells in table_rows(text, "| registry | names |")}


def architecture_config_keys(text: str) -> dict[str, list[str]]:
    """Section -> keys of the ``section: {key, ...}`` listing in the yaml block under "### Config"."""
    block = text.split("### Config", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    block = "\n".join(line.split("#", 1)[0] for line in block.splitlines())  # comments off
    return {
        section: [key.strip() for key in keys.split(",") if key.strip()]
        for section, keys in re.findall(r"(\w+):\s*\{([^}]*)\}", block)
    }


@pytest.fixture(scope="module")
def readme() -> str:
    return (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def architecture() -> str:
    return (ROOT / "ARCHITECTURE.md").read_text()


def test_readme_commands_are_the_cli_commands(readme):
    assert not differences(readme_commands(readme), COMMANDS), differences(readme_commands(readme), COMMANDS)


def test_readme_presets_are_the_yaml_presets(readme):
    presets = [path.stem for path in CONFIGS.glob("*.yaml")]
    assert presets, f"no presets found in {CONFIGS}"
    assert not differences(readme_presets(readme), presets), differences(readme_presets(readme), presets)


def test_architecture_registry_table_is_the_registries(architecture):
    documented = architecture_registries(architecture)
    assert set(documented) == set(REGISTRIES), f"registry table: {sorted(documented)}, code: {sorted(REGISTRIES)}"
    for kind, registry in REGISTRIES.items():
        diff = differences(documented[kind], registry.names())
        assert not diff, f"{kind}: {diff}"


def test_architecture_config_listing_is_the_config_keys(architecture):
    documented = architecture_config_keys(architecture)
    config = Config()
    sections = [f.name for f in dataclasses.fields(config) if dataclasses.is_dataclass(getattr(config, f.name))]
    assert set(documented) == set(sections), f"config listing: {sorted(documented)}, Config: {sorted(sections)}"
    for section in sections:
        keys = [f.name for f in dataclasses.fields(getattr(config, section))]
        diff = differences(documented[section], keys)
        assert not diff, f"{section}: {diff}"


def test_a_name_missing_or_extra_is_reported():
    assert differences(["a", "b"], ["a", "b"]) == ""
    assert "missing from the docs: ['c']" in differences(["a"], ["a", "c"])
    assert "in the docs but not in the code: ['z']" in differences(["a", "z"], ["a"])
