import os
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def shared_dir():
    """A directory every user may write (pytest's tmp_path is private to root when run as root)."""
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="dc_keras_ro_")
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)
