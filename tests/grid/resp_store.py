#!/usr/bin/python3
"""A small 0-db stand-in for the tests: the RESP commands a block reader uses, with namespaces
and passwords (which a plain Redis does not have).

  resp_store.py --listen ADDR:PORT [--ns NAME[:PASSWORD]=DIR]... [--ready-file F]
                [--exit-after SECS] [--corrupt]

- A namespace's blocks are files DIR/<first byte hex>/<id hex> (what flistgen.py --blocks
  writes); `default` is the namespace a connection starts in.
- Commands: PING, SELECT NS [PASSWORD] (a namespace with a password refuses SELECT without the
  right one: `-ERR Access denied`), GET KEY (the raw id; nil when absent), EXISTS KEY, QUIT.
  Anything else: `-ERR unknown command`.
- `--corrupt` flips the first byte of every block it serves (a bad store).
- One log line per command on stderr; SIGTERM stops it.
"""

import argparse
import json
import os
import signal
import socket
import sys
import threading


def log(msg):
    sys.stderr.write("resp_store: %s\n" % msg)
    sys.stderr.flush()


def read_command(f):
    """One RESP array of bulk strings (or an inline command); None at EOF."""
    line = f.readline()
    if not line:
        return None
    if not line.startswith(b"*"):
        return line.strip().split()
    n = int(line[1:])
    args = []
    for _ in range(n):
        head = f.readline()
        if not head.startswith(b"$"):
            raise ValueError("expected a bulk string")
        size = int(head[1:])
        data = f.read(size + 2)
        args.append(data[:size])
    return args


def bulk(data):
    if data is None:
        return b"$-1\r\n"
    return b"$%d\r\n%s\r\n" % (len(data), data)


class Store:
    def __init__(self, namespaces, corrupt):
        self.namespaces = namespaces  # name -> (password or None, dir)
        self.corrupt = corrupt

    def block(self, ns, key):
        _, d = self.namespaces[ns]
        path = os.path.join(d, "%02x" % key[0], key.hex()) if key else None
        if not path or not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            data = bytearray(f.read())
        if self.corrupt and data:
            data[0] ^= 0xFF
        return bytes(data)

    def serve(self, conn, peer):
        f = conn.makefile("rb")
        ns = "default" if "default" in self.namespaces else None
        try:
            while True:
                cmd = read_command(f)
                if cmd is None:
                    return
                if not cmd:
                    continue
                name = cmd[0].upper()
                if name == b"PING":
                    out = b"+PONG\r\n"
                elif name == b"QUIT":
                    conn.sendall(b"+OK\r\n")
                    return
                elif name == b"SELECT" and len(cmd) in (2, 3):
                    want = cmd[1].decode(errors="replace")
                    given = cmd[2].decode(errors="replace") if len(cmd) == 3 else None
                    if want not in self.namespaces:
                        out = b"-ERR Namespace not found\r\n"
                    elif self.namespaces[want][0] not in (None, given):
                        out = b"-ERR Access denied\r\n"
                    else:
                        ns = want
                        out = b"+OK\r\n"
                elif name in (b"GET", b"EXISTS") and len(cmd) == 2:
                    if ns is None:
                        out = b"-ERR no namespace selected\r\n"
                    else:
                        data = self.block(ns, cmd[1])
                        if name == b"GET":
                            out = bulk(data)
                        else:
                            out = b":%d\r\n" % (data is not None)
                else:
                    out = b"-ERR unknown command\r\n"
                log("%s %s %s -> %s" % (peer[0], ns, b" ".join(
                    c if len(c) < 20 else c.hex().encode() for c in cmd).decode(
                        errors="replace"), out[:1].decode()))
                conn.sendall(out)
        except (OSError, ValueError) as e:
            log("%s: %s" % (peer[0], e))
        finally:
            conn.close()


def main(argv):
    p = argparse.ArgumentParser(description="0-db stand-in (RESP, namespaces).")
    p.add_argument("--listen", required=True, metavar="ADDR:PORT")
    p.add_argument("--ns", action="append", default=[], metavar="NAME[:PASSWORD]=DIR")
    p.add_argument("--ready-file")
    p.add_argument("--exit-after", type=float)
    p.add_argument("--corrupt", action="store_true")
    args = p.parse_args(argv)
    namespaces = {}
    for spec in args.ns:
        name, _, d = spec.partition("=")
        name, _, password = name.partition(":")
        namespaces[name] = (password or None, d)
    host, _, port = args.listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(64)
    sock.settimeout(0.2)
    store = Store(namespaces, args.corrupt)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.exit_after:
        threading.Timer(args.exit_after, stop.set).start()
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"pid": os.getpid(), "port": sock.getsockname()[1]}, f)
        os.replace(tmp, args.ready_file)
    log("listening on %s:%d, namespaces %s" % (host, sock.getsockname()[1],
                                               ", ".join(sorted(namespaces))))
    while not stop.is_set():
        try:
            conn, peer = sock.accept()
        except socket.timeout:
            continue
        conn.settimeout(30)
        threading.Thread(target=store.serve, args=(conn, peer), daemon=True).start()
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
