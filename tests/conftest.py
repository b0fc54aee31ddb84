"""Shared test fixtures.

Real sample files live in ../shared/data next to the repository (never copied in). Tests that
need them take the ``shared_data`` fixture, which skips with a loud reason when it is absent.
"""

import atexit
import os
import pathlib
import shutil
import tempfile

import pytest

# Datasets the tests build (small synthetic sets) go to a fresh folder, never the user's TFDS
# data dir; subprocesses inherit it.
os.environ["TFDS_DATA_DIR"] = tempfile.mkdtemp(prefix="dal_jax_test_tfds_")
atexit.register(shutil.rmtree, os.environ["TFDS_DATA_DIR"], ignore_errors=True)

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(
    os.environ.get("DAL_JAX_SHARED_DATA", REPO.parent / "shared" / "data")
).resolve()


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The folder of real Jacquard and Cornell sample files (../shared/data)."""
    if not (SHARED_DATA / "jacquard").is_dir():
        pytest.skip(
            f"REAL SAMPLE DATA MISSING: {SHARED_DATA} not found; tests on real Cornell/Jacquard "
            "files did not run (set DAL_JAX_SHARED_DATA to the shared/data folder)."
        )
    return SHARED_DATA


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~10 s (deselect with -m 'not slow')")
