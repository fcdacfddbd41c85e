"""Every script in examples/ runs to completion (each asserts its own results)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
OWN_DATA = ["own_torch_dataset.py", "own_tensors.py", "own_image_folder.py", "own_csv.py", "own_dict_dataset.py"]


def test_examples_exist():
    assert len(EXAMPLES) >= 2


#: The README's Python quick start trains 4 epochs after a 50-step LR finder on 1,600 images (70-150 s
#: on the shared 2-core machine, the longest test of the default run): `slow`. Its parts each have
#: fast tests, the README check in CI runs the command-line quick start, and the test below keeps
#: README and script identical.
LONG = {"quickstart.py"}


@pytest.mark.parametrize("script", [pytest.param(p, marks=pytest.mark.slow) if p.name in LONG else p
                                    for p in EXAMPLES], ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    # run from inside tmp_path: scripts that write relative to the working folder (quickstart.py's ./runs) land there
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True, check=False, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert list((tmp_path / "runs").iterdir())  # it really trained into a run folder


def test_readme_python_quick_start_is_examples_quickstart_word_for_word():
    readme = (EXAMPLES[0].parents[1] / "README.md").read_text()
    section = readme[readme.index("## Quick start: Python") :]
    snippet = section[section.index("```python\n") + len("```python\n") :]
    snippet = snippet[: snippet.index("```")]
    quickstart = (EXAMPLES[0].parent / "quickstart.py").read_text()
    assert snippet == quickstart


def test_your_own_data_page_shows_each_example_word_for_word_and_is_linked():
    page = (ROOT / "docs" / "your-own-data.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert sorted(OWN_DATA) == sorted(p.name for p in EXAMPLES if p.name.startswith("own_"))
    for name in OWN_DATA:
        assert (ROOT / "examples" / name).read_text() in blocks, f"docs/your-own-data.md does not show {name} as it is"
    assert len(blocks) == len(OWN_DATA)  # no other code on the page that CI would not run
    assert "(docs/your-own-data.md)" in (ROOT / "README.md").read_text()
    assert "(your-own-data.md)" in (ROOT / "docs" / "data.md").read_text()
