"""An offline Airflow home in a temporary directory, its database migrated once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from activitysmith_track.emulator import Emulator

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

import _support  # noqa: E402

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow-home")
    shutil.copytree(HERE / "dags", home / "dags")
    shutil.copytree(HERE / "plugins", home / "plugins")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
        # Nothing reaches out: no provider or version checks, no usage data.
        "AIRFLOW__CORE__CHECK_FOR_UPDATES": "False",
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        "SCARF_ANALYTICS": "false",
    }
    done = subprocess.run(
        [AIRFLOW, "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return env


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def airflow(airflow_env: dict[str, str], emu: Emulator, tmp_path: Path) -> object:
    """Run an ``airflow`` command against the emulator; returns the finished process."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **_support.worker_env(emu),
            **{k: v for k, v in airflow_env.items() if k.startswith(("AIRFLOW", "SCARF"))},
        }
        env["ETL_STATE_DIR"] = str(tmp_path)
        return subprocess.run(
            [AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )

    return run
