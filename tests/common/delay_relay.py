#!/usr/bin/python3
"""A userspace delay line between two interfaces (the kernel here has no netem).

Every Ethernet frame received on one interface is sent out of the other --delay-ms later, in
order; nothing else is changed, except that a frame whose transport checksum the sending veth
left to "hardware" (TP_STATUS_CSUMNOTREADY, checksum offload) gets it computed here, since a
frame re-sent from a packet socket is checked by the receiver. Runs in a middle namespace the
test made; standard library only. Prints counters to stderr when it exits.
"""
import argparse
import heapq
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
TP_STATUS_CSUMNOTREADY = 1 << 3


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def fix_checksum(frame):
    """Computes the TCP/UDP checksum of an IPv4 or IPv6 frame whose checksum is partial."""
    if len(frame) < 14:
        return frame
    ethertype = struct.unpack("!H", frame[12:14])[0]
    off = 14
    if ethertype == 0x0800:
        ihl = (frame[off] & 0x0F) * 4
        proto = frame[off + 9]
        total = struct.unpack("!H", frame[off + 2:off + 4])[0]
        l4 = frame[off + ihl:off + total]
        pseudo = frame[off + 12:off + 20] + struct.pack("!BBH", 0, proto, len(l4))
        start = off + ihl
    elif ethertype == 0x86DD:
        proto = frame[off + 6]
        plen = struct.unpack("!H", frame[off + 4:off + 6])[0]
        l4 = frame[off + 40:off + 40 + plen]
        pseudo = frame[off + 8:off + 40] + struct.pack("!IxxxB", len(l4), proto)
        start = off + 40
    else:
        return frame
    field = {6: 16, 17: 6, 58: 2}.get(proto)
    if field is None or len(l4) < field + 2:
        return frame
    l4 = bytearray(l4)
    l4[field:field + 2] = b"\0\0"
    c = csum(pseudo + bytes(l4))
    if proto == 17 and c == 0:
        c = 0xFFFF
    l4[field:field + 2] = struct.pack("!H", c)
    return frame[:start] + bytes(l4) + frame[start + len(l4):]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--a", required=True)
    p.add_argument("--b", required=True)
    p.add_argument("--delay-ms", type=float, required=True)
    p.add_argument("--ready-file", required=True)
    p.add_argument("--exit-after", type=float, default=280)
    a = p.parse_args()
    delay = a.delay_ms / 1000.0

    socks = {}
    for name in (a.a, a.b):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        s.bind((name, 0))
        s.setblocking(False)
        socks[name] = s
    other = {a.a: socks[a.b], a.b: socks[a.a]}
    by_fd = {s.fileno(): name for name, s in socks.items()}
    stats = {"relayed": 0, "fixed": 0, "errors": 0}
    with open(a.ready_file, "w") as f:
        f.write("ready\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        relay(a, socks, other, by_fd, delay, stats)
    finally:
        sys.stderr.write("delay_relay: %r\n" % stats)
    return 0


def relay(a, socks, other, by_fd, delay, stats):
    queue, seq = [], 0
    end = time.monotonic() + a.exit_after
    while time.monotonic() < end:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, frame = heapq.heappop(queue)
            try:
                out.send(frame)
                stats["relayed"] += 1
            except OSError as e:
                stats["errors"] += 1
                sys.stderr.write("send (%d bytes): %s\n" % (len(frame), e))
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else 0.5
        ready, _, _ = select.select(list(socks.values()), [], [], timeout)
        for s in ready:
            name = by_fd[s.fileno()]
            while True:
                try:
                    frame, anc, _, addr = s.recvmsg(65536, socket.CMSG_SPACE(20))
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue  # our own sends, seen on the way out
                for level, kind, data in anc:
                    if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= 4:
                        if struct.unpack("I", data[:4])[0] & TP_STATUS_CSUMNOTREADY:
                            frame = fix_checksum(frame)
                            stats["fixed"] += 1
                seq += 1
                heapq.heappush(queue, (time.monotonic() + delay, seq, other[name], frame))


if __name__ == "__main__":
    sys.exit(main())
