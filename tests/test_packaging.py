"""The sdist a release is built from: a licence, metadata, and tests that run from it (issue 18)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"


def test_the_sdist_carries_licence_docs_and_tests_that_run(tmp_path: Path) -> None:
    # the PEP 517 hook itself, in a subprocess (no isolation: no download)
    built = subprocess.run(
        [sys.executable, "-c", BUILD, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    archive = tmp_path / built.stdout.strip().splitlines()[-1]
    with tarfile.open(archive) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
        tar.extractall(tmp_path, filter="data")
        info = tar.extractfile(f"{archive.name.removesuffix('.tar.gz')}/PKG-INFO")
        assert info is not None
        metadata = info.read().decode()
    for name in (
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "docs/security.md",
        "tests/conftest.py",
        "tests/helpers.py",
        "tests/bench/plain_server.py",
        "tests/broker/conftest.py",
        "benchmarks/run.py",
        "benchmarks/redis_capacity.py",
        "wschat/bench/schema.json",
    ):
        assert name in names, f"{name} is not in the sdist"
    assert not any("__pycache__" in name for name in names)
    assert "License-Expression: MIT" in metadata
    assert "Author-email: wschat maintainers" in metadata
    assert "Provides-Extra: bench" in metadata
    # the unpacked tests run against the unpacked package
    unpacked = tmp_path / archive.name.removesuffix(".tar.gz")
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/bench/test_limits.py",
        ],
        cwd=unpacked,
        env={**os.environ, "PYTHONPATH": str(unpacked)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stdout[-2000:]
    assert " passed" in ran.stdout
