"""`make run`, the README's first set-up command: offline it needs a checkpoint, and it must
not reinstall the package on every call (issue 17: it could take neither MODEL nor
PRETRAINED, and ran `pip install` each time)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _dry_run(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["make", "-n", "run", *args], cwd=folder, capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.fixture()
def project(tmp_path) -> Path:
    """The Makefile and pyproject.toml beside a stand-in venv (make -n runs nothing)."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    return tmp_path


def test_make_run_passes_model_and_pretrained(project):
    out = _dry_run(project, "MODEL=ViT-B-32", "PRETRAINED=/w/b32.safetensors", "PHOTOS=/p")

    assert '--model "ViT-B-32"' in out
    assert '--pretrained "/w/b32.safetensors"' in out
    assert "--model" not in _dry_run(project, "PHOTOS=/p")


def test_make_run_installs_once_until_pyproject_changes(project):
    assert "pip install" in _dry_run(project)  # a fresh venv: install first

    stamp = project / ".venv" / ".installed"
    stamp.touch()
    assert "pip install" not in _dry_run(project)

    later = time.time() + 5
    os.utime(project / "pyproject.toml", (later, later))
    assert "pip install" in _dry_run(project)
