"""Fixtures for kumo's end-to-end tests.

Target (env KUMO_E2E_TARGET):
  kumo           (default) `kumo up --state-dir <tmp> --listen 127.0.0.1:0 --demo`, binary from KUMO_BIN
                 or target/release/kumo
  keystone-peer  the real Keystone started by ../shared/peer/keystone.sh on a free port
KUMO_E2E_KEEP=1 keeps the temp dir (state, logs) after the run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cloudlib import Cloud, start_target  # noqa: E402

TARGET = os.environ.get("KUMO_E2E_TARGET", "kumo")
_CLOUD: Cloud | None = None


def pytest_configure(config):
    config.addinivalue_line("markers", "kumo_only(reason): needs kumo's own CLI/process; skipped on the peer")


def pytest_report_header(config):
    return f"kumo e2e target: {TARGET}"


def pytest_collection_modifyitems(config, items):
    if TARGET == "kumo":
        return
    for item in items:
        m = item.get_closest_marker("kumo_only")
        if m:
            reason = m.args[0] if m.args else "kumo-only feature"
            item.add_marker(pytest.mark.skip(reason=f"kumo only: {reason}"))


@pytest.fixture(scope="session")
def cloud():
    global _CLOUD
    c = start_target(TARGET)
    _CLOUD = c
    try:
        yield c
    finally:
        _CLOUD = None
        c.stop()


@pytest.fixture
def cleanup(cloud):
    """cleanup(kind, id): delete /v3/<kind>/<id> as admin after the test (reverse order, 404 ok)."""
    made: list[tuple[str, str]] = []

    def add(kind: str, ident: str):
        made.append((kind, ident))
        return ident

    yield add
    errors = []
    for kind, ident in reversed(made):
        try:
            cloud.delete(kind, ident)
        except Exception as e:  # noqa: BLE001 - report all, fail once
            errors.append(f"{kind}/{ident}: {e}")
    if errors:
        pytest.fail("cleanup failed: " + "; ".join(errors))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and _CLOUD is not None:
        try:
            rep.sections.append((f"{_CLOUD.target} log (tail)", _CLOUD.log_tail(25)))
        except Exception:  # noqa: BLE001
            pass


def is_peer(cloud: Cloud) -> bool:
    return cloud.target == "keystone-peer"
