"""The README's "Use it in your own training loop" example runs as it stands."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## Use it in your own training loop", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the section should hold exactly one python example"
    return blocks[0]


def test_readme_example_runs_and_prints_the_shapes_it_promises():
    out = subprocess.run([sys.executable, "-c", readme_example()], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "(4, 3, 4, 64, 64)" in out.stdout
    assert "torch.Size([64, 32]) 3 torch.Size([4, 64, 64])" in out.stdout
    assert out.stdout.splitlines()[-1].startswith("exploratory ")  # one seed never decides
