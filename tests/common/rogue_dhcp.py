#!/usr/bin/python3
"""A tiny, deliberately wrong DHCPv4 server for the fault tests (a "rogue" on the segment).

It answers every DISCOVER with an OFFER and every REQUEST with an ACK (or, with --nak, a NAK),
using exactly the option values it is given, however wrong: that is its point. It logs every
client message it receives, one line each ("DISCOVER <xid>", "REQUEST <xid> server=<id>"), so
a test can count what the client sent. Standard library only; runs in a namespace the test
made, bound to one interface there.
"""
import argparse
import socket
import struct
import sys
import time

MAGIC = b"\x63\x82\x53\x63"
NAMES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE",
         8: "INFORM"}


def ip(s):
    return socket.inet_aton(s)


def options(raw):
    out, i = {}, 0
    while i < len(raw):
        code = raw[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(raw):
            break
        n = raw[i + 1]
        out[code] = raw[i + 2:i + 2 + n]
        i += 2 + n
    return out


def opt(code, value):
    return bytes([code, len(value)]) + value


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iface", required=True)
    p.add_argument("--server-id", required=True)
    p.add_argument("--offer", required=True, help="the address offered (yiaddr)")
    p.add_argument("--netmask", default="255.255.255.0")
    p.add_argument("--router", action="append", default=[], help="option 3 (repeatable)")
    p.add_argument("--dns", action="append", default=[], help="option 6 (repeatable)")
    p.add_argument("--lease", type=int, default=3600, help="option 51, seconds (0..2^32-1)")
    p.add_argument("--nak", action="store_true", help="NAK every REQUEST, whoever it names")
    p.add_argument("--log", required=True)
    p.add_argument("--ready-file", required=True)
    p.add_argument("--exit-after", type=float, default=280)
    a = p.parse_args()

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, a.iface.encode())
    s.bind(("0.0.0.0", 67))
    s.settimeout(0.5)
    log = open(a.log, "a", buffering=1)
    with open(a.ready_file, "w") as f:
        f.write("ready\n")
    end = time.monotonic() + a.exit_after
    while time.monotonic() < end:
        try:
            data, _ = s.recvfrom(4096)
        except socket.timeout:
            continue
        if len(data) < 240 or data[0] != 1 or data[236:240] != MAGIC:
            continue
        xid, flags = data[4:8], data[10:12]
        chaddr = data[28:44]
        o = options(data[240:])
        kind = o.get(53, b"\0")[0]
        sid = o.get(54)
        line = "%.3f %s %s" % (time.monotonic(), NAMES.get(kind, str(kind)), xid.hex())
        if sid:
            line += " server=" + socket.inet_ntoa(sid)
        log.write(line + "\n")
        if kind == 1:
            reply = 2
        elif kind == 3:
            if a.nak:
                reply = 6
            elif sid is not None and sid != ip(a.server_id):
                continue  # the client chose another server
            else:
                reply = 5
        else:
            continue
        yiaddr = b"\0\0\0\0" if reply == 6 else ip(a.offer)
        head = struct.pack("!BBBB4sH2s4s4s4s4s16s", 2, 1, 6, 0, xid, 0, flags, b"\0" * 4,
                           yiaddr, ip(a.server_id), b"\0" * 4, chaddr)
        body = opt(53, bytes([reply])) + opt(54, ip(a.server_id))
        if reply == 6:
            body += opt(56, b"rogue says no")
        else:
            body += opt(51, struct.pack("!I", a.lease)) + opt(1, ip(a.netmask))
            if a.router:
                body += opt(3, b"".join(ip(r) for r in a.router))
            if a.dns:
                body += opt(6, b"".join(ip(d) for d in a.dns))
        pkt = head + b"\0" * 192 + MAGIC + body + b"\xff"
        s.sendto(pkt, ("255.255.255.255", 68))
        log.write("%.3f sent %s\n" % (time.monotonic(), NAMES[reply]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
