#!/usr/bin/python3
"""An 802.1Q trunk port in userspace (this machine's kernel has no 8021q module).

Frames a VM sends tagged with VLAN id N on the trunk interface (a tap) leave untagged from the
access interface mapped to N (one end of a veth pair whose other end has the segment's DHCP
server); frames arriving on an access interface go out of the trunk tagged with its id.
Untagged frames on the trunk are left to the trunk's own stack (its own DHCP server answers
them or not: that is what the test checks). The kernel strips a received tag into the packet's
metadata before a packet socket sees it, so the id comes from PACKET_AUXDATA (or from the frame
itself when it is still inline). Frames whose checksum a veth left to "hardware" get it
computed (see delay_relay.py). Standard library only; counters to stderr when it exits.

  vlan_relay.py --trunk TAP --access ID=IF [--access ID=IF ...] --ready-file F [--exit-after S]
"""
import argparse
import os
import select
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from delay_relay import (  # noqa: E402
    ETH_P_ALL, PACKET_AUXDATA, PACKET_OUTGOING, SOL_PACKET, TP_STATUS_CSUMNOTREADY,
    fix_checksum)

TP_STATUS_VLAN_VALID = 1 << 4
ETH_P_8021Q = 0x8100


def tag(frame, vid):
    return frame[:12] + struct.pack("!HH", ETH_P_8021Q, vid & 0x0FFF) + frame[12:]


def open_packet_socket(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    s.bind((name, 0))
    s.setblocking(False)
    return s


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trunk", required=True)
    p.add_argument("--access", action="append", required=True, help="ID=IF")
    p.add_argument("--ready-file", required=True)
    p.add_argument("--exit-after", type=float, default=280)
    a = p.parse_args()
    access = {}
    for spec in a.access:
        vid, name = spec.split("=", 1)
        access[int(vid)] = name
    trunk = open_packet_socket(a.trunk)
    by_vid = {vid: open_packet_socket(name) for vid, name in access.items()}
    vid_of = {s.fileno(): vid for vid, s in by_vid.items()}
    stats = {"to_access": 0, "to_trunk": 0, "untagged_left": 0, "other_vlan": 0, "fixed": 0}
    with open(a.ready_file, "w") as f:
        f.write("ready\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    end = time.monotonic() + a.exit_after
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([trunk] + list(by_vid.values()), [], [], 0.5)
            for s in ready:
                while True:
                    try:
                        frame, anc, _, addr = s.recvmsg(65536, socket.CMSG_SPACE(20))
                    except BlockingIOError:
                        break
                    if addr[2] == PACKET_OUTGOING:
                        continue  # our own sends, and the trunk stack's own replies
                    status, tci = 0, None
                    for level, kind, data in anc:
                        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= 20:
                            status, _, _, _, _, vtci, _ = struct.unpack("IIIHHHH", data[:20])
                            if status & TP_STATUS_VLAN_VALID:
                                tci = vtci
                    if status & TP_STATUS_CSUMNOTREADY:
                        frame = fix_checksum(frame)
                        stats["fixed"] += 1
                    if s is trunk:
                        if tci is None and len(frame) >= 18 and \
                                struct.unpack("!H", frame[12:14])[0] == ETH_P_8021Q:
                            tci = struct.unpack("!H", frame[14:16])[0]
                            frame = frame[:12] + frame[16:]
                        if tci is None:
                            stats["untagged_left"] += 1
                            continue
                        out = by_vid.get(tci & 0x0FFF)
                        if out is None:
                            stats["other_vlan"] += 1
                            continue
                        out.send(frame)
                        stats["to_access"] += 1
                    else:
                        trunk.send(tag(frame, vid_of[s.fileno()]))
                        stats["to_trunk"] += 1
    finally:
        sys.stderr.write("vlan_relay: %r\n" % stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
