"""Run a test again without root's file-permission bypass, so permission cases are tested as root too.

CI runs as root, which reads chmod-000 files and writes into read-only folders. ``rerun_unprivileged``
re-runs the calling test in a child pytest under ``setpriv`` with CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH dropped (so the kernel enforces the permissions) and fails if the child fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

_CHILD = "SIMVIZ_TEST_UNPRIVILEGED"
_DROP = "-dac_override,-dac_read_search"


def rerun_unprivileged(request) -> None:
    """Called where the permissions are not enforced (root): runs this test in a child process that
    cannot bypass them, and asserts it passed. Skips only when ``setpriv`` is missing."""
    if os.environ.get(_CHILD):
        pytest.fail("permissions are still bypassed after dropping the capabilities")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and `setpriv` (util-linux) is missing: cannot drop the permission bypass")
    node = f"{request.node.path}::{request.node.name}"
    child = subprocess.run(
        [setpriv, "--bounding-set", _DROP, "--inh-caps", _DROP, sys.executable, "-m", "pytest", "-p",
         "no:cacheprovider", "-q", node],
        env={**os.environ, _CHILD: "1"}, capture_output=True, text=True, timeout=300,
    )
    assert child.returncode == 0 and "1 passed" in child.stdout, child.stdout[-3000:] + child.stderr[-2000:]
