"""Generated requests against every operation of the OpenAPI document (schemathesis, on a running
`thidua up`): no input makes a server error, and every refusal names its field."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr

from shared.access import service_headers
from shared.local_broker import free_port
from shared.settings import Settings

ROOT = Path(__file__).parent.parent.parent
SCHEMA = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.json")
# The generated requests come as a service, which may call every operation: they reach the checks of
# the input, not only the refusal of a caller.
KEY = secrets.token_hex(32)
SERVICE = service_headers(Settings(secret_key=SecretStr(KEY), _env_file=None), "fuzz")  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def thidua(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("fuzz")
    env = {key: value for key, value in os.environ.items() if not key.startswith("THIDUA_")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.update(
        {"THIDUA_VAR_DIR": str(folder / "var"), "THIDUA_LOG_LEVEL": "WARNING", "THIDUA_SECRET_KEY": KEY}
    )
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--port", str(port)],
        env=env,
        cwd=folder,
        stdout=(folder / "thidua.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert server.poll() is None, (folder / "thidua.log").read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        units = [
            {"id": "hn", "name": "LĐLĐ thành phố Hà Nội", "level": "province", "valid_from": "2020-01-01"},
            {
                "id": "lb",
                "name": "LĐLĐ quận Long Biên",
                "level": "district",
                "parent_id": "hn",
                "valid_from": "2020-01-01",
            },
        ]
        answer = httpx.post(f"{base}/plans/org/units", json=units, headers=SERVICE, timeout=10)
        assert answer.status_code == 201, answer.text
        yield base
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log = (folder / "thidua.log").read_text()
        assert "Exception in ASGI application" not in log, log[-3000:]


@SCHEMA.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_a_server_error(case: schemathesis.Case, thidua: str) -> None:
    response = case.call(base_url=thidua, headers=SERVICE)
    assert response.status_code < 500, (case.method, case.formatted_path, response.text[:300])
    if response.status_code == 422:
        detail = response.json()["detail"]
        assert detail and all({"field", "value", "message"} <= set(item) for item in detail), response.text[
            :300
        ]
