"""Stand-ins for modules the graphic displays' libraries import and these displays never
use (docs/PERFORMANCE.md, "Peak RSS with each display").

A stand-in sits in ``sys.modules`` under the module's name, so ``import name`` and
``from package import name`` get it without loading anything; the first time one of
its attributes is used, it imports the real module and takes on its contents. A library
that uses such a module after all (a new version, a feature not used today) therefore
works as before, only without the saving. A module already loaded is left alone. The
names are listed where they are given stand-ins, each with the reason and the saving.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterable
from typing import Any


class _Deferred(types.ModuleType):
    """Stands in for a module nothing here calls: the real one is imported the first
    time one of its attributes is used."""

    def __getattr__(self, name: str) -> Any:
        name_ = self.__name__
        if sys.modules.get(name_) is self:
            del sys.modules[name_]
        real = importlib.import_module(name_)
        self.__dict__.update(real.__dict__)
        return getattr(real, name)


def defer_import(*names: str) -> None:
    """``import name`` gets a stand-in until the module is used (unless it is loaded)."""
    for name in names:
        sys.modules.setdefault(name, _Deferred(name))


def deferred(names: Iterable[str]) -> list[str]:
    """Those of ``names`` that are still stand-ins (tests, scripts/memory)."""
    return [n for n in names if isinstance(sys.modules.get(n), _Deferred)]
