"""Fixtures for the emulated-ARM tests.  They run only inside `make test-arm` (tools/arm/test_arm.sh),
which prepares the tools (tools/arm/setup.sh), cross-builds tflite_kernels for aarch64 and armv7
and sets DC_ARM_ENV; under a plain `pytest` they are skipped."""
import os

import pytest

from arm_helpers import read_env


@pytest.fixture(scope="session")
def arm_env():
    """Settings written by tools/arm/setup.sh (sysroot, aarch64 site-packages, qemu version)."""
    path = os.environ.get("DC_ARM_ENV")
    if not path:
        pytest.skip("emulated-ARM tests run via `make test-arm` (tools/arm/test_arm.sh)")
    return read_env(path)
