from __future__ import annotations

import sys

import pytest

# Cache compiled modules even where the environment says not to (PYTHONDONTWRITEBYTECODE):
# otherwise every xdist worker rewrites the assertions of every test module again, and every
# CLI subprocess compiles the package again — seconds of CPU each, on two cores.
sys.dont_write_bytecode = False


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
