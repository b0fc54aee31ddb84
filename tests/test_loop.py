"""experiments.main / dal_jax.experiment.loop: smoke runs, resume, results schema, alpha grids, sharding."""

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest

from dal_jax.experiment import build, loop, plain, workdir
from dal_jax.model import checkpoint
from dal_jax.training.runs import Grid
from experiments import compare
from experiments.configs import synthetic

REPO = pathlib.Path(__file__).resolve().parents[1]


def smoke(**overrides):
    c = synthetic.get_config("smoke")
    for k, v in overrides.items():
        c[k] = v
    return c


@pytest.fixture(scope="module")
def dal_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("dal")
    res = loop.run(smoke(rounds=3), wd, progress=False)
    return wd, res


def test_results_schema_and_outputs(dal_run):
    wd, res = dal_run
    on_disk = json.loads((wd / "results.json").read_text())
    assert on_disk == res
    assert set(res) == {"strategy", "dataset", "alpha", "seeds", "rounds"}
    assert (res["strategy"], res["dataset"], res["alpha"], res["seeds"]) == (
        "dal",
        "synthetic_grasps",
        0.1,
        2,
    )
    assert [r["round"] for r in res["rounds"]] == [0, 1, 2]
    assert [r["labeled"] for r in res["rounds"]] == [8, 12, 16]
    for r in res["rounds"]:
        assert len(r["accuracy"]) == 2 and all(0.0 <= a <= 1.0 for a in r["accuracy"])
    for r in res["rounds"][:-1]:
        assert np.asarray(r["selected"]).shape == (2, 4)
    assert res["rounds"][-1]["selected"] == []
    # Every round's time by part, the selection's only where the round selected.
    for r in res["rounds"]:
        parts = {"train", "evaluate"} | ({"select"} if r["selected"] else set())
        assert set(r["seconds"]) == parts and all(v >= 0 for v in r["seconds"].values())
        assert r["seconds"]["train"] > 0
    png = (wd / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "round 2" in (wd / "log.txt").read_text()
    assert checkpoint.rounds(wd) == [0, 1, 2]


def test_selections_are_new_and_grow_the_labelled_set(dal_run):
    wd, res = dal_run
    _, _, arrays, meta = checkpoint.restore(wd, 1)
    masks = np.asarray(arrays["masks"])
    assert masks.sum(axis=1).tolist() == [16, 16]
    for s in range(2):
        picked = res["rounds"][0]["selected"][s] + res["rounds"][1]["selected"][s]
        assert len(set(picked)) == 8 and masks[s, picked].all()
    assert meta["accuracy"] == meta["history"][-1]["accuracy_all"]


@pytest.mark.slow
def test_interrupted_and_resumed_run_equals_uninterrupted(dal_run, tmp_path):
    wd_full, full = dal_run
    loop.run(smoke(rounds=2), tmp_path, progress=False)  # "interrupted" after round 1
    resumed = loop.run(smoke(rounds=3), tmp_path, progress=False)
    assert untimed(resumed) == untimed(full)
    _, a, _, _ = checkpoint.restore(wd_full)
    _, b, _, _ = checkpoint.restore(tmp_path)
    leaves_a = [np.asarray(x) for x in jax_leaves(a["params"])]
    leaves_b = [np.asarray(x) for x in jax_leaves(b["params"])]
    assert all(np.array_equal(x, y) for x, y in zip(leaves_a, leaves_b))


def jax_leaves(tree):
    import jax

    return jax.tree.leaves(tree)


def test_alpha_is_parsed_once_and_a_run_saved_with_alpha_as_text_resumes():
    c = build.resolve(smoke(alpha="0, 0.5"))
    assert c.alpha == (0.0, 0.5) and Grid.of(c).alphas == (0.0, 0.5)
    assert build.resolve(c).alpha == (0.0, 0.5)
    now = c.to_dict()
    # Checkpoints written when resolved configs held alpha as canonical text.
    assert workdir.config_diff({**now, "alpha": "0.0,0.5"}, now) == []
    assert workdir.config_diff({**now, "alpha": "0.0,0.25"}, now) == ["alpha"]
    assert workdir.saved_config({**now, "alpha": "0.0,0.5"})["alpha"] == [0.0, 0.5]
    with pytest.raises(TypeError, match="takes a resolved config"):
        Grid.of(smoke(alpha="0.1"))


def test_refuses_to_resume_a_different_config(dal_run):
    wd, _ = dal_run
    with pytest.raises(ValueError, match=r"lr: 0\.003 -> 0\.01.*refusing to resume"):
        loop.run(smoke(rounds=3, lr=1e-2), wd, progress=False)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("strategy", "bogus", "unknown strategy 'bogus'; valid: rs, gd, cs, ll, vaal, dal"),
        ("dataset", "imagenet", "unknown dataset 'imagenet'; choose from cornell"),
        ("oracle", "crowd", "unknown oracle 'crowd'; valid: gt, human"),
        ("alpha", "0.1,nan", "alpha must be one or more finite values"),
    ],
)
def test_bad_names_list_the_valid_ones(field, value, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        loop.run(smoke(**{field: value}), tmp_path, progress=False)


# Every strategy through the loop: tests/test_study.py (the six-strategy smoke study).


# An alpha grid in one program: tests/test_study.py (the alpha study).


@pytest.mark.slow
def test_compare_writes_figure_and_table(dal_run, tmp_path):
    wd, res = dal_run
    runs = compare.find_results([wd])
    table = compare.markdown_table(runs)
    assert table.count("\n") == 2 + len(res["rounds"])
    mean = 100 * np.mean(res["rounds"][1]["accuracy"])
    assert f"| 1 | 12 | {mean:.1f} ± " in table
    out = subprocess.run(
        [sys.executable, "-m", "experiments.compare", str(wd), f"--out={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "compare.png").stat().st_size > 5000
    assert (tmp_path / "compare.md").read_text() == table


@pytest.mark.slow
def test_train_plain_from_a_dal_run(dal_run, tmp_path):
    wd, res = dal_run
    out = plain.train_plain_from(wd, 1, tmp_path, progress=False)
    assert out["labeled"] == 12
    # Warm-started: the plain model goes through rounds 0 and 1 with the joint model's steps.
    assert out["rounds_trained"] == [0, 1]
    assert out["steps"] == [r["steps"] for r in res["rounds"][:2]]
    assert out["joint_accuracy"] == res["rounds"][1]["accuracy"]
    assert len(out["plain_accuracy"]) == 2
    assert json.loads((tmp_path / "plain_from.json").read_text()) == out
    with pytest.raises(ValueError, match="no finished round 7"):
        plain.train_plain_from(wd, 7, tmp_path)


@pytest.mark.slow
def test_human_oracle_round_uses_the_annotation_page(tmp_path):
    urls = []
    got_url = threading.Event()

    def on_url(url):
        urls.append(url)
        got_url.set()

    c = smoke(oracle="human", seeds=1, rounds=2)
    result = {}
    worker = threading.Thread(
        target=lambda: result.update(loop.run(c, tmp_path, progress=False, on_annotate_url=on_url))
    )
    worker.start()
    assert got_url.wait(timeout=300), "the loop never served the annotation page"
    base = urls[0].rstrip("/")

    def call(method, path, body=None):
        req = urllib.request.Request(
            base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")

    queue = call("GET", "/api/queue")
    assert len(queue["samples"]) == 4
    rect = [[20.0, 10.0], [20.0, 30.0], [26.0, 30.0], [26.0, 10.0]]
    for s in queue["samples"]:
        cur = call("GET", f"/api/samples/{s['index']}")
        call(
            "PUT",
            f"/api/samples/{s['index']}/grasps",
            {"rects": [rect], "revision": cur["revision"]},
        )
    call("POST", "/api/finish", {})
    worker.join(timeout=300)
    assert not worker.is_alive()
    _, meta = checkpoint.restore_meta(tmp_path)
    labels = meta["human_labels"]
    assert len(labels) == 4
    assert all(np.allclose(v, [rect]) for v in labels.values())
    assert result["rounds"][1]["labeled"] == 12


@pytest.fixture(scope="module")
def four_seeds_one_device(tmp_path_factory):
    return loop.run(smoke(seeds=4, shard=False), tmp_path_factory.mktemp("one"), progress=False)


_RUN_SCRIPT = """
import json, os, sys
sys.path.insert(0, {repo!r})
import jax
from dal_jax.training import distributed
from dal_jax.experiment import loop
if {procs} > 1:
    distributed.initialize("127.0.0.1:{port}", {procs}, int(sys.argv[1]))
assert jax.device_count() == 4, jax.devices()
from tests.test_loop import smoke
print("RESULT", json.dumps(loop.run(smoke(seeds=4), {workdir!r}, progress=False)))
"""


def _run_processes(tmp_path, procs: int):
    """Runs the 4-seed smoke job over 4 CPU devices in ``procs`` processes on loopback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = _RUN_SCRIPT.format(repo=str(REPO), procs=procs, port=port, workdir=str(tmp_path))
    flags = f"--xla_force_host_platform_device_count={4 // procs}"
    env = dict(os.environ, XLA_FLAGS=flags)
    running = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(i)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(procs)
    ]
    results = []
    for p in running:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
        results.append(json.loads(line[len("RESULT ") :]))
    return results


def untimed(res: dict) -> dict:
    """results.json without the rounds' wall-clock times (all that two equal runs may differ in)."""
    return {**res, "rounds": [{**r, "seconds": None} for r in res["rounds"]]}


def assert_same_results(a: dict, b: dict):
    """Identical results: the same selections, accuracies and flags; the selection scores
    (computed with another device layout) to float32 rounding, and the float diagnostics of
    the trained weights to 1e-3: rounding differences of the other layout add up over the
    training steps (a test image's largest quality output moved by 2.7e-4 relative)."""
    floats = ("diagnostics", "selected_score", "seconds")
    strip = lambda r: {**r, "rounds": [{**x, **dict.fromkeys(floats)} for x in r["rounds"]]}
    assert strip(a) == strip(b)
    for ra, rb in zip(a["rounds"], b["rounds"]):
        assert (ra["selected_score"] is None) == (rb["selected_score"] is None)
        if ra["selected_score"] is not None:
            np.testing.assert_allclose(ra["selected_score"], rb["selected_score"], rtol=1e-5)
        assert ra["diagnostics"].keys() == rb["diagnostics"].keys()
        for k, v in ra["diagnostics"].items():
            np.testing.assert_allclose(
                np.asarray(v, float), np.asarray(rb["diagnostics"][k], float), rtol=1e-3, err_msg=k
            )


@pytest.mark.slow
def test_sharded_over_four_devices_equals_one_device(four_seeds_one_device, tmp_path):
    (sharded,) = _run_processes(tmp_path, 1)
    assert_same_results(sharded, four_seeds_one_device)
    assert np.asarray(sharded["rounds"][0]["selected"]).shape == (4, 4)


@pytest.mark.slow
def test_two_hosts_with_jax_distributed_equal_one_device(four_seeds_one_device, tmp_path):
    results = _run_processes(tmp_path, 2)
    assert untimed(results[0]) == untimed(results[1])
    assert_same_results(results[0], four_seeds_one_device)
    # The checkpoint both processes wrote is whole and restores in a single process.
    _, state, _, meta = checkpoint.restore(tmp_path)
    assert np.asarray(state["step"]).shape == (4,)
    assert meta["history"][-1]["accuracy_all"] == four_seeds_one_device["rounds"][-1]["accuracy"]


def _main_help(cwd):
    """``python -m experiments.main --helpfull`` run from ``cwd`` (the repository importable)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "experiments.main", "--helpfull"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.slow
def test_main_cli_help_and_bad_strategy():
    helped = _main_help(REPO)
    assert "--strategy" in helped.stdout and "--alpha" in helped.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "experiments.main", "--strategy=bogus", "--workdir=/tmp/x_unused"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "valid: rs, gd, cs, ll, vaal, dal" in bad.stderr


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_resumed_run_matches(dal_run, tmp_path):
    _, full = dal_run
    cmd = [
        sys.executable,
        "-m",
        "experiments.main",
        "--config=experiments/configs/synthetic.py:smoke",
        "--config.rounds=3",
        f"--workdir={tmp_path}",
        "--noprogress",
    ]
    with _ctrl_c_as_from_a_terminal():
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    deadline = time.time() + 300
    while not (tmp_path / "checkpoints" / "0").exists() and proc.poll() is None:
        assert time.time() < deadline, "round 0 never finished"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    # Normally interrupted mid-run (130); a machine fast enough to finish first exits 0.
    assert proc.returncode in (130, 0), err[-2000:]
    if proc.returncode == 130:
        assert "interrupted: finished rounds are saved" in err
        assert checkpoint.rounds(tmp_path)[-1] < 2
    # Resumed in this process (its compiled programs are the fixture's: the same settings).
    assert untimed(loop.run(smoke(rounds=3), tmp_path, progress=False)) == untimed(full)
    assert untimed(json.loads((tmp_path / "results.json").read_text())) == untimed(full)


@pytest.mark.slow
def test_warm_start_keeps_training_the_same_networks(dal_run, tmp_path):
    # The synthetic protocol warm-starts: three rounds of 6 steps on the same networks.
    _, state, _, _ = checkpoint.restore(dal_run[0])
    assert np.asarray(state["step"]).tolist() == [18, 18]
    # Re-initialised every round (the paper's protocols): the last round's 6 steps only.
    loop.run(smoke(warm_start=False), tmp_path, progress=False)
    _, state, _, _ = checkpoint.restore(tmp_path)
    assert np.asarray(state["step"]).tolist() == [6, 6]


@pytest.mark.slow
def test_a_crashed_checkpoint_write_leaves_the_last_round_usable(dal_run, tmp_path):
    import shutil

    wd, full = dal_run
    shutil.copytree(wd, tmp_path / "run")
    ckpts = tmp_path / "run" / "checkpoints"
    shutil.rmtree(ckpts / "2")
    # What an interrupted orbax write leaves behind: a temporary folder, never renamed.
    partial = ckpts / "2.orbax-checkpoint-tmp-1700000000"
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "garbage").write_bytes(b"\0" * 100)
    assert checkpoint.rounds(tmp_path / "run") == [0, 1]
    assert untimed(loop.run(smoke(rounds=3), tmp_path / "run", progress=False)) == untimed(full)


# ----------------------------------------------------------------------------- workdir safety


def _smoke_cmd(workdir, *flags) -> list[str]:
    return [
        sys.executable,
        "-m",
        "experiments.main",
        "--config=experiments/configs/default.py:smoke",
        "--dataset=synthetic",
        f"--workdir={workdir}",
        "--noprogress",
        *flags,
    ]


@pytest.mark.slow
def test_a_second_writer_is_refused_and_a_dead_holders_lock_does_not_block(tmp_path):
    first = subprocess.Popen(
        _smoke_cmd(tmp_path), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    lock = tmp_path / workdir.LOCK_NAME
    try:
        deadline = time.time() + 120
        while not (lock.exists() and lock.read_text().strip()):
            assert first.poll() is None and time.time() < deadline, "the run never took the lock"
            time.sleep(0.1)
        second = subprocess.run(
            _smoke_cmd(tmp_path, "--strategy=rs"),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert first.poll() is None, "the first run ended before the second started"
    finally:
        first.kill()  # SIGKILL: no chance to clean up its lock file
        first.wait()
    assert second.returncode == 2, second.stderr[-2000:]
    (line,) = second.stderr.strip().splitlines()
    assert f"is in use by another run (pid {first.pid}: " in line
    assert "-m experiments.main" in line and line.startswith("error: --workdir=")
    # The killed run's lock file is still there, naming it, and does not block the next writer.
    assert lock.read_text().startswith(f"{first.pid}\n")
    with workdir.claim(tmp_path):
        assert lock.read_text().startswith(f"{os.getpid()}\n")


@pytest.mark.slow
def test_resume_skips_an_unreadable_latest_round_and_keeps_it(dal_run, tmp_path, capsys):
    import shutil

    wd, full = dal_run
    run = tmp_path / "run"
    shutil.copytree(wd, run)
    for data in (run / "checkpoints" / "2" / "state").rglob("d/*"):  # an interrupted copy
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    assert untimed(loop.run(smoke(rounds=3), run, progress=False)) == untimed(full)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "unreadable" in ln]
    assert len(lines) == 1, lines
    assert lines[0].startswith("checkpoint of round 2 is unreadable (")
    assert lines[0].endswith(
        f"moved it to {run / 'checkpoints.unreadable' / '2'}, resuming from round 1"
    )
    assert (run / "checkpoints.unreadable" / "2" / "state").is_dir()  # kept, not deleted
    assert checkpoint.rounds(run) == [0, 1, 2]


def test_a_failed_rewrite_of_a_round_keeps_the_saved_one(tmp_path, monkeypatch):
    import orbax.checkpoint as ocp

    def save(r, value):
        state = {"w": np.full(3, value, np.float32)}
        checkpoint.save(tmp_path, r, state, {"m": np.zeros(2)}, {"v": value})

    save(0, 0.0)
    save(1, 1.0)

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(ocp.CheckpointManager, "save", disk_full)
        with pytest.raises(OSError, match="disk full"):
            save(1, 2.0)  # a resumed run re-saving its last round
    assert checkpoint.rounds(tmp_path) == [0, 1]
    _, state, _, meta = checkpoint.restore(tmp_path, 1)
    assert meta == {"v": 1.0} and np.asarray(state["w"]).tolist() == [1.0] * 3
    save(1, 2.0)  # once writing works, the new copy replaces it
    assert checkpoint.restore(tmp_path, 1)[3] == {"v": 2.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints"]  # nothing left over


def test_budget_beyond_the_pool_is_refused_before_training(tmp_path, monkeypatch):
    from dal_jax.training import fit

    monkeypatch.setattr(fit, "fit", lambda *a, **k: pytest.fail("trained before refusing"))
    with pytest.raises(ValueError, match=r"--budget=1000 .* = 1008 labelled images, .* holds 32"):
        loop.run(smoke(budget=1000), tmp_path, progress=False)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_main_runs_from_another_working_directory(tmp_path):
    helped = _main_help(tmp_path)
    assert "Traceback" not in helped.stderr and "--strategy" in helped.stdout, helped.stderr
    bad = subprocess.run(  # the default config is read, then the strategy is refused
        [sys.executable, "-m", "experiments.main", "--strategy=bogus", f"--workdir={tmp_path}"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert bad.stderr.strip() == (
        "error: unknown strategy 'bogus'; valid: rs, gd, cs, ll, vaal, dal, dal_flat, dal_multi, "
        "dal_adam, dal_steps5, dal_gissin, kinds (control)"
    )


# Ctrl-C 0.5 s into the first XLA compile that lasts that long, as a user's would land.
_INTERRUPT_IN_COMPILE = """
import os, signal, sys, threading
sys.path.insert(0, {repo!r})
blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
print(f"SIGINT at start: {{signal.getsignal(signal.SIGINT)}}, blocked {{blocked}}", flush=True)
from jax._src import compiler  # private: where every XLA compile of jax goes through
compile_and_load = compiler.backend_compile_and_load

def ctrl_c(module, thread):
    name = str(module.operation.attributes["sym_name"])
    os.write(1, f"SIGINT sent during a compile of {{name}} in {{thread}}\\n".encode())
    os.kill(os.getpid(), signal.SIGINT)

def interrupted(backend, module, *args, **kwargs):
    timer = threading.Timer(0.5, ctrl_c, (module, threading.current_thread().name))
    timer.start()
    try:
        return compile_and_load(backend, module, *args, **kwargs)
    finally:
        timer.cancel()

compiler.backend_compile_and_load = interrupted
from absl import app
from experiments import main
app.run(main.main)
"""


@contextlib.contextmanager
def _ctrl_c_as_from_a_terminal():
    """Children started inside get Ctrl-C's default action, as a terminal gives it. A child
    inherits an ignored SIGINT, and pytest started as a background job (``pytest ... &``)
    has it ignored: every Ctrl-C sent to the child was lost and the run finished. A handler
    is not inherited across exec, so installing one here gives the child the default."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_a_compile_exits_130_with_one_line(tmp_path):
    script = _INTERRUPT_IN_COMPILE.format(repo=str(REPO))
    for attempt in range(3):
        cmd = [sys.executable, "-c", script, *_smoke_cmd(tmp_path / str(attempt))[3:]]
        with _ctrl_c_as_from_a_terminal():
            res = subprocess.run(
                cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
            )
        # A run in which no compile outlasted the 0.5 s timer was never interrupted; only a
        # run that was sent the Ctrl-C says anything.
        if "SIGINT sent" in res.stdout:
            break
    assert "SIGINT sent" in res.stdout, "no compile lasted 0.5 s in 3 runs"
    # It used to end in "Fatal Python error: Segmentation fault" (exit 139) at teardown.
    assert res.returncode == 130, res.stdout[-2000:] + res.stderr[-3000:]
    assert "Fatal Python error" not in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.strip().endswith("run the same command to resume.")


@pytest.mark.slow
def test_split_from_seed_gives_every_trial_its_own_split(tmp_path):
    res = loop.run(smoke(split_from_seed=True, rounds=1), tmp_path, progress=False)
    trials = [json.loads((tmp_path / f"seed_{s}" / "results.json").read_text()) for s in (0, 1)]
    assert res["seeds"] == 2 and res["split_from_seed"]
    assert res["rounds"][0]["accuracy"] == [t["rounds"][0]["accuracy"][0] for t in trials]
    assert json.loads((tmp_path / "results.json").read_text()) == res
    c = build.resolve(smoke(split_from_seed=True))
    pools = [build.load_data(build.for_trial_split(c, s)) for s in (0, 1)]
    assert set(pools[0].test.ids) != set(pools[1].test.ids)  # other scenes, another split


@pytest.mark.slow
def test_init_from_starts_every_round_from_the_prior_and_reports_round_minus_one(dal_run, tmp_path):
    prior, _, prior_seed = checkpoint.load_ggcnn(dal_run[0])
    res = loop.run(smoke(init_from=str(dal_run[0]), rounds=1), tmp_path, progress=False)
    assert [r["round"] for r in res["rounds"]] == [-1, 0]
    assert res["rounds"][0]["labeled"] == 0 and res["rounds"][0]["steps"] == 0
    assert len(res["rounds"][0]["accuracy"]) == 2
    _, state, _, _ = checkpoint.restore(tmp_path)
    trained = state["params"]["ggcnn"]["encoder"]["conv1"]["kernel"]
    start = prior["encoder"]["conv1"]["kernel"]
    assert not np.allclose(np.asarray(trained)[0], start)  # round 0 trained on from the prior
    # The first round started from the prior: its weights stay near it, unlike a fresh start
    # (of the other seed: the prior's own seed started from the same initial weights).
    fresh = loop.run(smoke(rounds=1), tmp_path / "fresh", progress=False)
    _, fstate, _, _ = checkpoint.restore(tmp_path / "fresh")
    fresh_k = np.asarray(fstate["params"]["ggcnn"]["encoder"]["conv1"]["kernel"])[1 - prior_seed]
    assert np.abs(np.asarray(trained)[0] - start).mean() < np.abs(fresh_k - start).mean()
    assert fresh["rounds"][0]["round"] == 0


def test_init_from_refuses_another_input_scaling(dal_run, tmp_path):
    with pytest.raises(ValueError, match=r"input_scale 10.0, this config 1.0"):
        loop.run(smoke(init_from=str(dal_run[0]), input_scale=1.0), tmp_path, progress=False)


def test_a_run_saved_before_a_field_existed_resumes():
    c = build.resolve(smoke()).to_dict()
    old = {k: v for k, v in c.items() if k not in workdir.ADDED_FIELDS}
    assert workdir.config_diff(old, c) == []
    assert workdir.config_diff(old, {**c, "init_from": "runs/x"}) == ["init_from"]
