"""Fixtures for the Quick start's tests: one virtualenv with the checkout installed, per session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .project import QuickStart, Venv


@pytest.fixture(scope="session")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return Venv.create(tmp_path_factory.mktemp("readme") / "venv")


@pytest.fixture
def new_project(
    request: pytest.FixtureRequest, venv: Venv, tmp_path: Path
) -> Iterator[Callable[[str], QuickStart]]:
    """Makes an empty project directory run by ``venv`` on the Redis at the URL given.

    Stops every process the project started, also when the test fails; then the test's report
    carries their output.
    """
    projects: list[QuickStart] = []

    def make(redis_url: str) -> QuickStart:
        name = f"project{len(projects)}"
        project = QuickStart(venv, tmp_path / name, tmp_path / f"{name}-logs", redis_url)
        projects.append(project)
        return project

    try:
        yield make
    finally:
        for project in projects:
            project.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for project in projects:
                request.node.add_report_section("call", "process output", project.logs())
