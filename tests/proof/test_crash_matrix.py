"""Crash matrix, CI size: the agent is SIGKILLed at every crash point (and externally while
the POST is in flight), restarted, and the job must end right: not lost, its final event
delivered, at most one collectpayment POST, the final state matching whether athena
charged the card. The long run is `scripts/prove crash-matrix --runs 20`."""

from __future__ import annotations

import os

import pytest

from tests.proof.rig import CRASH_SCENARIOS, Parts, crash_run, crash_table

NOT_SENT = ("after_accept", "after_card_read", "after_submit_journal")
RUNS = int(os.environ.get("LOBBYPAY_CRASH_RUNS", "2"))

#: what each scenario must end in (beyond the generic checks in CrashResult.ok)
EXPECTED = {
    "after_accept": {"expired"},
    "after_card_read": {"expired"},
    "after_submit_journal": {"failed"},  # nothing was sent: reconciled not_charged
    "post_in_flight_charged": {"succeeded"},
    "post_in_flight_not_charged": {"failed"},
    "after_response": {"succeeded"},
    "before_publish": {"succeeded"},
    "after_publish_before_ack": {"succeeded"},
}


@pytest.mark.parametrize("scenario", list(CRASH_SCENARIOS))
async def test_crash_point(parts: Parts, scenario: str) -> None:
    results = [await crash_run(parts, scenario) for _ in range(RUNS)]
    print("\n" + crash_table(results))
    for r in results:
        assert r.ok, r
        assert r.final in EXPECTED[scenario], r
        assert r.posts == (0 if scenario in NOT_SENT else 1), r


def test_failpoints_are_inert_without_the_guard_and_refuse_typos() -> None:
    import subprocess
    import sys

    from lobbypay import failpoints

    from tests.e2e.harness import subprocess_env

    assert failpoints._armed_from({"LOBBYPAY_FAILPOINTS": "after_accept"}) == {}
    assert failpoints._armed_from({}) == {}
    assert failpoints._armed_from({"LOBBYPAY_FAILPOINTS": "after_accept,before_publish@3",
                                   "LOBBYPAY_TEST_MODE": "1"}) == {
        "after_accept": 1, "before_publish": 3}
    for bad in ("after_acept", "before_publish@0", "before_publish@x"):
        with pytest.raises(SystemExit):
            failpoints._armed_from({"LOBBYPAY_FAILPOINTS": bad, "LOBBYPAY_TEST_MODE": "1"})

    code = ("from lobbypay.failpoints import failpoint\n"
            "failpoint('after_response'); failpoint('after_accept'); print('survived')")
    env = subprocess_env() | {"LOBBYPAY_FAILPOINTS": "after_accept"}
    env.pop("LOBBYPAY_TEST_MODE", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and "survived" in out.stdout  # no guard: inert
    env["LOBBYPAY_TEST_MODE"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == -9 and "survived" not in out.stdout  # a real SIGKILL
