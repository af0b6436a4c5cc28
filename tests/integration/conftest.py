"""Fixtures shared by the integration tests."""

from tests.fakes.engine import rig  # noqa: F401  (the Engine over fakes and a real journal)
from tests.support.install import repo  # noqa: F401  (a copy of what the install scripts read)
