"""Shared test fixtures.

Real sample files live in ../shared/data next to the repository (never copied in), or in the
folder $DAL_JAX_SAMPLE_DATA names (`dal_jax.data.sample_data`). Tests that need them take the
``shared_data`` fixture, which skips with a loud reason when it is absent.
"""

import atexit
import os
import pathlib
import shutil
import tempfile

import pytest

from dal_jax.data import sample_data

# Datasets the tests build (small synthetic sets) go to a fresh folder, never the user's TFDS
# data dir; subprocesses inherit it.
os.environ["TFDS_DATA_DIR"] = tempfile.mkdtemp(prefix="dal_jax_test_tfds_")
atexit.register(shutil.rmtree, os.environ["TFDS_DATA_DIR"], ignore_errors=True)
# The commands the tests start compile afresh and never write the user's folder of compiled
# programs (`dal_jax.training.compile_cache`; tests/test_compile_cache.py uses its own). A
# session-wide cache did not pay: the fast tier took 5 min 25 s with it and 5 min 24 s without
# (the tests' programs are small and seldom compiled twice).
os.environ["DAL_JAX_COMPILE_CACHE"] = "off"
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)

REPO = pathlib.Path(__file__).resolve().parents[1]
# The tests (only they) fall back to the folder beside the repository.
SHARED_DATA = (sample_data.folder() or REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The folder of real Jacquard and Cornell sample files (../shared/data)."""
    if not (SHARED_DATA / "jacquard").is_dir():
        pytest.skip(
            f"REAL SAMPLE DATA MISSING: {SHARED_DATA} not found; tests on real Cornell/Jacquard "
            f"files did not run (set {sample_data.ENV} to the shared/data folder)."
        )
    return SHARED_DATA


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~10 s (deselect with -m 'not slow')")
