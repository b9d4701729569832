"""Fixtures for the client tests: ``panes`` starts ``wschat join`` in tmux panes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.client.tmux import Pane


@pytest.fixture
def panes(tmp_path: Path) -> Iterator[Callable[..., Pane]]:
    """Start panes with ``panes(*join_args, width=, height=, env=)``; all closed after."""
    started: list[Pane] = []

    def start(*args: str, **kwargs: object) -> Pane:
        pane = Pane(tmp_path, list(args), **kwargs)  # type: ignore[arg-type]
        started.append(pane)
        return pane

    yield start
    for pane in started:
        pane.close()
