"""The start-up read of GET /departments: informational (enterprise or not, provider group)
and a logged warning when the balance groups disagree with it. Charges never wait for it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from lobbypay import app as app_mod
from lobbypay.core.athena import AthenaUnavailable
from lobbypay.core.balance import DepartmentInfo
from lobbypay.core.commands import BalanceGet

from tests.fakes.engine import FakeAthena, Rig, patient_payload

DEPARTMENTS = {"departments": [
    {"departmentid": "1", "providergroupid": "10"},
    {"departmentid": "2", "providergroupid": "10"},
    {"departmentid": "5", "providergroupid": "20"},
], "totalcount": 3}


class FlakyDepartments(FakeAthena):
    def __init__(self, failures: int, payload: Any) -> None:
        super().__init__(patients={"60178": patient_payload()}, appointments={})
        self.failures = failures
        self.payload = payload
        self.reads = 0

    async def get_departments(self) -> Any:  # type: ignore[override]
        self.reads += 1
        if self.reads <= self.failures:
            raise AthenaUnavailable("connect refused")
        return self.payload


async def test_probe_retries_then_records_the_department(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(app_mod, "DEPARTMENT_PROBE_RETRY_S", (0.01,))
    athena = FlakyDepartments(failures=2, payload=DEPARTMENTS)
    rig = Rig(tmp_path / "state", athena=athena)
    caplog.set_level(logging.INFO, "lobbypay.app")
    await asyncio.wait_for(app_mod.department_probe_loop(athena, rig.engine, "1"), 5)  # type: ignore[arg-type]
    assert athena.reads == 3
    assert rig.engine.department == DepartmentInfo("1", "10", True, True)
    assert "provider group 10, enterprise practice" in caplog.text
    await rig.close()


async def test_probe_warns_about_an_unknown_department(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    athena = FlakyDepartments(failures=0, payload=DEPARTMENTS)
    rig = Rig(tmp_path / "state", athena=athena)
    await app_mod.department_probe_loop(athena, rig.engine, "9")  # type: ignore[arg-type]
    assert rig.engine.department is not None and not rig.engine.department.found
    assert "not in athena's department list" in caplog.text
    await rig.close()


@pytest.mark.parametrize(("group", "warned"), [("10", False), ("99", True)])
async def test_balance_read_logs_a_provider_group_mismatch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, group: str, warned: bool
) -> None:
    rig = Rig(tmp_path / "state")
    await rig.engine.start()
    rig.engine.department = DepartmentInfo("1", group, True, True)
    reply = await rig.engine.balance_get(BalanceGet(request_id="r", patient_id="60178"))
    assert reply["provider_group_id"] == "10"  # athena's balance groups decide
    assert ("balance groups say 10" in caplog.text) is warned
    await rig.close()
