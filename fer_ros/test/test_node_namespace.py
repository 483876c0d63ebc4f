"""fer_node in a namespace (`-r __ns:=/cam1`), as one node per camera runs: it reads /cam1/image, answers on
/cam1/emotion and nothing on /emotion, names itself in /diagnostics, and stops cleanly on SIGINT under load."""
from __future__ import annotations

import signal

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed")

from fer_msgs.msg import FaceEmotionArray  # noqa: E402

from node_helpers import error_lines, feeding, ready, running_node  # noqa: E402
from node_model import model_for_tests  # noqa: E402


def test_a_namespaced_node_reads_and_answers_in_its_namespace(tmp_path_factory, face_frame):
    model = model_for_tests(tmp_path_factory.getbasetemp())
    frame, _ = face_frame
    with running_node(["-r", "__ns:=/cam1", "-p", f"model_path:={model.path}", "-p", "diagnostics_period_s:=0.5",
                       "-p", "publish_debug_image:=true"], namespace="/cam1") as (node, client):
        root_emotions = []
        client.node.create_subscription(FaceEmotionArray, "/emotion", root_emotions.append, 10)
        assert node.wait_for_line("listening on /cam1/image, publishing /cam1/emotion", 1.0), node.output[-2000:]
        msg = client.send_until(frame, ready, timeout_s=30.0)
        assert msg is not None, f"no ready face on /cam1/emotion; node said:\n{node.output[-3000:]}"
        assert msg.faces[0].label in model.class_names
        client.spin_for(1.0)  # a diagnostics period, and time for anything sent elsewhere to arrive
        assert client.debug_images, "no annotated image on /cam1/emotion/image"
        assert root_emotions == [], "a namespaced node published on /emotion"
        names = {s.name for d in client.diagnostics for s in d.status}
        assert any(n.startswith("/cam1/fer_node: ") for n in names), names
        with feeding(client, frame, 30.0):
            client.spin_for(1.0)
            code, out = node.stop(signal.SIGINT)
    assert code == 0, out[-3000:]
    assert not error_lines(out), "\n".join(error_lines(out))
