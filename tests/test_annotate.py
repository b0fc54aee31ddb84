"""Tests of dal_jax.annotate: the queue folder, the HTTP API on loopback, the CLI, and the page
itself in a real headless Chromium (Debian's ``chromium`` driven by Playwright)."""

from __future__ import annotations

import http.client
import json
import math
import os
import pathlib
import subprocess
import sys
import threading
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from dal_jax.annotate import queue as queue_lib
from dal_jax.annotate import server as server_lib
from dal_jax.data import grasp

REPO = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
H, W = 120, 160


def make_images(k: int, h: int = H, w: int = W, seed: int = 0):
    """k synthetic scenes: a table plane with one nearer box each, plus a missing-depth hole."""
    rng = np.random.default_rng(seed)
    rgb = np.full((k, h, w, 3), 140, np.uint8)
    depth = np.full((k, h, w), 0.7, np.float32)
    for i in range(k):
        r, c = rng.integers(10, h // 2), rng.integers(10, w // 2)
        rgb[i, r : r + 30, c : c + 40] = (200, 40 + 50 * i, 40)
        depth[i, r : r + 30, c : c + 40] = 0.62
        depth[i, 0:3, 0:3] = np.nan
    return rgb, depth


def make_queue(tmp_path, k=3, with_rgb=True, ids=None, **kw) -> pathlib.Path:
    rgb, depth = make_images(k)
    ids = ids or [f"cornell/pcd{100 + i}" for i in range(k)]
    return queue_lib.write_queue(
        tmp_path / "queue", ids, rgb if with_rgb else None, depth, round_index=2, **kw
    )


def rect(centre, angle_deg, opening, jaw):
    return grasp.grasp_to_rect(
        np.asarray(centre, float),
        np.deg2rad(angle_deg),
        np.asarray(opening, float),
        np.asarray(jaw, float),
    )


def call(server, method, path, body=None, headers=None, raw: bytes | None = None):
    """One HTTP request to ``server``; returns (status, decoded JSON or raw bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    hdrs = {"Host": f"127.0.0.1:{server.port}"}
    if body is not None:
        raw = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    hdrs.update(headers or {})
    conn.request(method, path, body=raw, headers=hdrs)
    res = conn.getresponse()
    data = res.read()
    conn.close()
    if res.getheader("Content-Type", "").startswith("application/json"):
        return res.status, json.loads(data)
    return res.status, data


def tree(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def server(tmp_path):
    qdir = make_queue(tmp_path)
    srv = server_lib.serve(qdir)
    yield srv
    srv.close()


# ----------------------------------------------------------------------------- queue folder


def test_write_queue_files_and_read_labels(tmp_path):
    existing = {"cornell/pcd101": np.stack([rect((60, 80), 30, 40, 20), rect((5, 5), 0, 30, 10)])}
    qdir = make_queue(tmp_path, existing_rects=existing)
    manifest = json.loads((qdir / "queue.json").read_text())
    assert [s["id"] for s in manifest["samples"]] == [f"cornell/pcd{100 + i}" for i in range(3)]
    assert (manifest["round"], manifest["height"], manifest["width"]) == (2, H, W)

    rgb, depth = make_images(3)
    sdir = qdir / "samples" / "0001"
    assert np.array_equal(np.asarray(Image.open(sdir / "rgb.png")), rgb[1])
    dimg = np.asarray(Image.open(sdir / "depth.png"))
    assert dimg.shape == (H, W) and dimg.dtype == np.uint8
    assert dimg[0, 0] == 0  # missing depth is black
    near = np.argwhere(depth[1] < 0.65)[0]
    assert dimg[tuple(near)] > dimg[H - 1, W - 1] > 0  # the nearer box is brighter than table

    labels = queue_lib.read_labels(qdir)
    assert list(labels) == manifest_ids(qdir)
    assert labels["cornell/pcd100"].shape == (0, 4, 2)
    np.testing.assert_allclose(labels["cornell/pcd101"][0], existing["cornell/pcd101"][0])
    # The second starting grasp stuck out of the image: it was clipped, so it can be saved back.
    clipped = labels["cornell/pcd101"][1]
    assert clipped.min() == 0 and np.all(clipped[:, 0] <= H) and np.all(clipped[:, 1] <= W)
    cpos, _ = grasp.parse_cornell((sdir / "cpos.txt").read_text(), round_to_int=False)
    np.testing.assert_allclose(cpos, labels["cornell/pcd101"], atol=1e-3)
    assert queue_lib.read_labels(qdir, include_empty=False).keys() == {"cornell/pcd101"}
    assert not queue_lib.is_finished(qdir)


def manifest_ids(qdir):
    return [s["id"] for s in json.loads((qdir / "queue.json").read_text())["samples"]]


def test_ids_never_become_paths(tmp_path):
    ids = ["../../evil", "/etc/passwd", "a/b\\c"]
    qdir = make_queue(tmp_path, ids=ids)
    assert set(tmp_path.iterdir()) == {qdir}
    assert sorted(p.name for p in (qdir / "samples").iterdir()) == ["0000", "0001", "0002"]
    assert list(queue_lib.read_labels(qdir)) == ids
    with pytest.raises(ValueError, match="unique"):
        queue_lib.write_queue(tmp_path / "q2", ["a", "a"], None, np.zeros((2, 4, 4)), 0)
    with pytest.raises(ValueError, match="control"):
        queue_lib.write_queue(tmp_path / "q3", ["a\nb"], None, np.zeros((1, 4, 4)), 0)


def test_write_queue_again_resumes_or_refuses(tmp_path):
    qdir = make_queue(tmp_path)
    r = rect((60, 80), 10, 40, 20)[None]
    queue_lib.save_sample(qdir, 1, r, base_revision=0)
    queue_lib.write_state(qdir, current=1)
    make_queue(tmp_path)  # the same round again (a restarted run): labels and position kept
    np.testing.assert_allclose(queue_lib.read_labels(qdir)["cornell/pcd101"], r)
    assert queue_lib.read_state(qdir)["current"] == 1
    with pytest.raises(FileExistsError):
        make_queue(tmp_path, k=2, ids=["x", "y"])
    make_queue(tmp_path, k=2, ids=["x", "y"], overwrite=True)
    assert list(queue_lib.read_labels(qdir)) == ["x", "y"]
    assert not (qdir / "samples" / "0002").exists()  # the old third sample is gone


def test_failed_save_keeps_the_old_files_whole(tmp_path, monkeypatch):
    """A crash between writing the temporary file and renaming it leaves the old labels and no
    partial or temporary file behind."""
    qdir = make_queue(tmp_path)
    old = rect((60, 80), 0, 40, 20)[None]
    queue_lib.save_sample(qdir, 0, old, base_revision=0)
    sdir = qdir / "samples" / "0000"
    before = tree(sdir)

    def crash(src, dst):
        raise OSError("simulated crash")

    monkeypatch.setattr(queue_lib.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        queue_lib.save_sample(qdir, 0, rect((30, 30), 45, 20, 10)[None], base_revision=1)
    monkeypatch.undo()
    assert tree(sdir) == before
    rects, revision = queue_lib.read_sample(qdir, 0)
    np.testing.assert_array_equal(rects, old)
    assert revision == 1
    # A lost grasps.json falls back to the Cornell file.
    (sdir / "grasps.json").unlink()
    np.testing.assert_allclose(queue_lib.read_labels(qdir)["cornell/pcd100"], old, atol=1e-4)


def test_validate_rects_messages():
    good = rect((10, 10), 0, 8, 4)[None].tolist()
    assert queue_lib.validate_rects(good, 20, 20).shape == (1, 4, 2)
    bad = [
        ({"a": 1}, TypeError, "list of rectangles"),
        ([good[0][:3]], ValueError, "4 corners"),
        ([[[1, 2, 3]] * 4], ValueError, r"\[row, col\]"),
        ([[[1, "2"]] * 4], TypeError, "not a number"),
        ([[[1, True]] * 4], TypeError, "not a number"),
        ([[[1, float("nan")]] * 4], ValueError, "not finite"),
        ([[[1, 21]] * 4], ValueError, "outside the image"),
        ([[[-0.5, 1]] * 4], ValueError, "outside the image"),
        (good * 101, ValueError, "too many"),
    ]
    for obj, exc, msg in bad:
        with pytest.raises(exc, match=msg):
            queue_lib.validate_rects(obj, 20, 20)


# ----------------------------------------------------------------------------- HTTP API


def test_api_serves_page_and_saves_good_labels(server):
    assert server.url.startswith("http://127.0.0.1:")
    assert server._httpd.server_address[0] == "127.0.0.1"  # loopback unless told otherwise
    for path, marker in [
        ("/", b"<canvas"),
        ("/app.js", b"graspToRect"),
        ("/style.css", b"#canvas"),
    ]:
        status, body = call(server, "GET", path)
        assert status == 200 and marker in body
    status, q = call(server, "GET", "/api/queue")
    assert status == 200
    assert (q["round"], q["height"], q["width"], len(q["samples"])) == (2, H, W, 3)
    assert q["samples"][1] == {
        "index": 1,
        "id": "cornell/pcd101",
        "has_rgb": True,
        "grasps": 0,
        "revision": 0,
    }
    status, png = call(server, "GET", "/api/samples/2/depth.png")
    assert status == 200 and png.startswith(b"\x89PNG")

    rects = np.stack([rect((60, 80), 30, 40, 20), rect((30.25, 50.5), -60, 24.5, 12)])
    status, res = call(
        server, "PUT", "/api/samples/1/grasps", {"rects": rects.tolist(), "revision": 0}
    )
    assert (status, res["revision"]) == (200, 1)
    sdir = server.queue_dir / "samples" / "0001"
    saved = json.loads((sdir / "grasps.json").read_text())
    assert saved["id"] == "cornell/pcd101" and saved["revision"] == 1
    np.testing.assert_array_equal(np.asarray(saved["rects"]), rects)  # JSON keeps exact floats
    cpos, skipped = grasp.parse_cornell((sdir / "cpos.txt").read_text(), round_to_int=False)
    assert skipped == 0
    np.testing.assert_allclose(cpos, rects, atol=1e-3)
    np.testing.assert_array_equal(queue_lib.read_labels(server.queue_dir)["cornell/pcd101"], rects)
    status, s = call(server, "GET", "/api/samples/1")
    assert status == 200 and s["revision"] == 1
    np.testing.assert_array_equal(np.asarray(s["rects"]), rects)
    # An empty list is a valid label ("no good grasp"), and the resume position is stored.
    assert call(server, "PUT", "/api/samples/1/grasps", {"rects": [], "revision": 1})[0] == 200
    assert call(server, "PUT", "/api/state", {"current": 2})[0] == 200
    assert call(server, "GET", "/api/queue")[1]["current"] == 2
    assert not any(p.name.endswith(".tmp") for p in server.queue_dir.rglob("*"))


def test_api_rejects_bad_payloads_with_4xx_and_writes_nothing(tmp_path, server):
    good = rect((60, 80), 30, 40, 20)[None].tolist()
    before = tree(tmp_path)
    url = "/api/samples/0/grasps"
    cases = [
        # (raw body, extra headers, status, words in the error)
        (b"{not json", {}, 400, "not valid JSON"),
        (b'{"rects": [[[1, NaN], [1, 2], [1, 2], [1, 2]]], "revision": 0}', {}, 400, "NaN"),
        (b'{"rects": [[[1, 1e999], [1, 2], [1, 2], [1, 2]]], "revision": 0}', {}, 400, "finite"),
        (b"[1, 2]", {}, 400, "JSON object"),
        (json.dumps({"revision": 0}).encode(), {}, 400, "'rects' missing"),
        (json.dumps({"rects": good}).encode(), {}, 400, "revision"),
        (json.dumps({"rects": good, "revision": "0"}).encode(), {}, 400, "revision"),
        (json.dumps({"rects": "x", "revision": 0}).encode(), {}, 400, "list"),
        (json.dumps({"rects": [[[0, 0]] * 3], "revision": 0}).encode(), {}, 400, "4 corners"),
        (
            json.dumps({"rects": [[[0, 0], [0, 5], [H + 1, 5], [5, 0]]], "revision": 0}).encode(),
            {},
            400,
            "outside the image",
        ),
        (
            json.dumps({"rects": [[[0, 0], [0, 5], [5, -1], [5, 0]]], "revision": 0}).encode(),
            {},
            400,
            "outside the image",
        ),
        (json.dumps({"rects": good * 101, "revision": 0}).encode(), {}, 400, "too many"),
        (b"x" * (server_lib.MAX_BODY + 10), {}, 413, "exceeds"),
        (
            json.dumps({"rects": good, "revision": 0}).encode(),
            {"Content-Type": "text/plain"},
            415,
            "Content-Type",
        ),
        (b"", {"Content-Length": "abc"}, 400, "Content-Length"),
        (json.dumps({"rects": good, "revision": 5}).encode(), {}, 409, "saved elsewhere"),
    ]
    for raw, headers, status, words in cases:
        hdrs = {"Content-Type": "application/json", **headers}
        got, body = call(server, "PUT", url, raw=raw, headers=hdrs)
        assert got == status, (raw[:80], body)
        assert words in body["error"], (raw[:80], body)
    # Other routes' payloads.
    assert call(server, "PUT", "/api/state", {"current": 3})[0] == 400
    assert call(server, "PUT", "/api/state", {"current": True})[0] == 400
    assert (
        call(server, "POST", "/api/finish", raw=b"{}", headers={"Content-Type": "text/plain"})[0]
        == 415
    )
    assert tree(tmp_path) == before  # nothing written, not even a temporary file
    assert not server.wait_finished(0)


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/api/samples/3"),
        ("GET", "/api/samples/-1"),
        ("GET", "/api/samples/../../queue.json"),
        ("GET", "/api/samples/%2e%2e%2fqueue.json"),
        ("GET", "/api/samples/0/../../../queue.json"),
        ("GET", "/api/samples/0/cpos.txt"),
        ("GET", "/api/samples/0/rgb.png/../grasps.json"),
        ("GET", "/queue.json"),
        ("GET", "/static/app.js"),
        ("GET", "/../dal_jax/annotate/server.py"),
        ("PUT", "/api/samples/3/grasps"),
        ("PUT", "/api/samples/1e0/grasps"),
        ("PUT", "/api/samples/0/../1/grasps"),
    ],
)
def test_api_unknown_samples_and_paths_are_404(server, method, path):
    body = {"rects": [], "revision": 0} if method == "PUT" else None
    status, res = call(server, method, path, body)
    assert status == 404 and "error" in res


def test_api_depth_only_queue_has_no_rgb(tmp_path):
    qdir = make_queue(tmp_path, with_rgb=False)
    with server_lib.serve(qdir) as srv:
        status, res = call(srv, "GET", "/api/samples/0/rgb.png")
        assert status == 404 and "no rgb" in res["error"]
        assert call(srv, "GET", "/api/samples/0/depth.png")[0] == 200
        assert call(srv, "GET", "/api/queue")[1]["samples"][0]["has_rgb"] is False


def test_api_refuses_foreign_host_origin_and_methods(server):
    body = {"rects": [], "revision": 0}
    # DNS rebinding: a page served as evil.example that resolves to 127.0.0.1.
    status, res = call(server, "GET", "/api/queue", headers={"Host": f"evil.example:{server.port}"})
    assert status == 403 and "Host" in res["error"]
    status, res = call(
        server, "PUT", "/api/samples/0/grasps", body, headers={"Origin": "http://evil.example"}
    )
    assert status == 403 and "cross-origin" in res["error"]
    ok_origin = {"Origin": f"http://localhost:{server.port}", "Host": f"localhost:{server.port}"}
    assert call(server, "PUT", "/api/samples/0/grasps", body, headers=ok_origin)[0] == 200
    assert call(server, "DELETE", "/api/samples/0/grasps")[0] == 405
    assert call(server, "OPTIONS", "/api/samples/0/grasps")[0] == 405  # no CORS preflight


def test_two_tabs_first_save_wins_and_second_gets_409(server):
    a = rect((60, 80), 0, 40, 20)[None].tolist()
    b = rect((40, 40), 45, 30, 15)[None].tolist()
    rev_a = call(server, "GET", "/api/samples/0")[1]["revision"]
    rev_b = call(server, "GET", "/api/samples/0")[1]["revision"]
    assert call(server, "PUT", "/api/samples/0/grasps", {"rects": a, "revision": rev_a})[0] == 200
    status, res = call(server, "PUT", "/api/samples/0/grasps", {"rects": b, "revision": rev_b})
    assert status == 409 and res["revision"] == 1
    np.testing.assert_allclose(res["rects"], a)  # the page gets the saved version to show
    np.testing.assert_allclose(queue_lib.read_labels(server.queue_dir)["cornell/pcd100"], a)


def test_concurrent_writers_never_corrupt_files(server):
    """8 writers hammer one sample; every accepted save bumps the revision exactly once and
    the files always parse and agree."""
    accepted = []
    errors = []

    def writer(w):
        for n in range(8):
            rects = [rect((20 + w * 5, 20 + n * 5), w * 10, 20 + n, 10).tolist()] * (1 + w % 3)
            while True:
                rev = call(server, "GET", "/api/samples/2")[1]["revision"]
                status, res = call(
                    server, "PUT", "/api/samples/2/grasps", {"rects": rects, "revision": rev}
                )
                if status == 200:
                    accepted.append(res["revision"])
                    break
                if status != 409:
                    errors.append((status, res))
                    return

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(accepted) == list(range(1, 65))  # no two saves got the same revision
    sdir = server.queue_dir / "samples" / "0002"
    saved = json.loads((sdir / "grasps.json").read_text())
    assert saved["revision"] == 64
    cpos, skipped = grasp.parse_cornell((sdir / "cpos.txt").read_text(), round_to_int=False)
    assert skipped == 0
    np.testing.assert_allclose(cpos, saved["rects"], atol=1e-3)
    assert not [p for p in sdir.iterdir() if p.name.startswith(".")]  # no temp files left


def _damage_both_label_files(qdir, index=0):
    sdir = qdir / "samples" / f"{index:04d}"
    (sdir / "grasps.json").write_text('{"id": "cornell/pcd100", "revision": 1, "rec')
    (sdir / "cpos.txt").write_text("80 60\n80 100\n100 100\n")  # a line lost
    return sdir


def test_corrupt_labels_are_neither_served_nor_overwritten(tmp_path):
    """Both label files of a sample damaged: before the fix the sample was served as "0 grasps,
    revision 0" and the next save replaced the user's labels."""
    qdir = make_queue(tmp_path)
    queue_lib.save_sample(qdir, 0, rect((60, 80), 0, 40, 20)[None], 0)
    sdir = _damage_both_label_files(qdir)
    before = tree(qdir / "samples")
    with pytest.raises(queue_lib.CorruptLabels, match=r"sample 0 \(samples/0000\)") as err:
        server_lib.serve(qdir)
    assert err.value.problems[0][0] == 0 and "--move_aside_corrupt" in str(err.value)
    with pytest.raises(queue_lib.CorruptLabels):
        queue_lib.save_sample(qdir, 0, [], base_revision=0)
    with pytest.raises(queue_lib.CorruptLabels):
        queue_lib.read_labels(qdir)
    with pytest.raises(queue_lib.CorruptLabels):
        server_lib.annotate_queue(qdir, on_url=lambda u: pytest.fail("served"))
    assert tree(qdir / "samples") == before  # nothing touched
    # The explicit repair keeps the damaged files (moved aside) and starts the sample empty.
    (moved,) = queue_lib.move_aside_corrupt(qdir)
    assert moved.parent == sdir and moved.name.startswith("corrupt-")
    assert tree(moved) == {n: before[f"0000/{n}"] for n in ("grasps.json", "cpos.txt")}
    with server_lib.serve(qdir) as srv:
        assert call(srv, "GET", "/api/samples/0")[1]["rects"] == []
        ok = call(srv, "PUT", "/api/samples/0/grasps", {"rects": [], "revision": 0})
        assert ok == (200, {"index": 0, "revision": 1})
    assert tree(moved) == {n: before[f"0000/{n}"] for n in ("grasps.json", "cpos.txt")}


def test_damaged_grasps_json_falls_back_to_cpos_with_a_note(tmp_path):
    qdir = make_queue(tmp_path)
    r = rect((60, 80), 30, 40, 20)[None]
    queue_lib.save_sample(qdir, 1, r, 0)
    (qdir / "samples" / "0001" / "grasps.json").write_text("[1, 2")
    rects, revision = queue_lib.read_sample(qdir, 1)
    np.testing.assert_allclose(rects, r, atol=1e-6)
    assert revision == 0
    with server_lib.serve(qdir) as srv:
        assert [i for i, _ in srv.notes] == [1] and "read from cpos.txt" in srv.notes[0][1]


def test_labels_damaged_while_serving_answer_423_and_stay(server):
    qdir = server.queue_dir
    queue_lib.save_sample(qdir, 2, rect((60, 80), 0, 40, 20)[None], 0)
    sdir = _damage_both_label_files(qdir, 2)
    before = tree(sdir)
    status, res = call(server, "GET", "/api/samples/2")
    assert status == 423 and "cannot be read" in res["error"]
    status, res = call(server, "PUT", "/api/samples/2/grasps", {"rects": [], "revision": 1})
    assert status == 423 and tree(sdir) == before
    summary = call(server, "GET", "/api/queue")[1]["samples"][2]
    assert summary["grasps"] is None and "cannot be read" in summary["error"]


def test_bad_manifest_and_port_are_clear_errors(tmp_path, capsys):
    from dal_jax.annotate import __main__ as cli

    qdir = make_queue(tmp_path)
    assert cli.main([f"--queue={qdir}", "--port=99999"]) == 2
    assert "--port=99999: a TCP port is 0..65535" in capsys.readouterr().err
    manifest = (qdir / "queue.json").read_text()
    for text, fragment in [
        ("{oops", "queue.json is damaged"),
        ('{"format": "x"}', "not a dal_jax annotation queue"),
        (manifest.replace('"round": 2', '"round": "two"'), "'round' must be an integer"),
    ]:
        (qdir / "queue.json").write_text(text)
        assert cli.main([f"--queue={qdir}"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and fragment in err and err.count("\n") == 1


def test_annotate_queue_blocks_until_finish_and_returns_labels(tmp_path):
    qdir = make_queue(tmp_path)
    urls, result = [], {}
    started = threading.Event()

    def on_url(url):
        urls.append(url)
        started.set()

    t = threading.Thread(
        target=lambda: result.update(
            queue_lib_labels=server_lib.annotate_queue(qdir, on_url=on_url)
        )
    )
    t.start()
    assert started.wait(10)
    port = urllib.parse.urlsplit(urls[0]).port
    srv = type("S", (), {"port": port})
    r = rect((60, 80), 20, 40, 20)[None]
    assert call(srv, "PUT", "/api/samples/2/grasps", {"rects": r.tolist(), "revision": 0})[0] == 200
    t.join(0.3)
    assert t.is_alive()  # still waiting for Finish
    status, state = call(srv, "POST", "/api/finish", {})
    assert status == 200 and state["finished"] is True
    t.join(10)
    assert not t.is_alive()
    labels = result["queue_lib_labels"]
    np.testing.assert_allclose(labels["cornell/pcd102"], r)
    assert labels["cornell/pcd100"].shape == (0, 4, 2)
    assert queue_lib.is_finished(qdir)
    # A finished queue (e.g. a restarted run) returns at once without serving.
    again = server_lib.annotate_queue(qdir, on_url=lambda u: pytest.fail("served again"))
    np.testing.assert_allclose(again["cornell/pcd102"], r)


def test_cli_serves_queue_and_exits_on_finish(tmp_path):
    qdir = make_queue(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    helped = subprocess.run(
        [sys.executable, "-m", "dal_jax.annotate", "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert helped.returncode == 0 and "--queue" in helped.stdout and "127.0.0.1" in helped.stdout
    proc = subprocess.Popen(
        [sys.executable, "-m", "dal_jax.annotate", f"--queue={qdir}", "--port=0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        url = None
        for _ in range(5):
            line = proc.stdout.readline()
            if "http://" in line:
                url = line.split()[1]
                break
        assert url and url.startswith("http://127.0.0.1:"), line
        srv = type("S", (), {"port": urllib.parse.urlsplit(url).port})
        r = rect((60, 80), 0, 40, 20)[None].tolist()
        assert call(srv, "PUT", "/api/samples/0/grasps", {"rects": r, "revision": 0})[0] == 200
        assert call(srv, "POST", "/api/finish", {})[0] == 200
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Finished: 1 grasps on 3 samples" in out
    bad = subprocess.run(
        [sys.executable, "-m", "dal_jax.annotate", f"--queue={tmp_path / 'nothing'}"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert bad.returncode == 2 and "annotation queue" in bad.stderr


# ----------------------------------------------------------------------------- real browser


def _playwright_or_skip():
    problems = []
    if not os.path.exists(CHROMIUM):
        problems.append(f"{CHROMIUM} missing (apt-get install -y chromium)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        expect = sync_playwright = None
        problems.append("playwright missing (pip install -r requirements-test.txt)")
    if problems:
        pytest.skip("BROWSER END-TO-END TEST NOT RUN: " + "; ".join(problems))
    return sync_playwright, expect


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_browser_draw_two_grasps_and_finish(tmp_path):
    """Draws grasps with the mouse in headless Chromium, checks undo, wheel, resume, Finish."""
    sync_playwright, expect = _playwright_or_skip()
    qdir = make_queue(tmp_path)
    shot = tmp_path / "annotate_page.png"
    with server_lib.serve(qdir) as srv, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            page_errors = []
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(srv.url)
            page.wait_for_selector("body[data-ready='1']", timeout=10000)
            assert page.text_content("#position") == "1 of 3"
            assert page.text_content("#sample-id") == "cornell/pcd100"
            assert "cornell/pcd101" in page.text_content("#next-caption")

            box = page.locator("#canvas").bounding_box()
            scale = box["width"] / W

            def at(row, col):
                return box["x"] + col * scale, box["y"] + row * scale

            def drag(p0, p1):
                page.mouse.move(*at(*p0))
                page.mouse.down()
                page.mouse.move(*at(*p1), steps=6)
                page.mouse.up()

            def wait_saved(revision):
                # Locator assertions, not wait_for_function: the page's CSP forbids eval.
                expect(page.locator("#status")).to_have_text(
                    f"saved (revision {revision})", timeout=5000
                )

            # Two tabs on sample 1: the second tab's stale save is refused (409) and it shows
            # the first tab's version instead of overwriting it.
            tab2 = browser.new_page(viewport={"width": 1100, "height": 700})
            tab2.goto(srv.url)
            tab2.wait_for_selector("body[data-ready='1']", timeout=10000)
            drag((40, 40), (40, 55))
            wait_saved(1)
            box2 = tab2.locator("#canvas").bounding_box()
            tab2.mouse.move(box2["x"] + 100 * scale, box2["y"] + 60 * scale)
            tab2.mouse.down()
            tab2.mouse.move(box2["x"] + 120 * scale, box2["y"] + 60 * scale, steps=6)
            tab2.mouse.up()
            expect(tab2.locator("#status")).to_have_text("saved elsewhere (revision 1)")
            expect(tab2.locator("#message")).to_contain_text("Another tab saved this sample")
            assert tab2.text_content("#count") == "1"
            tab2.close()

            page.click("#next")  # go to sample 2 so resuming is tested too
            expect(page.locator("#position")).to_have_text("2 of 3")
            drag((60, 50), (60, 70))  # angle 0, opening 40, jaw 20 (auto = half)
            wait_saved(1)
            drag((80, 110), (70, 120))  # angle 45 deg, opening 2*sqrt(200)
            wait_saved(2)
            page.mouse.move(*at(80, 110))
            page.mouse.wheel(0, -100)  # the new grasp is selected: its jaw grows by 10 %
            wait_saved(3)
            drag((30, 30), (30, 40))  # a third grasp ...
            wait_saved(4)
            page.keyboard.press("Control+z")  # ... undone
            wait_saved(5)
            assert page.text_content("#count") == "2"
            page.click("#cancel")  # back to the sample as opened (no grasps) ...
            wait_saved(6)
            assert page.text_content("#count") == "0"
            page.keyboard.press("z")  # ... and Cancel is undoable
            wait_saved(7)
            assert page.text_content("#count") == "2"

            page.reload()  # the page resumes on sample 2 with both grasps
            page.wait_for_selector("body[data-ready='1']", timeout=10000)
            assert page.text_content("#position") == "2 of 3"
            assert page.text_content("#count") == "2"
            page.click("#readme")
            assert page.is_visible("#readme-dialog")
            page.keyboard.press("Escape")
            assert not page.is_visible("#readme-dialog")
            page.click("#grasp-list li >> nth=1")  # select the second grasp for the picture
            page.screenshot(path=str(shot))

            page.click("#finish")
            page.wait_for_selector("#finish-dialog:not([hidden])")
            assert "3 grasps on 3 samples" in page.text_content("#finish-summary")
            page.click("#finish-confirm")
            assert srv.wait_finished(10)
            page.wait_for_selector("#done-dialog:not([hidden])")
            assert not page_errors, page_errors
        finally:
            browser.close()

    assert shot.stat().st_size > 10_000
    sdir = qdir / "samples" / "0001"
    rects, skipped = grasp.parse_cornell((sdir / "cpos.txt").read_text(), round_to_int=False)
    assert skipped == 0 and rects.shape == (2, 4, 2)
    centre, angle, opening, jaw = grasp.rect_params(rects)
    # Mouse positions land on whole screen pixels, so allow a pixel of slack in image units.
    tol = 1.5 / scale + 0.01
    np.testing.assert_allclose(centre, [[60, 50], [80, 110]], atol=tol)
    np.testing.assert_allclose(np.rad2deg(angle), [0, 45], atol=3)
    np.testing.assert_allclose(opening, [40, 2 * math.sqrt(200)], atol=3 * tol)
    np.testing.assert_allclose(jaw, [opening[0] / 2, 1.1 * opening[1] / 2], rtol=0.02)
    assert queue_lib.is_finished(qdir)
    labels = queue_lib.read_labels(qdir, include_empty=False)
    assert labels.keys() == {"cornell/pcd100", "cornell/pcd101"}
    assert labels["cornell/pcd100"].shape == (1, 4, 2)  # only the first tab's grasp
