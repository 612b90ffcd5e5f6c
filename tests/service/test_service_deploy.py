"""Deployment files: the compose file validates, the image installs like the Makefile, prestart migrates."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from service.prestart import wait_for_database
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.service


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_compose_file_validates_and_has_every_service() -> None:
    env = {**os.environ, "SQSNN_SECRET_KEY": "s", "POSTGRES_PASSWORD": "p"}
    out = subprocess.run(
        ["docker-compose", "config", "--services"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert {"api", "worker", "beat", "postgres", "redis", "migrate"} <= set(out.stdout.split())
    # without a secret the deployment refuses to start
    env.pop("SQSNN_SECRET_KEY")
    out = subprocess.run(["docker-compose", "config"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "SQSNN_SECRET_KEY" in out.stderr


def test_dockerfile_installs_like_the_makefile_and_runs_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    torch_pin = re.search(r"pip install (torch==[0-9.]+)", makefile)
    assert torch_pin and f"pip install {torch_pin.group(1)}" in dockerfile
    assert "download.pytorch.org/whl/cpu" in makefile and "download.pytorch.org/whl/cpu" in dockerfile
    assert dockerfile.count("FROM ") >= 2
    assert re.search(r"^USER sqsnn$", dockerfile, re.M)


def test_default_secret_is_refused_outside_development() -> None:
    with pytest.raises(ValueError, match="SQSNN_SECRET_KEY"):
        Settings(environment="production")
    assert Settings(environment="development").environment == "development"


def test_prestart_waits_for_the_database_then_migrates(scratch_database, tmp_path) -> None:
    from service.embedded import migrate

    settings = Settings(environment="test", secret_key="k", database_url=scratch_database, home=tmp_path)  # type: ignore[arg-type]
    wait_for_database(settings, timeout_s=10)
    migrate(settings)
    engine = create_engine(scratch_database)
    assert "jobs" in inspect(engine).get_table_names()
    engine.dispose()
    unreachable = settings.model_copy(update={"database_url": "postgresql+psycopg://postgres@127.0.0.1:1/x"})
    with pytest.raises(Exception, match="onnect"):
        wait_for_database(unreachable, timeout_s=0.5, interval_s=0.1)
