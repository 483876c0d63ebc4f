"""Reading what is readable of the MCAP files of a bag that rosbags cannot open (a recorder that was killed: files
without a valid end, no metadata.yaml; a truncated copy): `SalvagedMcap`, which `bagtools.open_bag` falls back to.

Each file is scanned from the start up to its first incomplete or corrupt record (`SalvagedFile`). A record whose
opcode MCAP does not allow (0x00, and 0x10-0x7F, which the format keeps for itself) is corrupt, at the top level and
inside chunks: zero bytes, as a file extended before its data was written ends, stop the scan where they start, and
the message record they begin inside (its last byte zero, the next record zero) is left out. The scan keeps
where things are, never their bytes: per chunk its offset, compression and the offsets of its message records.
Reading decompresses one chunk at a time; messages of uncompressed chunks are sliced from the mapped file. A file
that is not MCAP at all is a ValueError."""
from __future__ import annotations

import mmap
import struct
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

_MCAP_MAGIC = b"\x89MCAP0\r\n"
_OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK, _OP_DATA_END = 0x02, 0x03, 0x04, 0x05, 0x06, 0x0F
_FIRST_USER_OPCODE = 0x80  # 0x80-0xFF: records of applications, skipped
_RECORD_HEADER = 9  # opcode u8, length u64
_MESSAGE_HEADER = 22  # channel u16, sequence u32, log time u64, publish time u64
_CHUNK_HEADER = 28  # start time u64, end time u64, uncompressed size u64, crc u32; then compression, records
_SCAN_ERRORS = (struct.error, UnicodeDecodeError, ValueError, RuntimeError)
_RELEASE_STEP = 16 << 20  # read pages of the mapped file are handed back to the kernel every 16 MB


@dataclass
class McapSchema:
    name: str
    encoding: str  # "ros2msg", "ros2idl", ...
    data: str


@dataclass
class McapChannel:
    id: int
    topic: str
    message_encoding: str
    schema: McapSchema | None
    metadata: dict[str, str]


@dataclass
class MessageSpan:
    """The message records of one chunk (or of the file's top level), by offset. `compression` "" : the records lie
    in the file itself and `offsets` are file offsets; else `offsets` are offsets in the decompressed
    file[start:end], which decompresses to `size` bytes."""

    compression: str
    start: int
    end: int
    size: int
    offsets: array = field(default_factory=lambda: array("Q"))


def _mcap_decompress(data: Any, compression: str, size: int | None = None) -> Any:
    if compression == "":
        return data
    if compression == "lz4":
        from lz4.frame import decompress
        try:
            out = decompress(data)
        except RuntimeError as exc:
            raise ValueError(f"lz4 chunk cannot be decompressed: {exc}") from None
    elif compression == "zstd":
        try:
            from compression import zstd  # Python >= 3.14
        except ImportError:
            from backports import zstd
        try:
            out = zstd.decompress(data)
        except zstd.ZstdError as exc:
            raise ValueError(f"zstd chunk cannot be decompressed: {exc}") from None
    else:
        raise ValueError(f"unsupported chunk compression {compression!r}")
    if size is not None and len(out) != size:
        raise ValueError(f"{compression} chunk decompresses to {len(out)} B, not the {size} B it declares")
    return out


def _opcode_problem(opcode: int) -> str | None:
    """Why a record cannot start with `opcode` (None when it can): MCAP defines 0x01-0x0F and leaves 0x80-0xFF to
    applications; 0x00 is not a record and 0x10-0x7F are kept for the format."""
    if 0x01 <= opcode <= _OP_DATA_END or opcode >= _FIRST_USER_OPCODE:
        return None
    if opcode == 0:
        return "zero bytes: opcode 0x00 is not an MCAP record"
    return f"opcode 0x{opcode:02x} is reserved by MCAP, not a record"


def _read_bytes(buf: Any, pos: int, end: int) -> tuple[bytes, int]:
    """The length-prefixed (u32) bytes at buf[pos:] and the position after them."""
    n = struct.unpack_from("<I", buf, pos)[0]
    if pos + 4 + n > end:
        raise ValueError("string runs past its record")
    return bytes(buf[pos + 4:pos + 4 + n]), pos + 4 + n


def _read_string(buf: Any, pos: int, end: int) -> tuple[str, int]:
    """The length-prefixed (u32) UTF-8 string at buf[pos:] and the position after it."""
    data, pos = _read_bytes(buf, pos, end)
    return data.decode(), pos


def _read_string_map(buf: Any, pos: int, end: int) -> dict[str, str]:
    """The MCAP map<string, string> (u32 byte length, then key/value strings) at buf[pos:]."""
    n = struct.unpack_from("<I", buf, pos)[0]
    pos, stop = pos + 4, pos + 4 + n
    if stop > end:
        raise ValueError("map runs past its record")
    out: dict[str, str] = {}
    while pos < stop:
        key, pos = _read_string(buf, pos, stop)
        out[key], pos = _read_string(buf, pos, stop)
    return out


def _map_file(path: Path) -> Any:
    with open(path, "rb") as fh:
        try:
            return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            return b""


class SalvagedFile:
    """What is readable of one MCAP file: its schemas, channels, message offsets (`spans`), per-channel counts, the
    first log time, and `problem` (why the scan stopped before the file's end records; None when it reached them)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._map = _map_file(self.path)
        if self._map[:len(_MCAP_MAGIC)] != _MCAP_MAGIC:
            self.close()
            raise ValueError(f"{self.path} does not start like an MCAP file")
        self.problem: str | None = None
        self.schemas: dict[int, McapSchema] = {}
        self.channels: dict[int, McapChannel] = {}
        self.spans: list[MessageSpan] = []
        self.counts: dict[int, int] = {}
        self.start_time: int | None = None
        self._start_before_last: int | None = None  # start_time before the last message found
        self._scan_file()

    @property
    def message_count(self) -> int:
        return sum(self.counts.values())

    def _release(self, done: int, pos: int, force: bool = False) -> int:
        """Hands the mapped pages of file[done:pos] back to the kernel (they stay in its page cache, outside this
        process's memory) once they are `_RELEASE_STEP` long, or now with `force`; returns where that leaves."""
        if not isinstance(self._map, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED"):
            return pos
        if pos - done < _RELEASE_STEP and not force:
            return done
        start = done - done % mmap.PAGESIZE
        end = min(pos, len(self._map))
        if end > start:
            self._map.madvise(mmap.MADV_DONTNEED, start, end - start)
        return pos

    def _scan_file(self) -> None:
        data, pos, end = self._map, len(_MCAP_MAGIC), len(self._map)
        try:
            self._scan_top_level(data, pos, end)
        finally:
            self._release(0, end, force=True)

    def _scan_top_level(self, data: Any, pos: int, end: int) -> None:
        done = 0
        while pos < end:
            done = self._release(done, pos)
            bad_opcode = _opcode_problem(data[pos])
            if bad_opcode:
                last = self.spans[-1] if self.spans and self.spans[-1].compression == "" else None
                self._drop_zero_filled(data, pos, last)
                self.problem = f"record at byte {pos} is corrupt ({bad_opcode})"
                return
            if pos + _RECORD_HEADER > end:
                self.problem = f"incomplete record header at byte {pos}"
                return
            opcode, length = data[pos], struct.unpack_from("<Q", data, pos + 1)[0]
            body, body_end = pos + _RECORD_HEADER, pos + _RECORD_HEADER + length
            if body_end > end:
                self.problem = f"record at byte {pos} is cut off (needs {length} B, {end - body} B left)"
                if opcode == _OP_CHUNK:
                    self._scan_cut_chunk(body, end)
                return
            if opcode in (_OP_FOOTER, _OP_DATA_END):  # the data section is over
                return
            try:
                if opcode == _OP_CHUNK:
                    self._scan_chunk(body, body_end)
                elif opcode == _OP_MESSAGE:
                    self._scan_record(data, pos, self._top_level_span())
                else:
                    self._scan_record(data, pos, None)
            except _SCAN_ERRORS as exc:
                self.problem = f"record at byte {pos} is corrupt ({exc})"
                return
            pos = body_end
        self.problem = f"the file ends at byte {end} without the MCAP end records"

    def _top_level_span(self) -> MessageSpan:
        if not self.spans or self.spans[-1].compression != "":
            self.spans.append(MessageSpan("", 0, 0, 0))
        return self.spans[-1]

    def _chunk_records(self, body: int, end: int) -> tuple[str, int, int, int]:
        """(compression, records start, records end, uncompressed size) of the chunk whose body starts at `body`."""
        size = struct.unpack_from("<Q", self._map, body + 16)[0]
        compression, pos = _read_string(self._map, body + _CHUNK_HEADER, end)
        if pos + 8 > end:
            raise ValueError("chunk header runs past its record")
        records_size = struct.unpack_from("<Q", self._map, pos)[0]
        return compression, pos + 8, pos + 8 + records_size, size

    def _scan_chunk(self, body: int, body_end: int) -> None:
        compression, start, stop, size = self._chunk_records(body, body_end)
        if stop > body_end:
            raise ValueError("chunk records run past the chunk")
        span = MessageSpan(compression, start, stop, size)
        if compression == "":
            self.spans.append(span)
            self._scan_records(self._map, start, stop, span)
        else:
            records = self._decompressed(span)
            self.spans.append(span)
            self._scan_records(records, 0, len(records), span)

    def _scan_cut_chunk(self, body: int, end: int) -> None:
        """The whole records of an uncompressed chunk cut at `end` (compressed chunks cannot be read in part)."""
        try:
            compression, start, _, size = self._chunk_records(body, end)
        except _SCAN_ERRORS:
            return
        if compression != "" or start > end:
            return
        span = MessageSpan("", start, end, size)
        self.spans.append(span)
        try:
            self._scan_records(self._map, start, end, span, stop_at_cut=True)
        except _SCAN_ERRORS:
            pass

    def _scan_records(self, buf: Any, pos: int, end: int, span: MessageSpan, stop_at_cut: bool = False) -> None:
        """The records of one chunk, buf[pos:end]; an incomplete one is an error unless `stop_at_cut`."""
        while pos < end:
            bad_opcode = _opcode_problem(buf[pos])
            if bad_opcode:
                self._drop_zero_filled(buf, pos, span)
                raise ValueError(f"chunk record at byte {pos}: {bad_opcode}")
            length = struct.unpack_from("<Q", buf, pos + 1)[0] if pos + _RECORD_HEADER <= end else None
            if length is None or pos + _RECORD_HEADER + length > end:
                if stop_at_cut:
                    return
                raise ValueError(f"chunk record at byte {pos} runs past the chunk")
            self._scan_record(buf, pos, span)
            pos += _RECORD_HEADER + length

    def _scan_record(self, buf: Any, pos: int, span: MessageSpan | None) -> None:
        """Notes the schema, channel or message record at buf[pos] (whole: the caller checked its length)."""
        opcode, length = buf[pos], struct.unpack_from("<Q", buf, pos + 1)[0]
        body, end = pos + _RECORD_HEADER, pos + _RECORD_HEADER + length
        if opcode == _OP_SCHEMA:  # id u16, name str, encoding str, data bytes
            sid = struct.unpack_from("<H", buf, body)[0]
            name, p = _read_string(buf, body + 2, end)
            encoding, p = _read_string(buf, p, end)
            data, _ = _read_bytes(buf, p, end)  # text for ROS 2 schemas; other encodings are kept, not used
            self.schemas[sid] = McapSchema(name, encoding, data.decode(errors="replace"))
        elif opcode == _OP_CHANNEL:  # id u16, schema id u16, topic str, message encoding str, metadata map
            cid, sid = struct.unpack_from("<HH", buf, body)
            topic, p = _read_string(buf, body + 4, end)
            encoding, p = _read_string(buf, p, end)
            self.channels[cid] = McapChannel(cid, topic, encoding, self.schemas.get(sid), _read_string_map(buf, p, end))
        elif opcode == _OP_MESSAGE and span is not None:
            if length < _MESSAGE_HEADER:
                raise ValueError("message record too short")
            cid, log_time = struct.unpack_from("<H", buf, body)[0], struct.unpack_from("<Q", buf, body + 6)[0]
            span.offsets.append(pos)
            self.counts[cid] = self.counts.get(cid, 0) + 1
            self._start_before_last = self.start_time
            if self.start_time is None or log_time < self.start_time:
                self.start_time = log_time

    def _drop_zero_filled(self, buf: Any, pos: int, span: MessageSpan | None) -> None:
        """At zero bytes at buf[pos] (the start of a record), leaves out the last message found when it ends at
        `pos` with a zero byte: the zeros may begin inside it (its tail is then not its data). `span`: the message
        records of `buf` (None: none)."""
        if buf[pos] != 0 or pos == 0 or buf[pos - 1] != 0 or span is None or not span.offsets:
            return
        last = span.offsets[-1]
        if last + _RECORD_HEADER + struct.unpack_from("<Q", buf, last + 1)[0] != pos:
            return
        span.offsets.pop()
        cid = struct.unpack_from("<H", buf, last + _RECORD_HEADER)[0]
        self.counts[cid] -= 1
        if not self.counts[cid]:
            del self.counts[cid]
        self.start_time = self._start_before_last

    def _decompressed(self, span: MessageSpan) -> bytes:
        """The records of a compressed chunk, decompressed straight from the mapped file."""
        with memoryview(self._map) as whole, whole[span.start:span.end] as data:
            return _mcap_decompress(data, span.compression, span.size)

    def records(self) -> Iterator[tuple[int, int, bytes]]:
        """(channel id, log time ns, message data) of every message found, in file order."""
        done = 0
        for span in self.spans:
            buf = None  # the previous chunk goes before the next is decompressed
            if span.compression == "":
                buf = self._map
            else:
                buf = self._decompressed(span)
                done = self._release(done, span.end)
            for pos in span.offsets:
                end = pos + _RECORD_HEADER + struct.unpack_from("<Q", buf, pos + 1)[0]
                body = pos + _RECORD_HEADER
                cid, log_time = struct.unpack_from("<H", buf, body)[0], struct.unpack_from("<Q", buf, body + 6)[0]
                yield cid, log_time, bytes(buf[body + _MESSAGE_HEADER:end])
                if buf is self._map:
                    done = self._release(done, end)
        self._release(done, len(self._map), force=True)

    def close(self) -> None:
        if isinstance(self._map, mmap.mmap):
            self._map.close()
        self._map = b""
        self.spans = []


def _message_definition(schema: McapSchema | None):
    from rosbags.interfaces import MessageDefinition, MessageDefinitionFormat
    formats = {"ros2msg": MessageDefinitionFormat.MSG, "ros2idl": MessageDefinitionFormat.IDL,
               "omgidl": MessageDefinitionFormat.IDL}
    if schema is None or schema.encoding not in formats:
        return MessageDefinition(MessageDefinitionFormat.NONE, "")
    return MessageDefinition(formats[schema.encoding], schema.data)


def rihs01_of(msgtype: str, msgdef) -> str:
    """The RIHS01 type hash of `msgtype` computed from its message definition ("" when it cannot be parsed)."""
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
    if msgdef.format == MessageDefinitionFormat.NONE or not msgtype:
        return ""
    try:
        store = get_typestore(Stores.EMPTY)
        if msgdef.format == MessageDefinitionFormat.MSG:
            store.register(get_types_from_msg(msgdef.data, msgtype))
        else:
            store.register(get_types_from_idl(msgdef.data))
        return store.hash_rihs01(msgtype)
    except Exception:  # rosbags raises assorted errors for definitions it cannot parse
        return ""


def _offered_qos(channel: McapChannel) -> list:
    from rosbags.rosbag2.metadata import parse_qos
    try:
        return parse_qos(channel.metadata.get("offered_qos_profiles", "")) or []
    except Exception:  # unparseable QoS text: the connection still carries its messages
        return []


class SalvagedMcap:
    """What is readable of the MCAP files of one bag, chained in time order (files ordered by their first message,
    `paths` order among equals), read through the subset of the rosbags Reader interface that fer_ros uses
    (connections, topics, messages(), close()). Connections are rosbags Connections carrying each schema's message
    definition and a digest (from `digests`, {(topic, type): RIHS01 hash} as metadata.yaml lists them, else computed
    from the definition), so a rosbags Writer can copy them. Files that are not MCAP are left out (`unreadable`);
    a ValueError when none is readable."""

    def __init__(self, paths: str | Path | Sequence[str | Path],
                 digests: Mapping[tuple[str, str], str] | None = None) -> None:
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        self.files: list[SalvagedFile] = []
        self.unreadable: list[str] = []
        for p in paths:
            try:
                self.files.append(SalvagedFile(p))
            except (ValueError, OSError) as exc:
                self.unreadable.append(str(exc))
        if not self.files:
            raise ValueError("; ".join(self.unreadable) or "no MCAP file to read")
        self.files.sort(key=lambda f: f.start_time if f.start_time is not None else float("inf"))
        self._build_connections(dict(digests or {}))

    def _build_connections(self, digests: dict[tuple[str, str], str]) -> None:
        from rosbags.interfaces import Connection, ConnectionExtRosbag2, TopicInfo
        keys: dict[tuple[str, str, str], list[tuple[SalvagedFile, McapChannel]]] = {}
        for f in self.files:
            for ch in f.channels.values():
                msgtype = ch.schema.name if ch.schema else ""
                keys.setdefault((ch.topic, msgtype, ch.message_encoding), []).append((f, ch))
        self.connections = []
        self._by_channel: dict[tuple[int, int], Any] = {}  # (file index, channel id) -> connection
        for (topic, msgtype, encoding), found in keys.items():
            msgdef = _message_definition(found[0][1].schema)
            conn = Connection(id=len(self.connections) + 1, topic=topic, msgtype=msgtype, msgdef=msgdef,
                              digest=digests.get((topic, msgtype)) or rihs01_of(msgtype, msgdef),
                              msgcount=sum(f.counts.get(ch.id, 0) for f, ch in found),
                              ext=ConnectionExtRosbag2(encoding, _offered_qos(found[0][1])), owner=self)
            self.connections.append(conn)
            for f, ch in found:
                self._by_channel[(self.files.index(f), ch.id)] = conn
        self.topics: dict[str, Any] = {}
        for conn in self.connections:
            same = [c for c in self.connections if c.topic == conn.topic]
            types = {c.msgtype for c in same}
            self.topics[conn.topic] = TopicInfo(types.pop() if len(types) == 1 else None, same[0].msgdef,
                                                sum(c.msgcount for c in same), same)

    @property
    def problem(self) -> str | None:
        """Why reading stops early: the first file whose scan stopped before its end records, and where."""
        cut = [f for f in self.files if f.problem]
        return f"{cut[0].path.name}: {cut[0].problem}" if cut else None

    def report(self) -> str:
        """What was salvaged: per file, its messages and where it stopped; the files that are not MCAP."""
        parts = [f"{f.path.name}: {f.message_count} messages" + (f", then {f.problem}" if f.problem else "")
                 for f in self.files]
        parts += [f"left out {why}" for why in self.unreadable]
        total = sum(f.message_count for f in self.files)
        return f"salvaged {total} messages from {len(self.files)} MCAP file(s) (" + "; ".join(parts) + ")"

    def messages(self, connections: Sequence[Any] = ()) -> Iterator[tuple[Any, int, bytes]]:
        wanted = {c.id for c in (connections or self.connections)}
        for index, f in enumerate(self.files):
            for cid, log_time, data in f.records():
                conn = self._by_channel.get((index, cid))
                if conn is not None and conn.id in wanted:
                    yield conn, log_time, data

    def close(self) -> None:
        for f in self.files:
            f.close()
