"""MCAP bags that rosbags cannot open: a killed recorder's folder (no metadata.yaml, a cut last file), a split bag
whose last file is cut, a path to one .mcap file, zstd chunks, message types rosbags does not know, and the memory
the salvage takes (offsets, not bytes); zero bytes (a file extended before its data was written) and opcodes MCAP
keeps for itself are corruption, at the top level and inside chunks."""
from __future__ import annotations

import os
import shutil
import tracemalloc
from pathlib import Path

import pytest
import yaml

from bag_helpers import frame_number, numbered_frames
from fer_ros.tools import bagtools
from fer_ros.tools.bagtools import BagError, ImageBagReader, list_topics, open_bag, write_image_bag
from fer_ros.tools.mcap_salvage import SalvagedMcap

SIZE = (120, 160)
COUNTER = "my_pkg/msg/Counter"


def _cut(path: Path, fraction: float) -> None:
    os.truncate(path, int(path.stat().st_size * fraction))


def _mcap_of(bag: Path) -> Path:
    return next(bag.glob("*.mcap"))


def _killed_recording(bag: Path, frames: int = 30, fraction: float = 0.6) -> None:
    """What a SIGKILLed `ros2 bag record -s mcap` leaves: a cut .mcap file and no metadata.yaml."""
    write_image_bag(bag, numbered_frames(frames, SIZE), storage="mcap")
    _cut(_mcap_of(bag), fraction)
    (bag / "metadata.yaml").unlink()


def _split_bag(root: Path, names: tuple[str, str], with_metadata: bool) -> Path:
    """A bag of two .mcap files (as --max-bag-size writes them): frames 0-9 in names[0], 10-19 in names[1]."""
    frames = numbered_frames(20, SIZE)
    write_image_bag(root / "a", frames[:10], storage="mcap", start_time_s=1000.0)
    write_image_bag(root / "b", frames[10:], storage="mcap", start_time_s=1001.0)
    bag = root / "bag"
    bag.mkdir()
    shutil.copy(_mcap_of(root / "a"), bag / names[0])
    shutil.copy(_mcap_of(root / "b"), bag / names[1])
    if with_metadata:
        meta = yaml.safe_load((root / "a" / "metadata.yaml").read_text())
        info = meta["rosbag2_bagfile_information"]
        info["relative_file_paths"] = list(names)
        info["message_count"] = 20
        info["topics_with_message_count"][0]["message_count"] = 20
        (bag / "metadata.yaml").write_text(yaml.safe_dump(meta))
    return bag


def _frames_of(bag: Path) -> tuple[list[int], ImageBagReader]:
    with ImageBagReader(bag) as r:
        return [frame_number(f.rgb8) for f in r.frames()], r


def test_a_killed_recorder_s_folder_without_metadata_is_read_up_to_the_cut(tmp_path, fer_warnings):
    _killed_recording(tmp_path / "bag")
    got, r = _frames_of(tmp_path / "bag")
    assert 10 < len(got) < 30 and got == list(range(len(got)))
    assert "no valid end" in r.stats.truncated and "bag.mcap: record at byte" in r.stats.truncated
    assert len(fer_warnings.messages) == 1
    assert (f"cannot be opened normally (it has no metadata.yaml); salvaged {len(got)} messages from 1 MCAP file(s) "
            f"(bag.mcap: {len(got)} messages, then record at byte") in fer_warnings.text


def test_a_path_to_one_mcap_file_is_a_bag_of_that_file(tmp_path, fer_warnings):
    write_image_bag(tmp_path / "bag", numbered_frames(8, SIZE), storage="mcap")
    got, r = _frames_of(_mcap_of(tmp_path / "bag"))
    assert got == list(range(8)) and r.stats.truncated is None and not fer_warnings.messages
    _cut(_mcap_of(tmp_path / "bag"), 0.7)
    got, r = _frames_of(_mcap_of(tmp_path / "bag"))
    assert 0 < len(got) < 8 and got == list(range(len(got))) and "no valid end" in r.stats.truncated
    assert bagtools.bag_storage(_mcap_of(tmp_path / "bag")) == "mcap"


@pytest.mark.parametrize("with_metadata", [True, False])
def test_a_split_bag_whose_last_file_is_cut_keeps_every_intact_file(tmp_path, with_metadata, fer_warnings):
    bag = _split_bag(tmp_path, ("bag_0.mcap", "bag_1.mcap"), with_metadata)
    assert _frames_of(bag)[0] == list(range(20))
    _cut(bag / "bag_1.mcap", 0.6)
    got, r = _frames_of(bag)
    assert 10 < len(got) < 20 and got == list(range(len(got)))
    assert "bag_1.mcap: record at byte" in r.stats.truncated
    assert (f"salvaged {len(got)} messages from 2 MCAP file(s) (bag_0.mcap: 10 messages; bag_1.mcap: "
            f"{len(got) - 10} messages, then record at byte") in fer_warnings.text


def test_files_are_chained_in_time_order_whatever_their_names(tmp_path):
    bag = _split_bag(tmp_path, ("z_0.mcap", "a_1.mcap"), with_metadata=False)  # names sort against time
    _cut(bag / "a_1.mcap", 0.6)
    got, _ = _frames_of(bag)
    assert got[:10] == list(range(10)) and got == list(range(len(got))) and len(got) > 10


def test_files_without_time_follow_the_listed_then_natural_name_order(tmp_path):
    for name in ("bag_10.mcap", "bag_2.mcap", "bag_1.mcap", "other.db3"):
        (tmp_path / name).write_bytes(b"")
    info = {"relative_file_paths": ["bag_10.mcap"]}
    assert [p.name for p in bagtools.mcap_files(tmp_path, info)] == ["bag_10.mcap", "bag_1.mcap", "bag_2.mcap"]


def test_a_folder_whose_mcap_files_are_not_mcap_says_to_reindex(tmp_path, fer_warnings):
    (tmp_path / "bag").mkdir()
    (tmp_path / "bag" / "bag_0.mcap").write_bytes(b"not an mcap file")
    with pytest.raises(BagError, match=r"none of its MCAP files can be read .*does not start like an MCAP file.*"
                                       r"run `ros2 bag reindex .*bag -s mcap`"):
        ImageBagReader(tmp_path / "bag")
    _killed_recording(tmp_path / "bag2")
    (tmp_path / "bag2" / "bag2_1.mcap").write_bytes(b"")  # the next split file, killed before it got its magic
    assert len(_frames_of(tmp_path / "bag2")[0]) > 10
    assert "left out " in fer_warnings.text and "bag2_1.mcap does not start like an MCAP file" in fer_warnings.text


def _zstd_bag(bag: Path, frames: int) -> None:
    """An mcap bag with zstd chunks of `frames` noisy 320x240 frames (noise does not compress: the chunks stay about
    as large as their messages), numbered as numbered_frames' at pixel (0, 0)."""
    import numpy as np
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, Writer
    rng = np.random.default_rng(0)
    store = bagtools.typestore()
    writer = Writer(bag, version=9, storage_plugin=bagtools._storage_plugin("mcap"))
    writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    writer.open()
    conn = writer.add_connection("/cam", bagtools.IMAGE_TYPE, typestore=store)
    for i, f in enumerate(numbered_frames(frames, (240, 320))):
        f[1:] = rng.integers(0, 256, f[1:].shape, np.uint8)
        t = 1_000_000_000 + i * 100_000_000
        writer.write(conn, t, store.serialize_cdr(bagtools.image_message(f, t, "cam"), bagtools.IMAGE_TYPE))
    writer.close()


def test_zstd_chunks_are_read_up_to_the_cut(tmp_path):
    _zstd_bag(tmp_path / "bag", 30)
    _cut(_mcap_of(tmp_path / "bag"), 0.5)
    got, r = _frames_of(tmp_path / "bag")
    assert 0 < len(got) < 30 and got == list(range(len(got))) and "no valid end" in r.stats.truncated


def _custom_type_bag(bag: Path, frames: int = 20):
    """An mcap bag with an image topic and /counter, of a type rosbags' type store does not know."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    store = bagtools.typestore()
    own = get_typestore(Stores.ROS2_JAZZY)
    own.register(get_types_from_msg("int32 value\n", COUNTER))
    writer = bagtools.open_writer(bag, "mcap", overwrite=False)
    cam = writer.add_connection("/cam", bagtools.IMAGE_TYPE, typestore=store)
    counter = writer.add_connection("/counter", COUNTER, typestore=own)
    for i, f in enumerate(numbered_frames(frames, SIZE)):
        t = 1_700_000_000_000_000_000 + i * 100_000_000
        writer.write(cam, t, store.serialize_cdr(bagtools.image_message(f, t, "cam"), bagtools.IMAGE_TYPE))
        writer.write(counter, t, own.serialize_cdr(own.types[COUNTER](value=i), COUNTER))
    writer.close()
    return own


@pytest.mark.parametrize("with_metadata", [True, False])
def test_salvaged_connections_carry_their_definition_so_a_writer_can_copy_them(tmp_path, with_metadata):
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.rosbag2 import Reader
    own = _custom_type_bag(tmp_path / "bag")
    _cut(_mcap_of(tmp_path / "bag"), 0.8)
    if not with_metadata:
        (tmp_path / "bag" / "metadata.yaml").unlink()
    reader = open_bag(tmp_path / "bag", warn_salvaged=False)
    assert isinstance(reader, SalvagedMcap)
    conn = next(c for c in reader.connections if c.topic == "/counter")
    assert conn.msgdef.format == MessageDefinitionFormat.MSG and "int32 value" in conn.msgdef.data
    assert conn.digest == own.hash_rihs01(COUNTER)
    assert conn.ext.serialization_format == "cdr"
    writer = bagtools.open_writer(tmp_path / "copy", "mcap", overwrite=False)
    copied = {c.id: writer.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data, rihs01=c.digest)
              for c in reader.connections}
    values = []
    for c, t, raw in reader.messages(connections=reader.connections):
        writer.write(copied[c.id], t, raw)
        if c.topic == "/counter":
            values.append(own.deserialize_cdr(raw, COUNTER).value)
    writer.close()
    reader.close()
    assert 10 < len(values) < 20 and values == list(range(len(values)))
    with Reader(tmp_path / "copy") as copy:
        assert {c.topic: c.msgcount for c in copy.connections}["/counter"] == len(values)
    assert list_topics(tmp_path / "copy")["/counter"] == (COUNTER, len(values))


def test_the_salvage_keeps_offsets_not_bytes(tmp_path):
    from array import array

    from fer_ros.tools.mcap_salvage import SalvagedFile
    write_image_bag(tmp_path / "bag", numbered_frames(12, SIZE), storage="mcap")
    _cut(_mcap_of(tmp_path / "bag"), 0.8)
    scan = SalvagedFile(_mcap_of(tmp_path / "bag"))
    try:
        assert scan.problem and sum(len(s.offsets) for s in scan.spans) == scan.message_count > 5
        for span in scan.spans:
            assert isinstance(span.offsets, array) and span.offsets.typecode == "Q"
            assert all(isinstance(v, (int, str)) for k, v in vars(span).items() if k != "offsets")
    finally:
        scan.close()


@pytest.mark.parametrize("compressed", [False, True])
def test_reading_a_salvaged_file_holds_one_chunk_at_a_time(tmp_path, compressed):
    """Python allocations while scanning and reading every message of a cut ~30 MB (of messages) file stay far
    below the file's size."""
    if compressed:
        _zstd_bag(tmp_path / "bag", 130)
    else:
        write_image_bag(tmp_path / "bag", numbered_frames(35, (480, 640)), storage="mcap")
    path = _mcap_of(tmp_path / "bag")
    _cut(path, 0.9)
    tracemalloc.start()
    try:
        salvaged = SalvagedMcap(path)
        total = 0
        for _, _, raw in salvaged.messages():
            total += len(raw)
            del raw
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    salvaged.close()
    assert total > 20_000_000
    assert peak < total / 5, f"peak {peak / 1e6:.1f} MB of Python memory for {total / 1e6:.1f} MB of messages"


def _padded(bag: Path, cut_at, pad: int = 2 << 20) -> tuple[Path, list[int]]:
    """The bag's 12-frame .mcap file cut at `cut_at(message offsets, chunk end)` and extended with `pad` zero bytes,
    as a file whose size was written before its data; returns it and its message offsets before the cut."""
    from fer_ros.tools.mcap_salvage import SalvagedFile
    write_image_bag(bag, numbered_frames(12, SIZE), storage="mcap")
    path = _mcap_of(bag)
    scan = SalvagedFile(path)
    try:
        assert scan.problem is None and len(scan.spans) == 1 and scan.spans[0].compression == ""
        offsets, chunk_end = list(scan.spans[0].offsets), scan.spans[0].end
    finally:
        scan.close()
    data = path.read_bytes()
    cut = cut_at(offsets, chunk_end)
    path.write_bytes(data[:cut] + bytes(pad))
    return path, offsets


def test_a_zero_filled_tail_stops_the_scan_where_the_zeros_start(tmp_path):
    """Zeros after the last whole record are not records (opcode 0x00): the scan stops at their first byte rather
    than crawling through them, and every message before them is read."""
    from fer_ros.tools.mcap_salvage import SalvagedFile
    path, _ = _padded(tmp_path / "bag", lambda offsets, chunk_end: chunk_end)
    end = len(path.read_bytes()) - (2 << 20)
    scan = SalvagedFile(path)
    try:
        assert scan.problem == f"record at byte {end} is corrupt (zero bytes: opcode 0x00 is not an MCAP record)"
        assert scan.message_count == 12
    finally:
        scan.close()
    with ImageBagReader(path) as r:
        frames = [f.rgb8 for f in r.frames()]
    assert len(frames) == 12 and all((a == b).all() for a, b in zip(frames, numbered_frames(12, SIZE)))


@pytest.mark.parametrize("cut_in_message", [True, False])
def test_zeros_inside_a_chunk_end_it_and_the_message_they_begin_in_is_left_out(tmp_path, cut_in_message):
    """A chunk whose data stops in its 6th message and goes on as zeros: its first 5 messages are read as they
    were written; the 6th, whose tail is zeros, is left out. Zeros right after a whole message keep it."""
    kept = 5 if cut_in_message else 6
    path, offsets = _padded(tmp_path / "bag", lambda offsets, _: offsets[5] + 500 if cut_in_message
                            else offsets[6])
    with ImageBagReader(path) as r:
        frames = [f.rgb8 for f in r.frames()]
        truncated = r.stats.truncated
    assert len(frames) == kept and all((a == b).all() for a, b in zip(frames, numbered_frames(kept, SIZE)))
    assert "chunk record at byte" in truncated and "zero bytes: opcode 0x00 is not an MCAP record" in truncated


@pytest.mark.parametrize("opcode, where, problem", [
    (0x42, "top", "record at byte {pos} is corrupt (opcode 0x42 is reserved by MCAP, not a record)"),
    (0x10, "chunk", "chunk record at byte {pos}: opcode 0x10 is reserved by MCAP, not a record"),
    (0x80, "top", None)])
def test_opcodes_mcap_keeps_for_itself_are_corruption_those_of_applications_are_skipped(tmp_path, opcode, where,
                                                                                         problem):
    """MCAP defines opcodes 0x01-0x0F and leaves 0x80-0xFF to applications: a record with another opcode is
    corrupt, at the top level (here the message index after the chunk) or inside a chunk (here its 2nd message);
    an application's record is skipped."""
    from fer_ros.tools.mcap_salvage import SalvagedFile
    write_image_bag(tmp_path / "bag", numbered_frames(12, SIZE), storage="mcap")
    path = _mcap_of(tmp_path / "bag")
    scan = SalvagedFile(path)
    pos = scan.spans[0].end if where == "top" else scan.spans[0].offsets[1]
    scan.close()
    data = bytearray(path.read_bytes())
    data[pos] = opcode
    path.write_bytes(bytes(data))
    scan = SalvagedFile(path)
    try:
        if problem is None:
            assert scan.problem is None and scan.message_count == 12
        else:
            assert problem.format(pos=pos) in scan.problem, scan.problem
            assert scan.message_count == (12 if where == "top" else 1)
    finally:
        scan.close()
