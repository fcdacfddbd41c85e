"""The documentation site builds without a warning: every link and anchor between the pages
resolves, and every docstring of the API reference agrees with its signature (mkdocs --strict)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("mkdocstrings", reason="the docs build needs the `docs` extra: pip install -e '.[docs]'")


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        capture_output=True, text=True, cwd=config.parent, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )


def test_docs_build_strict_and_render_the_api_reference(tmp_path):
    result = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr[-4000:]
    learner = (tmp_path / "site" / "reference" / "learner" / "index.html").read_text()
    for anchor in ("epochal.learner.Learner", "epochal.learner.Learner.fit", "epochal.learner.Learner.predict"):
        assert f'id="{anchor}"' in learner
    callbacks = (tmp_path / "site" / "reference" / "callbacks" / "index.html").read_text()
    assert 'id="epochal.callbacks.EarlyStopping"' in callbacks
    # every guide and reference page named in the nav was written
    for page in ("learner", "your-own-data", "reference/data", "reference/averaging"):
        assert (tmp_path / "site" / page / "index.html").is_file()


def test_a_broken_anchor_or_a_docstring_naming_a_missing_parameter_fails_the_build(tmp_path):
    # a copy of the site with one broken link and one module whose docstring names a parameter
    # the function does not have: --strict must fail on both, naming the file
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    (tmp_path / "src" / "broken").mkdir(parents=True)
    (tmp_path / "src" / "broken" / "__init__.py").write_text(
        'def f(a):\n    """One function.\n\n    Args:\n        a: the first.\n        b: not a parameter.\n    """\n'
    )
    page = "# Broken\n\n[see](../results.md#no-such-heading)\n\n::: broken\n"
    (tmp_path / "docs" / "reference" / "broken.md").write_text(page)
    last = "      - Training state: reference/state.md\n"
    text = (tmp_path / "mkdocs.yml").read_text().replace(last, last + "      - Broken: reference/broken.md\n")
    (tmp_path / "mkdocs.yml").write_text(text)
    result = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-heading" in result.stderr
    assert "Parameter 'b' does not appear in the function signature" in result.stderr
