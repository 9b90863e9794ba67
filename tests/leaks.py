"""A resource a test leaves open fails that test, not whichever test runs next.

Why it used to be the next one: an unclosed socket, transport or event loop warns from its
``__del__`` (``ResourceWarning``), which ``filterwarnings = error`` turns into an exception
there; an exception in ``__del__`` cannot propagate, so Python hands it to
``sys.unraisablehook``. pytest's unraisable-exception plugin queues it and raises it at the end
of the *current* test phase (setup, call or teardown). When the object dies is the question:

- a failing test's frames stay alive in ``sys.last_traceback`` (kept for post-mortem debugging)
  until pytest clears it at the start of the next test's call phase, and then in the cycle
  exception -> traceback -> frame -> exception, with every socket those frames hold;
- objects in a reference cycle die whenever the cyclic collector next runs: in any later test,
  which then fails for what it did not do.

So at the end of every test, after its fixtures are finalized (this fixture is autouse and set
up first, hence torn down last), drop the post-mortem references and collect: what the test
left open dies now, and its warning is raised in this test's teardown, which pytest reports as
"ERROR at teardown of <the test that leaked>". Collecting takes milliseconds because the objects
that exist once collection is over (modules, parametrize data) are frozen out of the collector.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

_POST_MORTEM = ("last_type", "last_value", "last_traceback", "last_exc")


def pytest_collection_finish(session: pytest.Session) -> None:
    # Everything alive now lives for the session: keep it out of every collection below.
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _leaks_fail_the_test_that_leaked() -> Iterator[None]:
    yield
    # A debugger (--pdb) has had its look by now: the failure was handled in the call phase.
    for name in _POST_MORTEM:
        if hasattr(sys, name):
            delattr(sys, name)
    gc.collect()
