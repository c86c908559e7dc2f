"""One MPEG-TS stream out of several upstreams in a row, that a decoder follows across breaks.

Pure: bytes in, bytes out. When a stream's upstream is replaced (another engine session, the
same content), its clients stay connected. What they receive next starts at a clean join
point (PAT and PMT, then a random access point), and every PID's first packet after the break
is preceded by an adaptation-only packet with the discontinuity indicator set (ISO/IEC 13818-1,
2.4.3.5). A decoder then resets its continuity counters and its clock for that PID, instead of
reporting the new upstream's packets as lost or corrupt.
"""

from __future__ import annotations

import dataclasses

from .packets import PACKET_SIZE, SYNC_BYTE, JoinPoint, TsScanner

NULL_PID = 0x1FFF
# PIDs that first appear later than this many packets after a break are not marked: a PID
# that rare (a teletext page, an EPG) does not upset a decoder's picture or sound.
MARK_WINDOW = 4096


def discontinuity_packet(pid: int, continuity_counter: int) -> bytes:
    """An adaptation-field-only packet on `pid` that says: a discontinuity starts here.

    It carries no payload, so its counter does not advance: the next packet on the PID
    continues from it.
    """
    header = bytes(
        (
            SYNC_BYTE,
            (pid >> 8) & 0x1F,
            pid & 0xFF,
            0x20 | (continuity_counter & 0x0F),  # adaptation field only
            PACKET_SIZE - 5,  # adaptation_field_length: the rest of the packet
            0x80,  # discontinuity_indicator
        )
    )
    return header + b"\xff" * (PACKET_SIZE - len(header))


def _pid(packets: bytes | memoryview, offset: int) -> int:
    return ((packets[offset + 1] & 0x1F) << 8) | packets[offset + 2]


def _mark_before(packets: bytes | memoryview, offset: int) -> bytes:
    """The discontinuity mark for the packet at `offset`, to go just before it."""
    has_payload = packets[offset + 3] & 0x10
    counter = packets[offset + 3] - (1 if has_payload else 0)
    return discontinuity_packet(_pid(packets, offset), counter)


def discontinuity_marks(packets: bytes | memoryview) -> bytes:
    """A discontinuity mark for each PID in `packets`, to go before them all: what a client
    gets when it is moved forward in the same stream. Its clock jumps ahead, and its
    continuity counters with it; marked, a decoder resets both rather than reporting the
    packets as lost or corrupt. As after a break, PIDs first seen past `MARK_WINDOW`
    packets are not marked."""
    marked: set[int] = set()
    out: list[bytes] = []
    end = min(len(packets), MARK_WINDOW * PACKET_SIZE) - PACKET_SIZE + 1
    for offset in range(0, end, PACKET_SIZE):
        pid = _pid(packets, offset)
        if pid != NULL_PID and pid not in marked:
            marked.add(pid)
            out.append(_mark_before(packets, offset))
    return b"".join(out)


class Splicer:
    """Feeds packets through a TsScanner, and after `restart()` joins the next upstream on."""

    __slots__ = ("_marked", "_scanner", "_seen", "_waiting", "breaks")

    def __init__(self) -> None:
        self._scanner = TsScanner()
        self._waiting = False
        self._marked: set[int] = set()
        self._seen = MARK_WINDOW
        self.breaks = 0

    def __repr__(self) -> str:
        state = "waiting for a join point" if self._waiting else "passing"
        return f"<Splicer {state} breaks={self.breaks}>"

    def restart(self) -> None:
        """What follows comes from a new upstream: wait for its first clean join point."""
        self._scanner = TsScanner()  # the new upstream's PAT and PMT, not the old one's
        self._waiting = True

    def feed(self, packets: bytes) -> tuple[bytes, list[JoinPoint]]:
        """Whole, aligned packets in; what clients get, and the join points within it."""
        joins = self._scanner.scan(packets)
        if self._waiting:
            if not joins:
                return b"", []  # the middle of a picture: no decoder can start here
            first = joins[0]
            packets = first.prefix + packets[first.offset :]
            shift = len(first.prefix) - first.offset
            joins = [dataclasses.replace(j, offset=j.offset + shift) for j in joins]
            self._waiting = False
            self._marked = set()
            self._seen = 0
            self.breaks += 1
        if self._seen < MARK_WINDOW:
            return self._mark(packets, joins)
        return packets, joins

    def _mark(self, packets: bytes, joins: list[JoinPoint]) -> tuple[bytes, list[JoinPoint]]:
        out: list[bytes] = []
        inserted: list[int] = []  # offsets in `packets` before which a mark went in
        start = 0
        for offset in range(0, len(packets), PACKET_SIZE):
            pid = _pid(packets, offset)
            if pid == NULL_PID or pid in self._marked:
                continue
            self._marked.add(pid)
            out.append(packets[start:offset])
            out.append(_mark_before(packets, offset))
            inserted.append(offset)
            start = offset
        out.append(packets[start:])
        self._seen += len(packets) // PACKET_SIZE
        if not inserted:
            return packets, joins

        def moved(offset: int) -> int:
            # A join point moves by the marks before it, and takes the mark of its own PID
            # along: a joining client needs the reset as much as a client already reading.
            return offset + PACKET_SIZE * sum(1 for at in inserted if at < offset)

        return b"".join(out), [dataclasses.replace(j, offset=moved(j.offset)) for j in joins]
