"""``lobbypay jobs``: recent jobs from this terminal's journal; ``--unsettled``: the jobs in
``submitting`` or ``unknown`` (exit 1 while there is one: the Debian package's prerm).

The journal is read through ``lobbypay.shell.journal``'s read-only functions, which
create and change nothing in state_dir (the agent may be running).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lobbypay.cli.configfile import config_path, load_or_exit
from lobbypay.ui import EXIT_FAIL, EXIT_OK, RESULT_STYLE, Cell, Style, fail, print_json, table


def job_summary(event: dict[str, Any]) -> dict[str, Any]:
    card = event.get("card") or {}
    err = event.get("error") or {}
    return {
        "job_id": event.get("job_id"),
        "state": event.get("state"),
        "total": (event.get("amounts") or {}).get("total"),
        "card": f"{card.get('brand')} {card.get('last4')}" if card else None,
        "at": event.get("at"),
        "epayment_id": event.get("epayment_id"),
        "error": err.get("code") if err else None,
    }


def _state_dir(args: argparse.Namespace) -> str:
    """``--state-dir``, else the config's (with --state-dir the config is not read)."""
    return str(args.state_dir
               or load_or_exit(config_path(args), read_secrets=False).terminal.state_dir)


def cmd_jobs_unsettled(args: argparse.Namespace) -> int:
    """``jobs --unsettled``: jobs in ``submitting``/``unknown``; exit 1 when there is one.

    The Debian package's prerm gates removal on it. With ``--state-dir`` the config is
    not read (a broken config must not block removing the package).
    """
    from lobbypay.shell.journal import JournalError, unsettled_jobs

    state_dir = _state_dir(args)
    try:
        events = unsettled_jobs(state_dir)
    except FileNotFoundError:
        events = []
    except JournalError as exc:
        return fail(f"{exc} (run as root or the lobbypay user)", EXIT_FAIL)
    jobs = [job_summary(e) for e in events]
    if args.json:
        print_json({"state_dir": state_dir, "unsettled": jobs})
    elif not jobs:
        print(f"no job in submitting or unknown in {state_dir}")
    for j in [] if args.json else jobs:
        print(f"{j['job_id']}: {j['state']} since {j['at']} (total {j['total']})")
    return EXIT_FAIL if jobs else EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    if args.unsettled:
        return cmd_jobs_unsettled(args)
    from lobbypay.shell.journal import JournalError, recent_jobs

    state_dir = _state_dir(args)
    try:
        events = recent_jobs(state_dir, args.limit)
    except FileNotFoundError:
        return fail(f"no journal in {state_dir} (has the agent run here?)", EXIT_FAIL)
    except JournalError as exc:
        return fail(f"{exc} (run as root or the lobbypay user)", EXIT_FAIL)
    except OSError as exc:
        return fail(f"cannot read the journal in {state_dir}: {exc} "
                    "(run as root or the lobbypay user)", EXIT_FAIL)
    jobs = [job_summary(e) for e in events]
    if args.json:
        print_json({"jobs": jobs})
        return EXIT_OK
    if not jobs:
        print("no jobs yet")
        return EXIT_OK
    st = Style.for_stream(sys.stdout, args.no_color)
    rows: list[list[Cell]] = [
        [j["job_id"] or "", (j["state"] or "", RESULT_STYLE.get(j["state"] or "", "")),
         j["total"] or "", j["card"] or "", j["at"] or "", j["error"] or ""]
        for j in jobs
    ]
    print(table(["JOB", "STATE", "TOTAL", "CARD", "TIME", "ERROR"], rows, st))
    return EXIT_OK
