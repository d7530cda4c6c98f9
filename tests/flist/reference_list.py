#!/usr/bin/python3
"""Independent reader of v1 (.flist) and v2 (.fl) flists for tests/flist_fixtures.rs.

Written from the formats (0-flist's flist.capnp layout, the Cap'n Proto encoding spec, rfs's
SQLite schema), not from zos-netboot's Rust reader. Prints one JSON object per line, sorted by
path, with the fields of `zos-netboot flist list --json`:
path, type, mode (octal string of the permission bits), uid, gid, size, target.

    reference_list.py FILE
"""
import hashlib
import io
import json
import sqlite3
import struct
import sys
import tarfile
import tempfile

S_IFMT = 0o170000
TYPES = {0o040000: "dir", 0o100000: "file", 0o120000: "link", 0o020000: "char",
         0o060000: "block", 0o010000: "fifo", 0o140000: "socket"}


# ---- Cap'n Proto: just enough to read 0-flist's Dir and ACI messages --------------------------
class Msg:
    def __init__(self, data):
        (count_minus_one,) = struct.unpack_from("<I", data, 0)
        n = count_minus_one + 1
        sizes = struct.unpack_from("<%dI" % n, data, 4)
        off = 4 + 4 * n
        off += (8 - off % 8) % 8
        self.segs = []
        for s in sizes:
            self.segs.append(data[off:off + 8 * s])
            off += 8 * s

    def word(self, seg, i):
        return struct.unpack_from("<Q", self.segs[seg], 8 * i)[0]

    def resolve(self, seg, at):
        """Pointer word at (seg, at) -> (seg, target index, the pointer word describing it)."""
        p = self.word(seg, at)
        if p == 0:
            return None
        kind = p & 3
        if kind != 2:
            off = (p & 0xFFFFFFFF) >> 2
            if off & (1 << 29):
                off -= 1 << 30
            return seg, at + 1 + off, p
        double = (p >> 2) & 1
        pad = (p & 0xFFFFFFFF) >> 3
        tseg = p >> 32
        if not double:
            return self.resolve(tseg, pad)
        land = self.word(tseg, pad)
        tag = self.word(tseg, pad + 1)
        return land >> 32, (land & 0xFFFFFFFF) >> 3, tag

    def struct_at(self, seg, at):
        r = self.resolve(seg, at)
        if r is None:
            return None
        s, i, p = r
        return Struct(self, s, i, (p >> 32) & 0xFFFF, p >> 48)

    def root(self):
        return self.struct_at(0, 0)


class Struct:
    def __init__(self, msg, seg, at, dwords, pwords):
        self.m, self.seg, self.at, self.dw, self.pw = msg, seg, at, dwords, pwords

    def u(self, bit, width):
        if bit + width > 64 * self.dw:
            return 0
        w = self.m.word(self.seg, self.at + bit // 64)
        return (w >> (bit % 64)) & ((1 << width) - 1)

    def ptr(self, n):
        return None if n >= self.pw else (self.seg, self.at + self.dw + n)

    def data(self, n):
        loc = self.ptr(n)
        r = loc and self.m.resolve(*loc)
        if not r:
            return b""
        s, i, p = r
        count = p >> 35
        return bytes(self.m.segs[s][8 * i:8 * i + count])

    def text(self, n):
        return self.data(n).rstrip(b"\0").decode()

    def child(self, n):
        loc = self.ptr(n)
        return loc and self.m.struct_at(*loc)

    def structs(self, n):
        loc = self.ptr(n)
        r = loc and self.m.resolve(*loc)
        if not r:
            return []
        s, i, _ = r
        tag = self.m.word(s, i)
        count = (tag & 0xFFFFFFFF) >> 2
        dw, pw = (tag >> 32) & 0xFFFF, tag >> 48
        return [Struct(self.m, s, i + 1 + k * (dw + pw), dw, pw) for k in range(count)]


def v1(path):
    with tarfile.open(path, "r:gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.lstrip("./") == "flistdb.sqlite3")
        blob = tar.extractfile(member).read()
    with tempfile.NamedTemporaryFile(suffix=".sqlite3") as tmp:
        tmp.write(blob)
        tmp.flush()
        db = sqlite3.connect(tmp.name)
        kv = {k: v for k, v in db.execute("SELECT key, value FROM entries")}
        db.close()

    def aci(key):
        a = Msg(kv[key]).root()
        # Int64 fields with default -1 are stored XOR the default.
        uid = a.u(64, 64) ^ 0xFFFFFFFFFFFFFFFF
        gid = a.u(128, 64) ^ 0xFFFFFFFFFFFFFFFF
        return a.u(0, 16), uid, gid

    out = []

    def walk(rel, key):
        d = Msg(kv[key]).root()
        mode, uid, gid = aci(d.text(4))
        out.append(dict(path="/" + rel, type="dir", mode=mode, uid=uid, gid=gid, size=d.u(0, 64),
                        target=None))
        for ino in d.structs(2):
            name = ino.text(0)
            child = rel + "/" + name if rel else name
            which = ino.u(64, 16)
            attr = ino.child(1)
            if which == 0:
                walk(child, attr.text(0))
                continue
            mode, uid, gid = aci(ino.text(2))
            e = dict(path="/" + child, mode=mode, uid=uid, gid=gid, size=ino.u(0, 64), target=None)
            if which == 1:
                e["type"] = "file"
            elif which == 2:
                e["type"] = "link"
                e["target"] = attr.text(0)
            else:
                e["type"] = ["socket", "block", "char", "fifo"][attr.u(0, 16)]
            out.append(e)

    walk("", hashlib.blake2b(b"", digest_size=16).hexdigest())
    return out


def v2(path):
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    rows = {r[0]: r for r in db.execute("SELECT ino, parent, name, size, uid, gid, mode FROM inode")}
    extra = dict(db.execute("SELECT ino, data FROM extra"))
    db.close()

    def full(ino):
        _, parent, name, *_ = rows[ino]
        if parent == 0:
            return "/"
        up = full(parent)
        return up.rstrip("/") + "/" + (name.decode() if isinstance(name, bytes) else name)

    out = []
    for ino, (_, parent, name, size, uid, gid, mode) in rows.items():
        kind = TYPES[mode & S_IFMT]
        target = extra.get(ino) if kind == "link" else None
        if isinstance(target, bytes):
            target = target.decode()
        out.append(dict(path=full(ino), type=kind, mode=mode, uid=uid, gid=gid, size=size,
                        target=target))
    return out


def main():
    path = sys.argv[1]
    with open(path, "rb") as f:
        magic = f.read(2)
    entries = v1(path) if magic == b"\x1f\x8b" else v2(path)
    for e in sorted(entries, key=lambda e: e["path"]):
        e["mode"] = "%04o" % (e["mode"] & 0o7777)
        print(json.dumps({k: e[k] for k in ("path", "type", "mode", "uid", "gid", "size", "target")}))


if __name__ == "__main__":
    main()
