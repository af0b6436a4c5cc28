"""Mutation testing of ``agent/lobbypay/core`` with the unit tests (mutmut 3).

    scripts/mutate [MODULE ...] [--all] [--timeout S] [--diffs] [--keep]

MODULE is a core module name (``money``, ``plan``, ``core/job.py`` ...). Without one, the
money core is run: money, plan, balance, job and reconcile (each that exists). ``--all``
runs every module in ``agent/lobbypay/core/``. Modules run one after the other, each in a
temporary directory of its own, with one mutmut worker (the machine is shared).

mutmut 3 names a mutant after its file's path with a leading ``src/`` taken off, and
puts ``mutants/``, ``mutants/src`` and ``mutants/source`` on ``sys.path``; the tests
import ``lobbypay.core.money``, which lives at ``agent/lobbypay/core/money.py`` here.
So each run lays out a copy of the tree in a temporary directory with the package under
``src/`` (``src/lobbypay``, ``src/lobbypay_hw``), writes a ``pyproject.toml`` there whose
``[tool.mutmut]`` mutates only the chosen module, and runs mutmut in it. Nothing is
written to the work tree: ``mutants/`` lives and dies in the temporary directory
(``--keep`` leaves it, for ``mutmut browse``).

Prints killed / survived / other per module, lists the survivors (``--diffs``: with the
change each one makes), and exits 1 when a run could not be completed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "agent" / "lobbypay" / "core"
MUTMUT = ROOT / ".venv" / "bin" / "mutmut"
#: the modules that decide money (issue 18's target); reconcile is taken once it exists
MONEY_CORE = ("money", "plan", "balance", "job", "reconcile", "protocol/events")
#: what the unit tests read besides the package (docs, the unit file, the bench helper)
COPIED = ("agent", "drivers", "docs", "systemd", "scripts", "config", "examples", "tests",
          "debian")
#: mutmut's exit codes by outcome (mutmut.stats.status_by_exit_code)
KILLED = {1, 3}
SURVIVED = {0}
NO_TESTS = {5, 33}
TIMEOUT = {36, -24, 24, 152, 255}
#: one whole mutmut run of one module, at most (a hung run must not hold the machine)
DEFAULT_TIMEOUT_S = 1800


def core_modules() -> list[str]:
    """``money``, ``job``, ... and the package's modules as ``protocol/events``."""
    return sorted(p.relative_to(CORE).with_suffix("").as_posix() for p in CORE.rglob("*.py")
                  if p.stem != "__init__")


def pick_modules(names: list[str], every: bool) -> list[str]:
    have = core_modules()
    if every:
        return have
    if not names:
        return [m for m in MONEY_CORE if m in have]
    picked = []
    for name in names:
        stem = name.removeprefix("agent/lobbypay/").removeprefix("core/").removesuffix(".py")
        if stem not in have:
            sys.exit(f"mutate: no core module {name!r} (have: {', '.join(have)})")
        picked.append(stem)
    return picked


def pytest_options() -> dict[str, object]:
    """The project's pytest settings, without ``pythonpath`` (mutmut sets the path)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    opts = dict(project["tool"]["pytest"]["ini_options"])
    opts.pop("pythonpath", None)
    opts["testpaths"] = ["tests/unit"]
    return opts


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def lay_out(work: Path, module: str) -> None:
    """A copy of the tree with the packages under ``src/``, and mutmut's config."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", "mutants")
    for name in COPIED:
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, work / name, ignore=ignore)
    shutil.copytree(ROOT / "agent" / "lobbypay", work / "src" / "lobbypay", ignore=ignore)
    shutil.copytree(ROOT / "drivers" / "lobbypay_hw", work / "src" / "lobbypay_hw", ignore=ignore)
    mutmut = {
        "source_paths": ["src/lobbypay"],
        "only_mutate": [f"src/lobbypay/core/{module}.py"],
        "pytest_add_cli_args_test_selection": ["tests/unit"],
        # the purity test imports the core under `python -S`, where the mutated files
        # cannot import mutmut's trampoline; the package test reads the real
        # pyproject.toml (this copy has mutmut's): they check imports and packaging, not
        # money rules
        "pytest_add_cli_args": ["-p", "no:cacheprovider",
                                "--ignore=tests/unit/test_core_purity.py",
                                "--ignore=tests/unit/test_debian_package.py"],
        "also_copy": ["src", *COPIED],
        "use_git_change_detection": False,
    }
    lines = ["[tool.mutmut]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in mutmut.items()]
    lines += ["", "[tool.pytest.ini_options]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in pytest_options().items()]
    (work / "pyproject.toml").write_text("\n".join(lines) + "\n", "utf-8")


def outcomes(work: Path, module: str) -> dict[str, int]:
    meta = work / "mutants" / "src" / "lobbypay" / "core" / f"{module}.py.meta"
    data = json.loads(meta.read_text("utf-8"))
    codes: dict[str, int] = data["exit_code_by_key"]
    return codes


def status(code: int | None) -> str:
    if code in KILLED:
        return "killed"
    if code in SURVIVED:
        return "survived"
    if code in NO_TESTS:
        return "no tests"
    if code in TIMEOUT:
        return "timeout"
    return "not checked" if code is None else f"other ({code})"


def diff_of(work: Path, name: str) -> str:
    out = subprocess.run(
        [str(MUTMUT), "show", name], cwd=work, capture_output=True, text=True, check=False
    ).stdout
    keep = [ln for ln in out.splitlines()
            if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    return "\n".join("        " + ln for ln in keep)


def run_module(module: str, args: argparse.Namespace) -> dict[str, int] | None:
    work = Path(tempfile.mkdtemp(prefix=f"lobbypay-mutate-{module.replace('/', '.')}-"))
    try:
        lay_out(work, module)
        log = work / "mutmut.log"
        print(f"== {module}: mutmut in {work} (log: {log.name})", flush=True)
        started = time.monotonic()
        with log.open("w") as out:
            try:
                proc = subprocess.run(
                    [str(MUTMUT), "run", "--max-children", "1"], cwd=work, stdout=out,
                    stderr=subprocess.STDOUT, timeout=args.timeout, check=False,
                )
                rc: int | str = proc.returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        took = time.monotonic() - started
        meta = work / "mutants" / "src" / "lobbypay" / "core" / f"{module}.py.meta"
        if rc != 0 or not meta.exists():
            tail = log.read_text("utf-8", "replace").splitlines()[-30:]
            print(f"   mutmut failed ({rc}); last lines of its log:", *tail, sep="\n   ")
            return None
        codes = outcomes(work, module)
        by_status: dict[str, list[str]] = {}
        for name, code in sorted(codes.items()):
            by_status.setdefault(status(code), []).append(name)
        survivors = by_status.get("survived", [])
        print(f"   {len(codes)} mutants in {took:.0f} s")
        for name in survivors:
            print(f"   survived: {name}")
            if args.diffs:
                print(diff_of(work, name))
        for kind in sorted(set(by_status) - {"killed", "survived"}):
            for name in by_status[kind]:
                print(f"   {kind}: {name}")
        return {"total": len(codes), **{k: len(v) for k, v in by_status.items()}}
    finally:
        if args.keep:
            print(f"   kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modules", nargs="*", help="core modules (default: the money core)")
    ap.add_argument("--all", action="store_true", help="every module in agent/lobbypay/core")
    ap.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S,
                    help=f"seconds for one module's run (default {DEFAULT_TIMEOUT_S})")
    ap.add_argument("--diffs", action="store_true", help="show each survivor's change")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = ap.parse_args()
    if not MUTMUT.exists():
        sys.exit("mutate: mutmut is not in .venv (run scripts/mutate, which installs it)")
    rows: list[tuple[str, dict[str, int]]] = []
    failed = False
    for module in pick_modules(args.modules, args.all):
        row = run_module(module, args)
        if row is None:
            failed = True
        else:
            rows.append((module, row))
    if rows:
        print()
        print(f"{'module':<18}{'mutants':>8}{'killed':>8}{'survived':>10}{'other':>7}"
              f"{'killed %':>10}")
        for module, r in rows:
            total, killed, survived = r["total"], r.get("killed", 0), r.get("survived", 0)
            other = total - killed - survived
            share = 100 * killed / total if total else 100.0
            print(f"{module:<18}{total:>8}{killed:>8}{survived:>10}{other:>7}{share:>9.0f}%")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
