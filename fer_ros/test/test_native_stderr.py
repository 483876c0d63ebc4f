"""native_stderr: what is written to file descriptor 2 inside the block is captured, and only that."""
from __future__ import annotations

import os
import sys

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
