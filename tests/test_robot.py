"""The camera-to-grasp loop: sources, sinks, the latest-frame-wins hand-off, replay, the CLI."""

import io
import json
import socket
import sys
import threading
import time
import types

import numpy as np
import pytest
import tifffile
from PIL import Image

from dal_jax import robot
from dal_jax.robot import cli
from tests.test_inference import BOX, SIZE, make_checkpoint, on_box, planted_params, scene


@pytest.fixture(scope="module")
def det():
    return robot.GraspDetector(planted_params(), SIZE)


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    """Three depth files of the box scene in three formats, plus a colour PNG to skip."""
    folder = tmp_path_factory.mktemp("frames")
    d = scene()
    tifffile.imwrite(folder / "a_depth.tiff", d)
    mm = np.nan_to_num(d * 1000).astype(np.uint16)
    Image.fromarray(mm).save(folder / "b_depth.png")
    np.save(folder / "c_depth.npy", d)
    Image.fromarray(np.zeros((240, 320, 3), np.uint8)).save(folder / "d_colour.png")
    return folder


def test_latest_slot_newest_wins_and_counts_drops():
    slot = robot.LatestSlot()
    for i in range(3):
        assert slot.put(i)
    assert slot.get(timeout=0.1) == 2 and slot.dropped == 2
    assert slot.get(timeout=0.05) is None  # empty: times out
    got = []
    t = threading.Thread(target=lambda: got.append(slot.get()))
    t.start()
    slot.put("x")
    t.join(1.0)
    assert got == ["x"]
    # wait=True blocks the producer until the consumer took the item: nothing is dropped.
    slot.put(1)
    done = threading.Event()
    threading.Thread(target=lambda: (slot.put(2, wait=True), done.set())).start()
    assert not done.wait(0.1)
    assert slot.get() == 1 and done.wait(1.0) and slot.get() == 2
    assert slot.dropped == 2
    slot.close()
    assert slot.get() is None and slot.put(3) is False


def test_folder_replay_every_frame(det, frames_dir, monkeypatch):
    from dal_jax.robot import detector

    # The source converts each frame's depth units once; the detector does not again.
    conversions = []
    convert = detector.as_depth_metres
    monkeypatch.setattr(
        detector, "as_depth_metres", lambda *a: conversions.append(a) or convert(*a)
    )
    src = robot.FolderSource(frames_dir)
    assert [p.name for p in src.files] == ["a_depth.tiff", "b_depth.png", "c_depth.npy"]
    buf = io.StringIO()
    stats = robot.run(det, src, robot.StdoutSink(buf))
    records = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert [r["name"] for r in records] == ["a_depth.tiff", "b_depth.png", "c_depth.npy"]
    for r in records:
        assert r["status"] == "ok"
        g = robot.Grasp(**{k: r["grasps"][0][k] for k in ("centre", "angle", "opening")},
                            jaw=0, quality=0)  # fmt: skip
        assert on_box(g, BOX)
        assert r["latency_ms"] >= r["detect_ms"] > 0
    s = stats.summary()
    assert s["processed"] == 3 and s["dropped"] == 0 and s["frames_in"] == 3
    assert conversions == []
    det.analyse(robot.read_depth(frames_dir / "a_depth.tiff"))  # a caller's frame: converted
    assert len(conversions) == 1
    assert s["detect_ms"]["median"] <= s["detect_ms"]["max"]


class SlowDetector:
    """Stands in for the network: 40 ms a frame, records which frames it saw."""

    def __init__(self):
        self.seen = []

    def analyse(self, depth, rgb, roi, top_k, intrinsics, metres=False):
        self.seen.append(float(depth[0, 0]))
        time.sleep(0.04)
        return robot.Detection([], "no grasp", (0, 0, 1), {})


def test_paced_source_drops_instead_of_queueing(tmp_path):
    # 200 fps into a 25 fps detector: most frames must be dropped, none queued, and each
    # processed frame must be fresh (waited at most about one detection).
    n = 40
    # Frame i is a flat 0.5 + i/100 m (plausible depth), so the detector sees which frame it got.
    ids = 0.5 + np.arange(1, n + 1, dtype=np.float32) / 100
    depth = np.ones((n, 24, 24), np.float32) * ids[:, None, None]
    np.savez(tmp_path / "seq.npz", depth=depth, stamp=np.arange(n) / 200.0)
    slow = SlowDetector()
    buf = io.StringIO()
    stats = robot.run(slow, robot.NpzSource(tmp_path / "seq.npz", fps=200), robot.StdoutSink(buf))
    assert stats.frames_in == n and stats.processed + stats.dropped == n
    assert stats.dropped >= n // 2 and stats.processed < n // 2
    assert slow.seen == sorted(slow.seen) and slow.seen[-1] == ids[-1]  # newest wins, in order
    assert max(stats.latency_ms) < 300  # no backlog (a queue would reach ~1.5 s)
    stamps = [json.loads(line)["stamp"] for line in buf.getvalue().splitlines()]
    assert stamps == sorted(stamps) and len(stamps) == stats.processed


def test_bad_frames_in_stream_do_not_stop_the_loop(det, tmp_path):
    depth = np.stack([scene(), np.full((240, 320), np.nan, np.float32), np.zeros((240, 320))])
    np.savez(tmp_path / "seq.npz", depth=depth.astype(np.float32))
    buf = io.StringIO()
    stats = robot.run(det, robot.NpzSource(tmp_path / "seq.npz"), robot.StdoutSink(buf))
    status = [json.loads(line)["status"] for line in buf.getvalue().splitlines()]
    assert status == ["ok", "no valid depth", "no valid depth"] and stats.errors == 0

    class WrongShape:
        paced = False

        def __iter__(self):
            yield robot.Frame(np.zeros((5, 240, 320, 3), np.float32), name="bad")
            yield robot.Frame(scene(), name="good")

    buf = io.StringIO()
    stats = robot.run(det, WrongShape(), robot.StdoutSink(buf))
    recs = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert recs[0]["status"].startswith("error:") and "shape" in recs[0]["status"]
    assert recs[1]["status"] == "ok" and stats.errors == 1


def test_tcp_sink_loopback(det, tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    received = []

    def serve():
        conn, _ = server.accept()
        with conn, conn.makefile() as f:
            received.extend(json.loads(line) for line in f)

    t = threading.Thread(target=serve)
    t.start()
    np.savez(tmp_path / "seq.npz", depth=np.stack([scene(), scene()]))
    port = server.getsockname()[1]
    sink = robot.make_sink(f"tcp:127.0.0.1:{port}")
    robot.run(det, robot.make_source(f"npz:{tmp_path / 'seq.npz'}"), sink)
    sink.close()
    t.join(5.0)
    server.close()
    assert [r["frame"] for r in received] == [0, 1]
    assert all(r["status"] == "ok" for r in received)
    with pytest.raises(ConnectionError, match="127.0.0.1"):
        robot.TcpSink("127.0.0.1", port, timeout=1.0)  # nothing listens any more


def test_ros_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "rospy", None)
    monkeypatch.setitem(sys.modules, "rclpy", None)
    assert robot.ros_available() is None
    with pytest.raises(RuntimeError, match="rospy.*rclpy"):
        robot.make_source("ros:/camera/depth/image_raw")
    with pytest.raises(RuntimeError, match="rospy"):
        robot.make_sink("ros:/grasps")


def test_image_msg_to_depth():
    mm = np.array([[0, 1000], [1500, 65535]], np.uint16)
    data = np.zeros((2, 3), np.uint16)  # row stride with padding
    data[:, :2] = mm
    msg = types.SimpleNamespace(
        encoding="16UC1", is_bigendian=0, height=2, width=2, step=6, data=data.tobytes()
    )
    np.testing.assert_allclose(robot.image_msg_to_depth(msg), mm / 1000.0, rtol=1e-6)
    f = np.array([[0.5, np.nan]], ">f4")
    msg = types.SimpleNamespace(
        encoding="32FC1", is_bigendian=1, height=1, width=2, step=8, data=f.tobytes()
    )
    np.testing.assert_array_equal(robot.image_msg_to_depth(msg), np.array([[0.5, np.nan]]))


def test_cli_replay_folder(frames_dir, tmp_path, capsys):
    run = make_checkpoint(tmp_path / "run")
    rc = cli.main(
        ["--checkpoint", str(run), f"--source=folder:{frames_dir}", "--intrinsics=500,500,160,120"]
    )
    cap = capsys.readouterr()
    assert rc == 0
    records = [json.loads(line) for line in cap.out.splitlines()]
    assert len(records) == 3 and all(r["grasps"][0]["position"][2] > 0.6 for r in records)
    stats = json.loads(cap.err.strip().splitlines()[-1])["stats"]
    assert stats["processed"] == 3 and stats["dropped"] == 0
    assert cli.main(["--checkpoint", str(run), "--source=bogus"]) == 2


def test_unreadable_frames_are_reported_and_counted(det, tmp_path, capsys):
    """A frame the source cannot read yields an "error: ..." record and counts in the stats
    (before the fix it was printed, then missing from the records and from "errors")."""
    np.save(tmp_path / "a_good.npy", scene())
    (tmp_path / "b_cut.tiff").write_bytes(b"II*\x00" + b"\x00" * 20)  # a truncated TIFF
    tifffile.imwrite(tmp_path / "c_scened.tiff", scene())
    (tmp_path / "c_scener.png").write_bytes(b"not a png")  # its RGB pair is unreadable
    np.save(tmp_path / "d_good.npy", scene())
    buf = io.StringIO()
    stats = robot.run(det, robot.FolderSource(tmp_path), robot.StdoutSink(buf))
    recs = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert [r["name"] for r in recs] == ["a_good.npy", "b_cut.tiff", "c_scened.tiff", "d_good.npy"]
    assert [r["status"][:6] for r in recs] == ["ok", "error:", "error:", "ok"]
    assert "b_cut.tiff" in recs[1]["status"] and "c_scener.png" in recs[2]["status"]
    s = stats.summary()
    assert (s["frames_in"], s["processed"], s["errors"]) == (4, 4, 2)
    assert capsys.readouterr().err.count("skipping") == 2


def test_depth_scale_and_units_warning_once(det, tmp_path, capsys):
    frames = np.stack([scene(holes=False), scene(holes=False)])
    np.savez(tmp_path / "mm.npz", depth=frames * 1000)  # float millimetres
    runs = {}
    for scale in (None, 0.001):
        buf = io.StringIO()
        stats = robot.run(
            det, robot.NpzSource(tmp_path / "mm.npz", depth_scale=scale), robot.StdoutSink(buf)
        )
        runs[scale] = [json.loads(line) for line in buf.getvalue().splitlines()]
        assert stats.errors == 0
        err = capsys.readouterr().err
        assert err.count("warning:") == (1 if scale is None else 0), err  # once per source
    ref = det.detect(frames[0])[0]
    for recs in runs.values():
        assert [r["grasps"][0]["centre"] for r in recs] == [list(ref.centre)] * 2
    # A wrong scale is refused per frame (error records), not turned into kilometres.
    buf = io.StringIO()
    stats = robot.run(
        det, robot.NpzSource(tmp_path / "mm.npz", depth_scale=1.0), robot.StdoutSink(buf)
    )
    assert stats.errors == 2 and "implausible depth" in buf.getvalue()
