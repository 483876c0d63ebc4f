"""Reading what is readable of an MCAP bag file that has no valid end (a recorder that was killed, a truncated
copy): `SalvagedMcap`, which `bagtools.open_bag` falls back to when rosbags cannot open the file. A file that is
not MCAP at all is a ValueError."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

_MCAP_MAGIC = b"\x89MCAP0\r\n"


@dataclass
class _SalvagedConnection:
    id: int
    topic: str
    msgtype: str


@dataclass
class _SalvagedTopic:
    msgtype: str
    msgcount: int


def _mcap_decompress(data: bytes, compression: str) -> bytes:
    if compression == "":
        return data
    if compression == "lz4":
        from lz4.frame import decompress
        return decompress(data)
    if compression == "zstd":
        try:
            from compression import zstd  # Python >= 3.14
        except ImportError:
            from backports import zstd
        try:
            return zstd.decompress(data)
        except zstd.ZstdError as exc:
            raise ValueError(f"zstd chunk cannot be decompressed: {exc}") from None
    raise ValueError(f"unsupported chunk compression {compression!r}")


class SalvagedMcap:
    """Reads what is readable of an MCAP file that has no valid end (a recorder that was killed, a truncated copy):
    scans records from the start and stops at the first incomplete one. Offers the subset of the rosbags Reader
    interface that ImageBagReader uses (topics, connections, messages(), close())."""

    def __init__(self, path: Path) -> None:
        import mmap
        with open(path, "rb") as fh:
            try:
                data: Any = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # an empty file cannot be mapped
                data = b""
        if data[:len(_MCAP_MAGIC)] != _MCAP_MAGIC:
            raise ValueError(f"{path} does not start like an MCAP file")
        self.problem: str | None = None
        schemas: dict[int, str] = {}
        self.connections: list[_SalvagedConnection] = []
        # (channel id, log time ns, buffer, start, end): message data stays in the mapped file or its chunk
        self._messages: list[tuple[int, int, Any, int, int]] = []
        self._scan(data, len(_MCAP_MAGIC), len(data), schemas, top_level=True)
        self.topics: dict[str, _SalvagedTopic] = {}
        counts: dict[int, int] = {}
        for cid, *_ in self._messages:
            counts[cid] = counts.get(cid, 0) + 1
        for c in self.connections:
            t = self.topics.setdefault(c.topic, _SalvagedTopic(c.msgtype, 0))
            t.msgcount += counts.get(c.id, 0)

    def _scan(self, data: bytes, pos: int, end: int, schemas: dict[int, str], top_level: bool) -> None:
        import struct
        while pos < end:
            if pos + 9 > end:
                self.problem = f"incomplete record header at byte {pos}"
                return
            opcode, length = data[pos], struct.unpack_from("<Q", data, pos + 1)[0]
            body_start, body_end = pos + 9, pos + 9 + length
            if body_end > end:
                self.problem = f"record at byte {pos} is cut off (needs {length} B, {end - body_start} B left)"
                if opcode == 0x06 and top_level:  # an uncompressed chunk still holds whole records up to the cut
                    self._scan_cut_chunk(data[body_start:end], schemas)
                return
            body = data[body_start:body_end] if opcode != 0x05 else b""
            try:
                if opcode == 0x03:  # Schema: id u16, name str, encoding str, data bytes
                    sid = struct.unpack_from("<H", body, 0)[0]
                    n = struct.unpack_from("<I", body, 2)[0]
                    schemas[sid] = body[6:6 + n].decode()
                elif opcode == 0x04:  # Channel: id u16, schema id u16, topic str, encoding str, metadata
                    cid, sid = struct.unpack_from("<HH", body, 0)
                    n = struct.unpack_from("<I", body, 4)[0]
                    topic = body[8:8 + n].decode()
                    self.connections.append(_SalvagedConnection(cid, topic, schemas.get(sid, "")))
                elif opcode == 0x05:  # Message: channel u16, sequence u32, log time u64, publish time u64, data
                    if length < 22:
                        raise ValueError("message record too short")
                    cid = struct.unpack_from("<H", data, body_start)[0]
                    log_time = struct.unpack_from("<Q", data, body_start + 6)[0]
                    self._messages.append((cid, log_time, data, body_start + 22, body_end))
                elif opcode == 0x06 and top_level:  # Chunk: times, sizes, crc, compression str, records
                    n = struct.unpack_from("<I", body, 28)[0]
                    compression = body[32:32 + n].decode()
                    size = struct.unpack_from("<Q", body, 32 + n)[0]
                    records = _mcap_decompress(body[40 + n:40 + n + size], compression)
                    self._scan(records, 0, len(records), schemas, top_level=False)
                elif opcode in (0x02, 0x0F) and top_level:  # Footer or DataEnd: the data section is over
                    return
            except (struct.error, UnicodeDecodeError, ValueError, RuntimeError) as exc:
                self.problem = f"record at byte {pos} is corrupt ({exc})"
                return
            pos = body_end

    def _scan_cut_chunk(self, body: bytes, schemas: dict[int, str]) -> None:
        import struct
        if len(body) < 32:
            return
        n = struct.unpack_from("<I", body, 28)[0]
        if len(body) < 40 + n or body[32:32 + n] != b"":
            return  # compressed chunks cannot be read in part
        problem = self.problem
        self._scan(body, 40 + n, len(body), schemas, top_level=False)
        self.problem = problem

    def messages(self, connections: Sequence[Any] = ()) -> Iterator[tuple[Any, int, bytes]]:
        wanted = {c.id: c for c in connections} if connections else {c.id: c for c in self.connections}
        for cid, log_time, buf, start, end in self._messages:
            if cid in wanted:
                yield wanted[cid], log_time, bytes(buf[start:end])

    def close(self) -> None:
        self._messages = []
