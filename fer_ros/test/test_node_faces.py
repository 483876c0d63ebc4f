"""fer_node with several real faces in one frame: one entry per face, distinct ids, each box on its face;
then a clean stop on SIGTERM while frames keep arriving; with its two stages overlapped and one after the other.
And a clean stop on SIGINT under load. Each test starts a node of its own."""
from __future__ import annotations

import signal
import time

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed")

from node_helpers import box_center_inside, error_lines, feeding, ready, running_node  # noqa: E402
from node_model import model_for_tests  # noqa: E402


@pytest.mark.parametrize("overlap", ["true", "false"])
def test_three_faces_and_sigterm(tmp_path_factory, faces3_frame, overlap):
    """With the two stages on two threads (the default) and one after the other."""
    model = model_for_tests(tmp_path_factory.getbasetemp())
    frame, regions = faces3_frame
    with running_node(["-p", f"model_path:={model.path}", "-p", f"overlap_stages:={overlap}"]) as (node, client):
        msg = client.send_until(frame, lambda m: len(m.faces) == 3 and ready(m), timeout_s=30.0)
        assert msg is not None, node.output[-3000:]
        ids = [f.face_id for f in msg.faces]
        assert ids == sorted(ids) and len(set(ids)) == 3
        for face, region in zip(sorted(msg.faces, key=lambda f: f.box.x_offset), regions):
            assert box_center_inside(face.box, region), (face.box, region)
            assert len(face.scores) == len(face.class_names)
            assert sum(face.scores) == pytest.approx(1.0, abs=1e-4)
            assert list(face.class_names) == list(model.class_names)
            assert face.label in model.class_names
        with feeding(client, frame, 30.0):
            client.spin_for(1.0)
            code, out = node.stop(signal.SIGTERM)
    assert code == 0, out[-3000:]
    assert not error_lines(out), "\n".join(error_lines(out))


def test_sigint_under_load_stops_the_node_cleanly(tmp_path_factory, face_frame):
    # A stop while frames arrive at 30 Hz lands while the worker is busy with one: the worker must finish it before
    # the ROS context goes, or its publish fails ("publisher's context is invalid").
    model = model_for_tests(tmp_path_factory.getbasetemp())
    frame, _ = face_frame
    with running_node(["-p", f"model_path:={model.path}"]) as (node, client):
        with feeding(client, frame, 30.0) as sent:
            deadline = time.monotonic() + 30.0
            while len(client.emotions) < 10 and time.monotonic() < deadline:
                client.spin_for(0.1)
            assert len(client.emotions) >= 10, f"the node did not keep up with the load at all:\n{node.output[-3000:]}"
            code, out = node.stop(signal.SIGINT)
    assert len(sent) > 10
    assert code == 0, out[-3000:]
    assert not error_lines(out), "\n".join(error_lines(out))
