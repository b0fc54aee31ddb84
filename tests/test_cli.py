"""What the command lines share: the checked --config flag of the experiment commands
(`experiments.cli`; the one-line errors themselves are rows of tests/test_bad_input.py) and the
sample-data folder (`dal_jax.data.sample_data`: --sample_data, else $DAL_JAX_SAMPLE_DATA, never
a default outside the repository)."""

import pathlib
import re

import pytest

from dal_jax.data import sample_data
from experiments import cli
from experiments import room_walkthrough as walk
from experiments.bench import inference as bench_inference

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = "experiments/configs"


def test_every_config_flag_goes_through_the_checked_definition():
    # A command defining --config itself would bring the tracebacks back.
    users = []
    for path in sorted((REPO / "experiments").glob("*.py")):
        text = path.read_text()
        assert path.name == "cli.py" or "DEFINE_config_file" not in text, path.name
        if "cli.define_config(" in text:
            users.append(path.stem)
            assert "cli.run(main)" in text, f"{path.name}: flag errors need cli.run"
    assert {"main", "study", "train"} <= set(users), users


def test_valid_config_arguments_pass_the_check():
    args = [f"--config={CONFIGS}/cornell.py:smoke", "--config.strategies.dal.disc_lr=0.02"]
    assert cli.config_problem([*args, "--noconfig.augment", "--config.lr", "5e-4"]) is None
    assert cli.config_problem(["--config", f"{CONFIGS}/synthetic.py:uniform"]) is None
    assert cli.config_problem([]) is None  # the default config
    problem = cli.config_problem(["--config", f"{CONFIGS}/synthetic.py:x"])
    assert problem.endswith("unknown variant 'x'; valid: smoke, uniform, longtail")
    # The last --config wins, as in absl.
    assert cli.config_problem(["--config=nosuch.py", f"--config={CONFIGS}/frames.py"]) is None


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ----------------------------------------------------------------------------- sample data


def test_sample_data_comes_from_the_flag_else_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(sample_data.ENV, raising=False)
    assert sample_data.folder() is None
    with pytest.raises(ValueError, match=r"give --sample_data=DIR or set DAL_JAX_SAMPLE_DATA=DIR"):
        sample_data.require()
    monkeypatch.setenv(sample_data.ENV, str(tmp_path))
    assert sample_data.require() == tmp_path
    (tmp_path / "other").mkdir()
    assert sample_data.require(tmp_path / "other") == tmp_path / "other"  # the flag wins
    with pytest.raises(ValueError, match=r"^--sample_data=.*nosuch: the folder does not exist"):
        sample_data.require(tmp_path / "nosuch")
    monkeypatch.setenv(sample_data.ENV, str(tmp_path / "gone"))
    with pytest.raises(ValueError, match=r"^DAL_JAX_SAMPLE_DATA=.*gone: the folder does not"):
        sample_data.require()


def test_no_command_defaults_to_a_folder_outside_the_repository():
    for path in sorted((REPO / "experiments").rglob("*.py")):
        text = re.sub(r"--sample_data=\S+", "", path.read_text())
        assert "shared/data" not in text and "shared/peer" not in text, path
    assert "/work/" not in (REPO / "experiments" / "bench" / "inference.py").read_text()


def test_room_walkthrough_without_sample_data_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(sample_data.ENV, raising=False)
    with pytest.raises(SystemExit) as stop:
        walk.main(["--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--sample_data=DIR" in line and "DAL_JAX_SAMPLE_DATA=DIR" in line
    assert "jacquard/" in line and not (tmp_path / "out").exists()  # nothing started


def test_room_walkthrough_reads_the_variable(shared_data, tmp_path, monkeypatch):
    # The folder the variable names is the one the walk-through links the camera from.
    monkeypatch.setenv(sample_data.ENV, str(shared_data))
    assert sample_data.require(walk.parse_args([]).sample_data) == shared_data
    assert len(walk.camera_folder(sample_data.require(), tmp_path / "camera")) == 20


def test_bench_inference_frame(shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(sample_data.ENV, raising=False)
    assert bench_inference.cornell_frame() is None  # a synthetic frame, said in the output
    monkeypatch.setenv(sample_data.ENV, str(shared_data))
    assert bench_inference.cornell_frame() == shared_data / "cornell" / "pcd0100d.tiff"
    assert bench_inference.main(["--sample_data", str(tmp_path)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.endswith(
        "cornell/pcd0100d.tiff does not exist: the sample-data folder has no Cornell frame"
    )
    assert bench_inference.main(["--peer", str(tmp_path / "peer.py")]) == 2
    assert _one_error_line(capsys.readouterr().err).endswith("peer.py: no such file")
