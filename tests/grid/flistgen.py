#!/usr/bin/python3
"""Makes flists from a directory, for the tests: 0-flist v1 `.flist` and rfs v2 `.fl`, with
their blocks. Independent of zos-netboot's reader: written from the format descriptions
(0-flist doc/flist.md + format/flist.capnp, rfs's SQLite schema), with the few Cap'n Proto
encodings they need built by hand here.

  flistgen.py v1|v2 SRC OUT [--blocks DIR] [--redis HOST:PORT] [--backend HOST:PORT]
                            [--route URL]... [--block-size BYTES] [--mtime SECS]

- v1 (`.flist`): a tar.gz holding flistdb.sqlite3; `entries(key, value)`: one Cap'n Proto `Dir`
  per directory keyed by hex blake2b-128 of its path relative to the root ("" for the root),
  one `ACI` per distinct owner/mode keyed by hex blake2b-64 of its text form. Files are 512 KiB
  blocks: XXTEA(snappy(plain)) with key = blake2b-128(plain), stored under id =
  blake2b-128(ciphertext). `--backend HOST:PORT` writes the `metadata` table's `backend` row.
- v2 (`.fl`): a bare SQLite file with rfs 2's tables (inode, extra, block, route, tag). Blocks
  are AES-256-GCM(snappy(plain)), key = blake2b-256(plain), nonce = key[:12], id =
  blake2b-256(ciphertext || tag). `--route URL` (repeatable) fills `route` (0..255 each).
- `--blocks DIR` writes every block to DIR/<first byte hex>/<id hex> (the dir store layout;
  served over HTTP it is the http store's `base/hh/<hex>`). `--redis HOST:PORT` SETs every block
  into a Redis (or 0-db) under its raw id, in the default namespace.
- Ownership and modes are taken from the source tree (lstat); `--owner UID:GID` overrides them
  for every entry (a tree made without root). Device nodes and fifos are kept as such.

Prints a JSON summary on stdout: {"format", "entries", "files", "blocks", "bytes", "md5"}.
Needs python3-snappy and python3-cryptography (Debian packages): run with /usr/bin/python3.
"""

import argparse
import hashlib
import io
import json
import os
import socket
import sqlite3
import stat
import struct
import sys
import tarfile
import tempfile

try:
    import snappy
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError as e:  # pragma: no cover - the message is the point
    sys.exit("flistgen.py: %s: needs python3-snappy and python3-cryptography "
             "(Debian packages; run with /usr/bin/python3)" % e)

V1_BLOCK = 512 * 1024
V2_BLOCK = 1024 * 1024


def b2(data, size):
    return hashlib.blake2b(data, digest_size=size).digest()


# --- XXTEA (the lib0stor variant: length word appended, 16-byte key) ------

DELTA = 0x9E3779B9
M32 = 0xFFFFFFFF


def xxtea_encrypt(data, key):
    """XXTEA over little-endian words of data + a final word holding len(data)."""
    n = (len(data) + 3) // 4
    padded = data + b"\0" * (n * 4 - len(data))
    v = list(struct.unpack("<%dI" % n, padded)) + [len(data)]
    k = struct.unpack("<4I", key)
    n = len(v) - 1
    z = v[n]
    total = 0
    q = 6 + 52 // (n + 1)
    while q > 0:
        q -= 1
        total = (total + DELTA) & M32
        e = (total >> 2) & 3
        for p in range(n + 1):
            y = v[(p + 1) % (n + 1)] if p < n else v[0]
            mx = ((((z >> 5) ^ (y << 2) & M32) + ((y >> 3) ^ (z << 4) & M32)) & M32) ^ \
                (((total ^ y) + (k[(p & 3) ^ e] ^ z)) & M32)
            v[p] = (v[p] + mx) & M32
            z = v[p]
    return struct.pack("<%dI" % len(v), *v)


def xxtea_decrypt(data, key):
    """The inverse, for the generator's self-check."""
    v = list(struct.unpack("<%dI" % (len(data) // 4), data))
    k = struct.unpack("<4I", key)
    n = len(v) - 1
    q = 6 + 52 // (n + 1)
    total = (q * DELTA) & M32
    y = v[0]
    while total != 0:
        e = (total >> 2) & 3
        for p in range(n, -1, -1):
            z = v[p - 1] if p > 0 else v[n]
            mx = ((((z >> 5) ^ (y << 2) & M32) + ((y >> 3) ^ (z << 4) & M32)) & M32) ^ \
                (((total ^ y) + (k[(p & 3) ^ e] ^ z)) & M32)
            v[p] = (v[p] - mx) & M32
            y = v[p]
        total = (total - DELTA) & M32
    length = v[-1]
    return struct.pack("<%dI" % (len(v) - 1), *v[:-1])[:length]


def v1_block(plain):
    key = b2(plain, 16)
    cipher = xxtea_encrypt(snappy.compress(plain), key)
    return b2(cipher, 16), key, cipher


def v2_block(plain):
    key = b2(plain, 32)
    cipher = AESGCM(key).encrypt(key[:12], snappy.compress(plain), None)
    return b2(cipher, 32), key, cipher


# --- Cap'n Proto, the little needed: one segment, structs, lists, text ------

class Message:
    """A single-segment Cap'n Proto message built in place."""

    def __init__(self):
        self.buf = bytearray(8)  # word 0: the root pointer

    def alloc(self, words):
        at = len(self.buf) // 8
        self.buf += bytes(8 * words)
        return at

    def put(self, word, value):
        struct.pack_into("<Q", self.buf, word * 8, value & 0xFFFFFFFFFFFFFFFF)

    def struct_ptr(self, at, target, data, ptrs):
        self.put(at, ((target - at - 1) << 2) | (data << 32) | (ptrs << 48))

    def root(self, data, ptrs):
        s = Struct(self, self.alloc(data + ptrs), data, ptrs)
        self.struct_ptr(0, s.at, data, ptrs)
        return s

    def bytes(self):
        words = len(self.buf) // 8
        return struct.pack("<II", 0, words) + bytes(self.buf)


class Struct:
    def __init__(self, msg, at, data, ptrs):
        self.msg, self.at, self.data, self.ptrs = msg, at, data, ptrs

    def _field(self, offset, fmt, value):
        struct.pack_into(fmt, self.msg.buf, self.at * 8 + offset, value)

    def u16(self, offset, v):
        self._field(offset, "<H", v)

    def u32(self, offset, v):
        self._field(offset, "<I", v & M32)

    def u64(self, offset, v):
        self._field(offset, "<Q", v & 0xFFFFFFFFFFFFFFFF)

    def ptr_word(self, i):
        assert i < self.ptrs
        return self.at + self.data + i

    def blob(self, i, payload):
        """A byte list (Text: give the NUL yourself)."""
        m = self.msg
        words = (len(payload) + 7) // 8
        at = m.alloc(words)
        m.buf[at * 8:at * 8 + len(payload)] = payload
        w = self.ptr_word(i)
        m.put(w, ((at - w - 1) << 2) | 1 | (2 << 32) | (len(payload) << 35))

    def text(self, i, s):
        self.blob(i, s.encode() + b"\0")

    def child(self, i, data, ptrs):
        m = self.msg
        s = Struct(m, m.alloc(data + ptrs), data, ptrs)
        m.struct_ptr(self.ptr_word(i), s.at, data, ptrs)
        return s

    def struct_list(self, i, count, data, ptrs):
        """An inline-composite list of count structs."""
        m = self.msg
        size = data + ptrs
        tag = m.alloc(1 + count * size)
        m.put(tag, (count << 2) | (data << 32) | (ptrs << 48))
        w = self.ptr_word(i)
        m.put(w, ((tag - w - 1) << 2) | 1 | (7 << 32) | ((count * size) << 35))
        return [Struct(m, tag + 1 + k * size, data, ptrs) for k in range(count)]


# --- the source tree -------------------------------------------------------

def walk(src, owner):
    """(relative path, lstat, link target) for every entry, parents first, sorted."""
    out = []

    def visit(rel):
        full = os.path.join(src, rel) if rel else src
        st = os.lstat(full)
        target = os.readlink(full) if stat.S_ISLNK(st.st_mode) else None
        out.append((rel, st, target))
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(full)):
                visit(os.path.join(rel, name) if rel else name)

    visit("")
    if owner:
        uid, gid = owner
        out = [(r, _Owned(st, uid, gid), t) for r, st, t in out]
    return out


class _Owned:
    def __init__(self, st, uid, gid):
        self._st, self.st_uid, self.st_gid = st, uid, gid

    def __getattr__(self, name):
        return getattr(self._st, name)


def chunks(path, size):
    with open(path, "rb") as f:
        while True:
            data = f.read(size)
            if not data:
                return
            yield data


class Blocks:
    """Where blocks go: a dir store and/or a Redis; deduplicated."""

    def __init__(self, out_dir, redis):
        self.out_dir = out_dir
        self.redis = None
        self.seen = set()
        self.count = 0
        if redis:
            host, _, port = redis.rpartition(":")
            self.redis = socket.create_connection((host.strip("[]"), int(port)), 10)
            self.pending = 0

    def put(self, bid, cipher):
        if bid in self.seen:
            return
        self.seen.add(bid)
        self.count += 1
        if self.out_dir:
            d = os.path.join(self.out_dir, "%02x" % bid[0])
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, bid.hex()), "wb") as f:
                f.write(cipher)
        if self.redis:
            cmd = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                len(bid), bid, len(cipher), cipher)
            self.redis.sendall(cmd)
            self.pending += 1
            if self.pending >= 64:
                self.drain()

    def drain(self):
        if not self.redis:
            return
        got = b""
        while got.count(b"\r\n") < self.pending:
            data = self.redis.recv(65536)
            if not data:
                raise SystemExit("flistgen.py: the Redis closed the connection")
            got += data
        if b"-" in [line[:1] for line in got.split(b"\r\n")]:
            raise SystemExit("flistgen.py: Redis refused a SET: %r" % got[:200])
        self.pending = 0

    def close(self):
        self.drain()
        if self.redis:
            self.redis.close()


# --- v1 --------------------------------------------------------------------

SPECIAL = {stat.S_IFSOCK: 0, stat.S_IFBLK: 1, stat.S_IFCHR: 2, stat.S_IFIFO: 3}


def make_v1(src, out, blocks, args):
    tree = walk(src, args.owner)
    dbdir = tempfile.mkdtemp(prefix="flistgen-")
    dbpath = os.path.join(dbdir, "flistdb.sqlite3")
    db = sqlite3.connect(dbpath)
    db.execute("CREATE TABLE entries (key VARCHAR(64) PRIMARY KEY, value BLOB)")
    db.execute("CREATE INDEX entries_index ON entries (key)")
    db.execute("CREATE TABLE metadata (key VARCHAR(64) PRIMARY KEY, value TEXT)")
    if args.backend:
        host, _, port = args.backend.rpartition(":")
        db.execute("INSERT INTO metadata VALUES ('backend', ?)",
                   (json.dumps({"host": host, "port": int(port)}),))
    acls = {}

    def acl(st):
        mode = stat.S_IMODE(st.st_mode)
        uname, gname = str(st.st_uid), str(st.st_gid)
        text = "user:%s\ngroup:%s\nmode:0o%o\nuid:%d\ngid:%d" % (
            uname, gname, mode, st.st_uid, st.st_gid)
        key = b2(text.encode(), 8).hex()
        if key not in acls:
            m = Message()
            a = m.root(3, 3)
            a.text(0, uname)
            a.text(1, gname)
            a.u16(0, mode)
            a.u64(8, st.st_uid ^ -1)  # Int64 with default -1: stored XOR -1
            a.u64(16, st.st_gid ^ -1)
            acls[key] = m.bytes()
        return key

    children = {}
    for rel, st, target in tree:
        if rel:
            children.setdefault(os.path.dirname(rel), []).append((rel, st, target))
    files = nbytes = 0
    for rel, st, _ in tree:
        if not stat.S_ISDIR(st.st_mode):
            continue
        m = Message()
        d = m.root(2, 5)
        d.text(0, os.path.basename(rel))
        d.text(1, rel)
        d.text(3, b2(os.path.dirname(rel).encode(), 16).hex() if rel else "")
        d.text(4, acl(st))
        d.u64(0, 4096)
        d.u32(8, args.mtime if args.mtime is not None else int(st.st_mtime))
        d.u32(12, args.mtime if args.mtime is not None else int(st.st_mtime))
        kids = children.get(rel, [])
        inodes = d.struct_list(2, len(kids), 3, 3)
        for ino, (crel, cst, ctarget) in zip(inodes, kids):
            mode = cst.st_mode
            ino.text(0, os.path.basename(crel))
            ino.text(2, acl(cst))
            t = args.mtime if args.mtime is not None else int(cst.st_mtime)
            ino.u32(12, t)
            ino.u32(16, t)
            if stat.S_ISDIR(mode):
                ino.u64(0, 4096)
                ino.u16(8, 0)
                sub = ino.child(1, 0, 1)
                sub.text(0, b2(crel.encode(), 16).hex())
            elif stat.S_ISREG(mode):
                ino.u64(0, cst.st_size)
                ino.u16(8, 1)
                f = ino.child(1, 1, 1)
                f.u16(0, 128)
                refs = []
                for plain in chunks(os.path.join(src, crel), args.block_size or V1_BLOCK):
                    bid, key, cipher = v1_block(plain)
                    blocks.put(bid, cipher)
                    refs.append((bid, key))
                for b, (bid, key) in zip(f.struct_list(0, len(refs), 0, 2), refs):
                    b.blob(0, bid)
                    b.blob(1, key)
                files += 1
                nbytes += cst.st_size
            elif stat.S_ISLNK(mode):
                ino.u64(0, len(ctarget))
                ino.u16(8, 2)
                ino.child(1, 0, 1).text(0, ctarget)
            else:
                ino.u16(8, 3)
                sp = ino.child(1, 1, 1)
                sp.u16(0, SPECIAL.get(stat.S_IFMT(mode), 4))
                if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
                    sp.blob(0, ("%d,%d" % (os.major(cst.st_rdev),
                                           os.minor(cst.st_rdev))).encode())
        db.execute("INSERT INTO entries VALUES (?, ?)",
                   (b2(rel.encode(), 16).hex(), m.bytes()))
    for key, value in acls.items():
        db.execute("INSERT INTO entries VALUES (?, ?)", (key, value))
    db.commit()
    db.close()
    tmp = out + ".tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(dbpath, arcname="flistdb.sqlite3")
    os.replace(tmp, out)
    os.unlink(dbpath)
    os.rmdir(dbdir)
    return len(tree), files, nbytes


# --- v2 --------------------------------------------------------------------

V2_SCHEMA = """
CREATE TABLE inode (
    ino INTEGER PRIMARY KEY AUTOINCREMENT, parent INTEGER, name VARCHAR(255), size INTEGER,
    uid INTEGER, gid INTEGER, mode INTEGER, rdev INTEGER, ctime INTEGER, mtime INTEGER);
CREATE INDEX parents ON inode (parent);
CREATE INDEX names ON inode (name);
CREATE TABLE extra (ino INTEGER PRIMARY KEY, data VARCHAR(4096));
CREATE TABLE block (ino INTEGER, id VARCHAR(32), key VARCHAR(32));
CREATE INDEX block_ino ON block (ino);
CREATE TABLE tag (key VARCHAR(10) PRIMARY KEY, value VARCHAR(255));
CREATE TABLE route (start integer, end integer, url VARCHAR(2048));
"""


def make_v2(src, out, blocks, args):
    tree = walk(src, args.owner)
    tmp = out + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    db = sqlite3.connect(tmp)
    db.executescript(V2_SCHEMA)
    for url in args.route:
        db.execute("INSERT INTO route VALUES (0, 255, ?)", (url,))
    db.execute("INSERT INTO tag VALUES ('version', '1')")
    inos = {}
    files = nbytes = 0
    for rel, st, target in tree:
        parent = inos[os.path.dirname(rel)] if rel else 0
        name = os.path.basename(rel) if rel else "/"
        t = args.mtime if args.mtime is not None else int(st.st_mtime)
        size = st.st_size if stat.S_ISREG(st.st_mode) else (
            len(target) if target is not None else 4096 if stat.S_ISDIR(st.st_mode) else 0)
        cur = db.execute(
            "INSERT INTO inode (parent, name, size, uid, gid, mode, rdev, ctime, mtime) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (parent, name, size, st.st_uid, st.st_gid, st.st_mode,
             st.st_rdev if (stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode)) else 0,
             t, t))
        ino = cur.lastrowid
        inos[rel] = ino
        if target is not None:
            db.execute("INSERT INTO extra VALUES (?, ?)", (ino, target.encode()))
        elif stat.S_ISREG(st.st_mode):
            for plain in chunks(os.path.join(src, rel), args.block_size or V2_BLOCK):
                bid, key, cipher = v2_block(plain)
                blocks.put(bid, cipher)
                db.execute("INSERT INTO block VALUES (?, ?, ?)", (ino, bid, key))
            files += 1
            nbytes += st.st_size
    db.commit()
    db.close()
    os.replace(tmp, out)
    return len(tree), files, nbytes


def self_check():
    """XXTEA round trip, and the snappy/AES stack, before trusting anything made here."""
    for n in (1, 3, 4, 9, 1000):
        data = bytes(range(256)) * (n // 256 + 1)
        data = data[:n]
        key = b2(data, 16)
        assert xxtea_decrypt(xxtea_encrypt(data, key), key) == data, n


def owner_spec(text):
    uid, _, gid = text.partition(":")
    return int(uid), int(gid or uid)


def main(argv):
    p = argparse.ArgumentParser(description="Make a v1 .flist or v2 .fl from a directory.")
    p.add_argument("format", choices=["v1", "v2"])
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--blocks", help="dir store to write the blocks into")
    p.add_argument("--redis", metavar="HOST:PORT", help="SET the blocks into this Redis")
    p.add_argument("--backend", metavar="HOST:PORT", help="v1: metadata backend row")
    p.add_argument("--route", action="append", default=[], help="v2: a store URL (0-255)")
    p.add_argument("--block-size", type=int)
    p.add_argument("--mtime", type=int, help="every entry's mtime (reproducible output)")
    p.add_argument("--owner", type=owner_spec, metavar="UID:GID")
    args = p.parse_args(argv)
    self_check()
    blocks = Blocks(args.blocks, args.redis)
    make = make_v1 if args.format == "v1" else make_v2
    entries, files, nbytes = make(args.src, args.out, blocks, args)
    blocks.close()
    with open(args.out, "rb") as f:
        md5 = hashlib.md5(f.read()).hexdigest()
    json.dump({"format": args.format, "entries": entries, "files": files,
               "blocks": blocks.count, "bytes": nbytes, "md5": md5}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
