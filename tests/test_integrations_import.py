"""The orchestrator integrations are optional: importing them never imports an engine.

The engines themselves are tested in their own environments (tests/integrations/, run by
.ci/integrations); here, where none is installed, the modules must still import, and a
plain ``import activitysmith_track`` must not reach for any of them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from activitysmith_track import ArgumentTypeError, ValidationError

ENGINES = ("celery", "airflow", "prefect", "rq", "redis", "kombu", "pluggy")


def engines_loaded_by(code: str) -> list[str]:
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted(m for m in {ENGINES!r} if m in sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return list(json.loads(done.stdout))


def test_importing_the_package_imports_no_engine() -> None:
    assert engines_loaded_by("import activitysmith_track") == []


@pytest.mark.parametrize("module", ["celery", "airflow", "prefect", "rq"])
def test_each_integration_imports_without_its_engine(module: str) -> None:
    assert engines_loaded_by(f"import activitysmith_track.{module}") == []


def test_track_celery_refuses_what_is_not_an_app() -> None:
    from activitysmith_track.celery import track_celery

    with pytest.raises(ArgumentTypeError, match="app must be a Celery application"):
        track_celery(object())


def test_integration_options_are_checked_at_setup() -> None:
    from activitysmith_track.prefect import track_flow
    from activitysmith_track.rq import tracked_job

    with pytest.raises(ValidationError, match="colour"):
        tracked_job("Import", colour="red")
    with pytest.raises(ValidationError, match="stream_key"):
        track_flow("Nightly", stream_key="mine")
