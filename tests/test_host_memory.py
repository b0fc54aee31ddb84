"""The experiment commands re-execute themselves on tcmalloc when it is installed (and never
otherwise), and the programs they start do not inherit the preload."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from dal_jax.training import host_memory

REPO = pathlib.Path(__file__).resolve().parents[1]
LIB = "libtcmalloc_minimal.so.4"


@pytest.mark.parametrize(
    "argv, environ, libc, lib, expected",
    [
        (["python", "-m", "experiments.main", "--seeds=2"], {}, "glibc", LIB, True),
        (["python", "-u", "-m", "experiments", "x"], {}, "glibc", LIB, True),
        (["python", "-m", "pytest", "tests"], {}, "glibc", LIB, False),  # not a command
        (["python", "-m", "experimentsx.main"], {}, "glibc", LIB, False),
        (["python", "script.py"], {}, "glibc", LIB, False),
        (["python", "-m"], {}, "glibc", LIB, False),
        (["python", "-m", "experiments.main"], {host_memory.OPT_OUT: "1"}, "glibc", LIB, False),
        (["python", "-m", "experiments.main"], {host_memory._MARK: LIB}, "glibc", LIB, False),
        (["python", "-m", "experiments.main"], {"LD_PRELOAD": "x.so"}, "glibc", LIB, False),
        (["python", "-m", "experiments.main"], {}, "glibc", None, False),  # not installed
        (["python", "-m", "experiments.main"], {}, "", LIB, False),  # musl, macOS
    ],
)
def test_which_processes_re_execute(argv, environ, libc, lib, expected):
    looked = []
    plan = host_memory.reexec_args(argv, environ, libc, lambda: looked.append(1) or lib)
    assert (plan == (argv[1:], lib)) if expected else (plan is None)
    # The loader's cache is asked only for a command that would otherwise re-execute.
    assert looked == ([1] if expected or lib is None else [])


def test_the_re_executed_process_clears_the_preload_for_its_children(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", LIB)
    monkeypatch.setenv(host_memory._MARK, LIB)
    monkeypatch.setattr(host_memory, "_allocator", "system")
    host_memory.apply_to_command()
    assert "LD_PRELOAD" not in os.environ and host_memory._MARK not in os.environ
    # pytest itself did not start on tcmalloc, so the process says so rather than trusting
    # the variable.
    assert host_memory.in_effect() == "system" and host_memory.preload_env() == {}


def _host_record(**env):
    out = subprocess.run(
        [sys.executable, "-m", "experiments.bench", "--only=host"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return next(json.loads(ln) for ln in out.stdout.splitlines() if '"bench": "host"' in ln)


def test_an_experiment_command_runs_on_tcmalloc_when_installed_and_can_opt_out():
    lib = host_memory.find_tcmalloc()
    assert _host_record()["malloc"] == (lib or "system")
    assert _host_record(DAL_JAX_SYSTEM_MALLOC="1")["malloc"] == "system"
