"""MPEG-TS packet logic, pure: 188-byte alignment, PAT/PMT tracking and random access points.

Nothing here does I/O or reads a clock; both classes take bytes and return bytes.

Limits, by design: PAT and PMT sections must fit in one packet (multi-packet sections are
ignored), and of a multi-program stream only the first program listed in the PAT is followed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PACKET_SIZE = 188
SYNC_BYTE = 0x47
NULL_PID = 0x1FFF
NULL_PACKET = bytes([SYNC_BYTE, 0x1F, 0xFF, 0x10]) + b"\xff" * (PACKET_SIZE - 4)
"""A null packet (PID 0x1FFF): stuffing that every demuxer reads and drops (ISO 13818-1)."""

_SYNC = b"\x47"
_START_CODE = b"\x00\x00\x01"
# A lock on a stream already running must be confirmed by three sync bytes in a row, so that a
# stray 0x47 in garbage cannot pass garbage on. At stream start fewer suffice (see _check).
_CONFIRMATIONS = 3


class PacketAligner:
    """Turns arbitrary upstream chunks into whole, in-sync 188-byte packets.

    Invariant: every byte fed is either returned, counted in `dropped`, or still held (less than
    a few packets). When a packet boundary does not start with 0x47, the packet before it is
    held until the next sync point is found: if that point falls inside it, it was cut short and
    is dropped; otherwise it was whole and goes out.
    """

    __slots__ = ("_locked", "_pending", "_started", "_suspect", "_unproven", "dropped")

    def __init__(self) -> None:
        self._pending = b""
        self._locked = False
        self._started = False
        # While unlocked: `_pending` starts with a packet that was in sync but whose successor
        # was not, so whether it is whole is not known yet.
        self._suspect = False
        # Locked on the stream's first byte alone, with no later sync byte seen yet.
        self._unproven = False
        self.dropped = 0

    def __repr__(self) -> str:
        state = "locked" if self._locked else "searching"
        return f"<PacketAligner {state} held={len(self._pending)} dropped={self.dropped}>"

    def feed(self, data: bytes) -> bytes:
        """Return the whole packets completed by `data`; keep the rest for the next call."""
        parts = []
        if self._locked:
            out = self._take_locked(data)
            if self._locked:
                return out
            parts.append(out)
        else:
            self._pending += data
        while not self._locked:
            emitted, rest = self._search()
            parts.append(emitted)
            if rest is None:
                break
            parts.append(self._take_locked(rest))
        return b"".join(parts)

    def _take_locked(self, data: bytes) -> bytes:
        """Emit whole packets while in sync; on losing sync, unlock and hold the rest."""
        pending = self._pending
        total = len(pending) + len(data)
        whole = total - total % PACKET_SIZE
        if whole == 0:
            self._pending = pending + data
            return b""
        if pending:
            cut = whole - len(pending)
            # One copy: the joined packets are built straight from the held tail and a view.
            out = b"".join((pending, memoryview(data)[:cut]))
            tail = data[cut:]
        elif whole == len(data):
            out, tail = data, b""
        else:
            out, tail = data[:whole], data[whole:]
        count = whole // PACKET_SIZE
        syncs = out[::PACKET_SIZE]
        # The tail's first byte is the next packet's sync byte: checking it confirms the last
        # packet for free.
        if syncs.count(SYNC_BYTE) == count and (not tail or tail[0] == SYNC_BYTE):
            self._pending = tail
            self._unproven = False
            return out
        bad = next((k for k, b in enumerate(syncs) if b != SYNC_BYTE), count)
        self._locked = False
        if bad == 0 or (bad == 1 and self._unproven):
            # Either the packet before this boundary went out with the previous chunk, or it is
            # the stream's first, trusted on its first byte alone and now shown to be garbage.
            self._suspect = self._unproven = False
            self._pending = out + tail
            return b""
        keep = (bad - 1) * PACKET_SIZE
        self._suspect = True
        self._pending = out[keep:] + tail
        return out[:keep]

    def _search(self) -> tuple[bytes, bytes | None]:
        """Look for sync in the held bytes.

        Returns what can be emitted, and the bytes from the lock point on if sync was found
        (None if more data is needed).
        """
        buf = self._pending
        emitted = b""
        pos = 1 if self._suspect else 0
        while True:
            i = buf.find(_SYNC, pos)
            if self._suspect and (i < 0 or i >= PACKET_SIZE):
                # No sync point inside the held packet: it was whole, the garbage came after it.
                emitted = buf[:PACKET_SIZE]
                buf = buf[PACKET_SIZE:]
                self._suspect = False
                pos = 0
                continue
            if i < 0:
                self.dropped += len(buf)
                self._pending = b""
                return emitted, None
            verdict = self._check(buf, i)
            if verdict is False:
                pos = i + 1
                continue
            if verdict is None:
                keep_from = 0 if self._suspect else i
                self.dropped += keep_from
                self._pending = buf[keep_from:]
                return emitted, None
            self._unproven = not self._started and i == 0 and self.dropped == 0
            # A lock inside a held packet means that packet was cut short: it is garbage.
            self.dropped += i
            self._pending = b""
            self._locked = self._started = True
            self._suspect = False
            return emitted, buf[i:]

    def _check(self, buf: bytes, i: int) -> bool | None:
        """Is `i` a packet start? None: not known until more data arrives."""
        if not self._started and i == 0 and self.dropped == 0:
            # A stream's first byte is a packet start on any sane upstream, and the first client
            # should not wait for proof. Should the next boundary, once seen, prove it wrong,
            # the packet is dropped (see `_unproven`).
            return True
        seen = 0
        for p in range(i, min(len(buf), i + _CONFIRMATIONS * PACKET_SIZE), PACKET_SIZE):
            if buf[p] != SYNC_BYTE:
                return False
            seen += 1
        # Before the first lock, two sync bytes will do so that a short first chunk goes out.
        return True if seen >= (_CONFIRMATIONS if self._started else 2) else None


# Stream types (ISO/IEC 13818-1 table 2-34) whose random access points this module can find.
_H264 = 0x1B
_HEVC = 0x24
_MPEG_VIDEO = frozenset({0x01, 0x02})
_VIDEO_TYPES = frozenset({_H264, _HEVC, *_MPEG_VIDEO})
_AUDIO_TYPES = frozenset({0x03, 0x04, 0x0F, 0x11, 0x81, 0x87})
# Audio carried as private data (stream type 0x06) is told apart by its descriptors:
# DVB AC-3, E-AC-3, DTS and AAC descriptors, or a registration descriptor (tag 0x05).
_AUDIO_DESCRIPTOR_TAGS = frozenset({0x6A, 0x7A, 0x7B, 0x7C})
_AUDIO_REGISTRATIONS = frozenset({b"AC-3", b"EAC3", b"Opus", b"DTS1", b"DTS2", b"DTS3"})
_PRIVATE_DATA = 0x06

_H264_RAP_NALS = frozenset({5, 7})
_HEVC_RAP_NALS = frozenset({16, 17, 18, 19, 20, 21, 32, 33})
_MPEG_SEQUENCE_HEADER = b"\x00\x00\x01\xb3"


def _crc32_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else c << 1
        table.append(c & 0xFFFFFFFF)
    return tuple(table)


_CRC_TABLE = _crc32_table()


def crc32_mpeg(data: bytes) -> int:
    """CRC-32/MPEG-2 (not zlib's reflected CRC). Over a whole PSI section it yields 0."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ b]
    return crc


def _payload_start(pkt: bytes) -> int | None:
    """Offset of the payload in a packet, or None if it carries none."""
    control = pkt[3] & 0x30
    if not control & 0x10:
        return None
    start = 4 + (1 + pkt[4] if control & 0x20 else 0)
    return start if start < PACKET_SIZE else None


def _section(pkt: bytes, known: bytes) -> bytes | None:
    """The PSI section that starts and ends in this packet, if it is intact and current.

    `known` is the last section accepted on this PID: a repeat of it needs no CRC check.
    """
    start = _payload_start(pkt)
    if start is None or not pkt[1] & 0x40:
        return None
    p = start + 1 + pkt[start]  # after the pointer field
    if p + 3 > PACKET_SIZE or not pkt[p + 1] & 0x80:
        return None
    end = p + 3 + (((pkt[p + 1] & 0x0F) << 8) | pkt[p + 2])
    if end > PACKET_SIZE or end - p < 12:
        return None
    section = pkt[p:end]
    if section == known:
        return known
    if not section[5] & 0x01 or crc32_mpeg(section) != 0:
        return None
    return section


def _is_audio(stream_type: int, descriptors: bytes) -> bool:
    if stream_type in _AUDIO_TYPES:
        return True
    if stream_type != _PRIVATE_DATA:
        return False
    i = 0
    while i + 2 <= len(descriptors):
        tag, length = descriptors[i], descriptors[i + 1]
        if tag in _AUDIO_DESCRIPTOR_TAGS:
            return True
        if tag == 0x05 and descriptors[i + 2 : i + 6] in _AUDIO_REGISTRATIONS:
            return True
        i += 2 + length
    return False


@dataclass(frozen=True, slots=True)
class JoinPoint:
    """Where a new client can start: send `prefix`, then the stream from `offset` on."""

    offset: int
    """Offset of the join packet in the buffer given to `TsScanner.scan`; a multiple of 188."""
    prefix: bytes
    """The PAT packet and the PMT packet in effect just before the join packet."""
    pts: int | None = field(default=None, compare=False)
    """The presentation time stamp (90 kHz) of the PES the join packet starts, if it has one."""


class TsScanner:
    """Follows the PAT and PMT of a stream and finds the packets a client can start at.

    A join point is a PES start of the video stream that is a random access point (the
    adaptation field says so, or the first packet of the PES holds an H.264 IDR or SPS, an HEVC
    IRAP, VPS or SPS, or an MPEG-2 sequence header). Without video, each PES start of the first
    audio stream is one.
    """

    __slots__ = (
        "_codec",
        "_flag_table",
        "_join_pid",
        "_pat",
        "_pat_section",
        "_pmt",
        "_pmt_pid",
        "_pmt_section",
        "_program",
        "_psi",
        "audio_pid",
        "video_pid",
    )

    def __init__(self) -> None:
        self._pat = b""
        self._pat_section = b""
        self._program: int | None = None
        self._pmt_pid: int | None = None
        self._pmt = b""
        self._pmt_section = b""
        self._psi = b""
        self.video_pid: int | None = None
        self.audio_pid: int | None = None
        self._codec: int | None = None
        self._join_pid: int | None = None
        self._flag_table = b""
        self._update_flag_table()

    def __repr__(self) -> str:
        return (
            f"<TsScanner pmt_pid={self._pmt_pid} video_pid={self.video_pid} "
            f"audio_pid={self.audio_pid} psi={'yes' if self._psi else 'no'}>"
        )

    @property
    def psi(self) -> bytes:
        """The latest PAT and PMT packets (b"" until both have been seen)."""
        return self._psi

    def scan(self, packets: bytes | memoryview) -> list[JoinPoint]:
        """Read whole, aligned packets in stream order; return the join points among them."""
        if len(packets) % PACKET_SIZE:
            raise ValueError(f"{len(packets)} bytes is not a whole number of packets")
        joins: list[JoinPoint] = []
        with memoryview(packets) as view, view.cast("B") as mv:
            # Only packets that start a PSI section or a PES on a PID of interest need a look.
            # Their second byte (PUSI flag and high PID bits) says which may be, for all
            # packets at once: a translate marks candidates, and find() jumps between them.
            table = self._flag_table
            flags = mv[1::PACKET_SIZE].tobytes().translate(table)
            k = flags.find(1)
            while k >= 0:
                off = k * PACKET_SIZE
                pid = ((mv[off + 1] & 0x1F) << 8) | mv[off + 2]
                if pid == self._join_pid:
                    if self._psi and self._is_join(mv[off : off + PACKET_SIZE].tobytes()):
                        packet = mv[off : off + PACKET_SIZE].tobytes()
                        joins.append(JoinPoint(off, self._psi, _pes_pts(packet)))
                elif pid == 0:
                    self._on_pat(mv[off : off + PACKET_SIZE].tobytes())
                elif pid == self._pmt_pid:
                    self._on_pmt(mv[off : off + PACKET_SIZE].tobytes())
                if self._flag_table is not table:
                    table = self._flag_table
                    flags = mv[1::PACKET_SIZE].tobytes().translate(table)
                k = flags.find(1, k + 1)
        return joins

    def _update_flag_table(self) -> None:
        high = {pid >> 8 for pid in (0, self._pmt_pid, self._join_pid) if pid is not None}
        # Second header byte: error indicator (must be clear), PUSI (must be set), priority,
        # then the top five PID bits.
        table = bytes(1 if b & 0xC0 == 0x40 and b & 0x1F in high else 0 for b in range(256))
        if table != self._flag_table:
            self._flag_table = table

    def _on_pat(self, pkt: bytes) -> None:
        section = _section(pkt, self._pat_section)
        if section is None or section[0] != 0x00:
            return
        self._pat = pkt
        if section is not self._pat_section:
            self._pat_section = section
            program = pmt_pid = None
            for i in range(8, len(section) - 4 - 3, 4):
                number = (section[i] << 8) | section[i + 1]
                if number:  # program 0 points at the network information table
                    program, pmt_pid = number, ((section[i + 2] & 0x1F) << 8) | section[i + 3]
                    break
            if (program, pmt_pid) != (self._program, self._pmt_pid):
                self._program, self._pmt_pid = program, pmt_pid
                self._set_program(b"", b"")
        self._compose()

    def _on_pmt(self, pkt: bytes) -> None:
        section = _section(pkt, self._pmt_section)
        if section is None or section[0] != 0x02:
            return
        if (section[3] << 8) | section[4] != self._program:
            return
        if section is not self._pmt_section:
            self._set_program(pkt, section)
        self._pmt = pkt
        self._compose()

    def _set_program(self, pkt: bytes, section: bytes) -> None:
        self._pmt, self._pmt_section = pkt, section
        video = audio = codec = None
        if section:
            end = len(section) - 4
            i = 12 + (((section[10] & 0x0F) << 8) | section[11])
            while i + 5 <= end:
                stream_type = section[i]
                pid = ((section[i + 1] & 0x1F) << 8) | section[i + 2]
                info_end = i + 5 + (((section[i + 3] & 0x0F) << 8) | section[i + 4])
                if video is None and stream_type in _VIDEO_TYPES:
                    video, codec = pid, stream_type
                elif audio is None and _is_audio(stream_type, section[i + 5 : info_end]):
                    audio = pid
                i = info_end
        self.video_pid, self.audio_pid, self._codec = video, audio, codec
        self._join_pid = video if video is not None else audio
        self._update_flag_table()

    def _compose(self) -> None:
        self._psi = self._pat + self._pmt if self._pat and self._pmt else b""

    def _is_join(self, pkt: bytes) -> bool:
        control = pkt[3] & 0x30
        if control & 0x20 and pkt[4] and pkt[5] & 0x40:
            return True  # random_access_indicator
        if self._codec is None:
            return True  # audio only: every PES start will do
        start = _payload_start(pkt)
        if start is None or pkt[3] & 0xC0:  # no payload, or scrambled
            return False
        if pkt[start : start + 3] != _START_CODE or start + 9 > PACKET_SIZE:
            return False
        if pkt[start + 6] & 0xC0 != 0x80:  # not a PES header with optional fields
            return False
        es = start + 9 + pkt[start + 8]
        return _is_random_access(self._codec, pkt, es)


def _pes_pts(pkt: bytes) -> int | None:
    """The PTS of the PES header that starts in this packet, if it has one."""
    start = _payload_start(pkt)
    if start is None or start + 14 > PACKET_SIZE or pkt[start : start + 3] != _START_CODE:
        return None
    if pkt[start + 6] & 0xC0 != 0x80 or not pkt[start + 7] & 0x80:
        return None
    b = pkt[start + 9 : start + 14]
    return ((b[0] >> 1) & 0x07) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


def _is_random_access(codec: int, pkt: bytes, es: int) -> bool:
    """Does the elementary stream data from `es` on begin a picture a decoder can start at?"""
    if codec in _MPEG_VIDEO:
        return pkt.find(_MPEG_SEQUENCE_HEADER, es) >= 0
    i = pkt.find(_START_CODE, es)
    while 0 <= i < PACKET_SIZE - 3:
        header = pkt[i + 3]
        if codec == _H264:
            if header & 0x1F in _H264_RAP_NALS:
                return True
        elif (header >> 1) & 0x3F in _HEVC_RAP_NALS:
            return True
        i = pkt.find(_START_CODE, i + 3)
    return False
