"""``lobbypay doctor --swipe``: one swipe on the configured reader (here the hidraw reader
on a FIFO fed real MagTek report bytes) reports brand, last 4 and the tracks read, and
nothing more; encrypting readers, bad swipes, no swipe and no reader say what to do."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from lobbypay import cli
from lobbypay.cli import parser
from lobbypay.devices import doctor_swipe, swipe_reader, swipe_test

from tests.fakes.hidraw import HidrawNode, magtek_report

CANARY = "4111111111111111"
T1 = f"%B{CANARY}^DOE/JOHN^2812101000000?".encode()
T2 = f";{CANARY}=28121010000000?".encode()


def reader(path: Path) -> object:
    return swipe_reader("hidraw", str(path), 9600)


@pytest.mark.parametrize("report,result,detail", [
    (magtek_report(T1, T2), "PASS", "visa ending 1111, track 1+2 read"),
    (magtek_report(b"", T2), "PASS", "visa ending 1111, track 2 read"),
    (bytes(887), "FAIL", "the reader sends masked or encrypted card data"),
    (magtek_report(T1, T2, status=(0, 1, 0)), "WARN", "swipe read, but rejected (no_track2)"),
])
async def test_one_swipe_is_reported(tmp_path: Path, report: bytes, result: str, detail: str,
                                     caplog: pytest.LogCaptureFixture,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    node = HidrawNode(tmp_path / "hidraw0")
    try:
        node.send(report)  # waits in the node until the reader opens it
        got = await swipe_test(reader(node.path), 5.0)
    finally:
        node.close()
    assert got[:2] == (result, detail)
    text = " ".join(got) + capsys.readouterr().out + caplog.text
    assert CANARY not in text and "DOE" not in text and "2812" not in text


async def test_no_swipe_and_no_reader(tmp_path: Path) -> None:
    node = HidrawNode(tmp_path / "hidraw0")
    try:
        result, detail, fix = await swipe_test(reader(node.path), 0.3)
    finally:
        node.close()
    assert (result, detail) == ("FAIL", "no swipe within the time") and "swipe a card" in fix
    result, detail, fix = await swipe_test(reader(tmp_path / "gone"), 0.3)
    assert result == "FAIL" and detail == "reader not available: enoent: no such device"
    assert "systemctl stop lobbypay" in fix


def test_doctor_takes_swipe_options() -> None:
    args = parser.build_parser().parse_args(["doctor", "--swipe", "--swipe-timeout", "5"])
    assert args.swipe is True and args.swipe_timeout == 5.0
    assert parser.build_parser().parse_args(["doctor"]).swipe is False


async def test_sim_reader_is_not_taken_from_the_agent(tmp_path: Path) -> None:
    result, detail, _ = await doctor_swipe("sim", str(tmp_path / "s.sock"), 9600, 0.3)
    assert result == "WARN" and "lobbypay swipe" in detail
    assert not (tmp_path / "s.sock").exists()


async def test_busy_reader_says_to_stop_the_agent(tmp_path: Path) -> None:
    node = HidrawNode(tmp_path / "hidraw0")
    agent_reader = swipe_reader("hidraw", str(node.path), 9600)
    task = asyncio.create_task(agent_reader.run(lambda ev: None))  # type: ignore[attr-defined]
    try:
        async with asyncio.timeout(5):
            while not agent_reader.connected:  # type: ignore[attr-defined]  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        result, detail, fix = await doctor_swipe("hidraw", str(node.path), 9600, 0.5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        node.close()
    assert result == "FAIL" and "busy" in detail and "systemctl stop lobbypay" in fix


def test_doctor_swipe_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from lobbypay.sim.athena import AthenaSim

    from tests.fakes.mosquitto import free_port

    node = HidrawNode(tmp_path / "hidraw0")
    node.send(magtek_report(T1, T2))  # waits in the node until doctor opens it
    (tmp_path / "secret").write_text("x\n")
    try:
        with AthenaSim() as sim:
            cfg = tmp_path / "lobbypay.toml"
            cfg.write_text(f"""
[terminal]
id = "t-swipe"
department_id = "1"
state_dir = "{tmp_path / 'state'}"
[athena]
base_url = "{sim.base_url}"
practice_id = "{sim.practice_id}"
client_id = "{sim.client_id}"
client_secret_file = "{tmp_path / 'secret'}"
timeout_s = 2
[mqtt]
host = "127.0.0.1"
port = {free_port()}
[reader]
driver = "hidraw"
path = "{node.path}"
""")
            rc = cli.main(["doctor", "--config", str(cfg), "--json", "--swipe",
                           "--swipe-timeout", "5"])
    finally:
        node.close()
    out, err = capsys.readouterr()
    checks = {c["name"]: c for c in json.loads(out)["checks"]}  # stdout is only the JSON
    assert checks["swipe"]["result"] == "PASS"
    assert checks["swipe"]["detail"] == "visa ending 1111, track 1+2 read"
    assert checks["reader"]["result"] == "FAIL"  # a FIFO, not a hidraw character device
    assert "swipe a card" in err
    assert rc == 1 and CANARY not in out + err
