"""native_stderr: what is written to file descriptor 2 inside the block is captured, and only that."""
from __future__ import annotations

import os
import sys

import pytest

from fer_ros import native_stderr


def test_writes_to_descriptor_2_are_captured_and_stderr_comes_back(capfd):
    with native_stderr.capture() as first:
        os.write(2, b"libfoo warning: one\n\n  libfoo warning: two  \n")
    with native_stderr.capture() as second:
        pass
    os.write(2, b"after\n")
    assert first.lines() == ["libfoo warning: one", "libfoo warning: two"]
    assert second.text == ""  # the scratch file is emptied between blocks
    assert capfd.readouterr().err == "after\n"


def test_python_text_written_before_the_block_is_not_captured(capfd):
    sys.stderr.write("before, unflushed")
    with native_stderr.capture() as caught:
        os.write(2, b"inside\n")
    assert caught.lines() == ["inside"]
    assert capfd.readouterr().err == "before, unflushed"


def test_the_captured_text_is_bounded():
    with native_stderr.capture() as caught:
        os.write(2, b"x" * (10 * native_stderr.MAX_TEXT))
    assert len(caught.text) == native_stderr.MAX_TEXT


def test_the_block_runs_when_descriptor_2_is_closed():
    saved = os.dup(2)
    os.close(2)
    try:
        with native_stderr.capture() as caught:
            ran = True
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    assert ran and caught.text == ""


CHATTER = (b"WARNING: Logging before InitGoogle() is written to STDERR\n"
           b"W0000 00:00:1796508108.583616    9796 face_landmarker_graph.cc:181] Sets FaceBlendshapesGraph "
           b"acceleration to xnnpack by default.\n"
           b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
           b"I0000 00:00:1796508108.6 9801 gl_context.cc:357] GL version: 3.2\n"
           b"INFO: [accelerator_registry.cc:43] DestroyAccelerator: ptr=0x7f39343c6b70, name=CpuAccelerator\n")


def test_library_chatter_drops_start_up_lines_and_writes_the_rest_back_in_order(capfd, monkeypatch):
    monkeypatch.delenv("FER_ROS_NATIVE_LOGS", raising=False)
    with native_stderr.library_chatter() as dropped:
        os.write(2, CHATTER[:60])  # a line may arrive in pieces
        os.write(2, CHATTER[60:] + b"E0000 00:00:1.0 1 graph.cc:1] model could not be loaded\n")
        os.write(2, b"W0000 00:00:1.0 1 calculator.cc:7] a warning of another kind\n[WARN] a node's line\n")
    err = capfd.readouterr().err
    assert err.splitlines() == ["E0000 00:00:1.0 1 graph.cc:1] model could not be loaded",
                                "W0000 00:00:1.0 1 calculator.cc:7] a warning of another kind", "[WARN] a node's line"]
    assert dropped.lines() == CHATTER.decode().strip().splitlines()


def test_library_chatter_keeps_everything_when_asked(capfd, monkeypatch):
    monkeypatch.setenv("FER_ROS_NATIVE_LOGS", "1")
    with native_stderr.library_chatter() as dropped:
        os.write(2, CHATTER)
    assert capfd.readouterr().err == CHATTER.decode() and dropped.text == ""


def test_library_chatter_nests_and_writes_back_when_the_block_raises(capfd, monkeypatch):
    monkeypatch.delenv("FER_ROS_NATIVE_LOGS", raising=False)
    with pytest.raises(RuntimeError, match="graph"):
        with native_stderr.library_chatter():
            os.write(2, CHATTER + b"outer\n")
            with native_stderr.library_chatter():  # would wait on itself if it captured again
                os.write(2, b"inner\n" + CHATTER)
            raise RuntimeError("graph failed")
    assert capfd.readouterr().err == "outer\ninner\n"
    with native_stderr.capture() as after:  # the lock and the thread's state are free again
        os.write(2, b"again\n")
    assert after.lines() == ["again"]


class Task:
    def __init__(self):
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        return image * 2

    def close(self):
        return "closed"


def test_first_calls_quiet_only_the_first_call_of_each_method(capfd, monkeypatch):
    monkeypatch.delenv("FER_ROS_NATIVE_LOGS", raising=False)
    task = native_stderr.FirstCallsQuiet(Task(), methods=("detect",))
    assert task.detect(2) == 4
    assert capfd.readouterr().err == ""
    assert task.detect(3) == 6 and task.calls == 2
    assert task.detect.__self__ is task._target  # the wrapper is gone after the first call
    assert capfd.readouterr().err == "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
    assert task.close() == "closed"
