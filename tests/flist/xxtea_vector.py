#!/usr/bin/python3
"""Writes xxtea_vector.txt: XXTEA (Wheeler & Needham's corrected block TEA, as published) of the
words [b"abcd" as a little-endian word, 4 (the length word 0-flist's xxtea-c appends)] under
the all-zero key, little-endian bytes in hex. Independent of the Rust code it checks
(src/fetch/flist/tests.rs, xxtea_known_answer)."""
import os
import struct


def u(x):
    return x & 0xFFFFFFFF


def btea(v, k):
    n, delta, s, z = len(v), 0x9E3779B9, 0, v[-1]
    for _ in range(6 + 52 // n):
        s = u(s + delta)
        e = (s >> 2) & 3
        for p in range(n):
            y = v[(p + 1) % n]
            mx = u((u((z >> 5) ^ (y << 2)) + u((y >> 3) ^ (z << 4))) ^ u((s ^ y) + (k[(p & 3) ^ e] ^ z)))
            v[p] = u(v[p] + mx)
            z = v[p]
    return v


words = btea(list(struct.unpack("<I", b"abcd")) + [4], [0, 0, 0, 0])
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "xxtea_vector.txt"), "w") as f:
    f.write(struct.pack("<%dI" % len(words), *words).hex() + "\n")
