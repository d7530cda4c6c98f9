#!/usr/bin/python3
"""Registration checks against a running grid.py (used by selftest.sh).

usage: selftest_registration.py BASE_URL CA_PEM [--registrar-fail N]

Signs bodies like zos-netboot's with RFC 8032's first test key, so the
node id and a known signature are pinned on both sides (register.rs tests
the same vector), then checks: 201 then 200 (one record), bad signature,
stale sent_unix, node id mismatch and unsigned requests refused. With
--registrar-fail N (a grid started with that switch): N 503s, then 201.
"""

import json
import ssl
import sys
import time
import urllib.error
import urllib.request

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# RFC 8032 §7.1, TEST 1.
SEED = bytes.fromhex(
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
NODE_ID = ("d75a980182b10ab7d54bfed3c964073a"
           "0ee172f3daa62325af021a68f707511a")
SIG_EMPTY = ("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065"
             "224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe2465"
             "5141438e7a100b")


def body(node_id, sent_unix):
    doc = {
        "node_id": node_id, "farmer_id": 42, "runmode": "test",
        "version": None, "kernel": "6.1.0-test", "zos_netboot": "0.1.0",
        "boot_unix": sent_unix - 30, "sent_unix": sent_unix,
        "macs": ["02:00:00:00:00:01"],
        "network": {
            "class": "public", "topology": "single-nic", "online": True,
            "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01",
                            "roles": ["oob", "public"],
                            "ipv4": ["10.1.0.23/24"], "ipv6": []}],
            "preferred_family": "ipv4"},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


class Client:
    def __init__(self, base, cafile):
        self.url = base.rstrip("/") + "/api/v1/nodes"
        self.base = base.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=cafile)

    def post(self, data, headers):
        req = urllib.request.Request(self.url, data=data, headers=headers,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, context=self.ctx,
                                        timeout=10) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def state(self):
        with urllib.request.urlopen(self.base + "/_grid/state",
                                    context=self.ctx, timeout=10) as r:
            return json.load(r)


def node_id_of(key):
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def signed_headers(key, node_id, data):
    return {"Content-Type": "application/json", "X-Zos-Node-Id": node_id,
            "X-Zos-Signature": key.sign(data).hex()}


def expect(what, got, status, **fields):
    code, answer = got
    ok = code == status and all(answer.get(k) == v for k, v in fields.items())
    print("%s %s: %d %s" % ("ok  " if ok else "FAIL", what, code,
                            json.dumps(answer, sort_keys=True)))
    if not ok:
        sys.exit(1)
    return answer


def main(base, cafile):
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    assert node_id_of(key) == NODE_ID, "RFC 8032 vector"
    assert key.sign(b"").hex() == SIG_EMPTY, "RFC 8032 vector"
    print("ok   RFC 8032 test 1: node id and signature match register.rs")
    c = Client(base, cafile)
    now = int(time.time())

    data = body(NODE_ID, now)
    expect("first registration", c.post(data, signed_headers(
        key, NODE_ID, data)), 201, node_id=NODE_ID, created=True,
        registrations=1)
    data = body(NODE_ID, now + 1)
    expect("second registration", c.post(data, signed_headers(
        key, NODE_ID, data)), 200, node_id=NODE_ID, created=False,
        registrations=2)

    h = signed_headers(key, NODE_ID, data)
    tampered = data.replace(b'"farmer_id":42', b'"farmer_id":43')
    expect("bad signature", c.post(tampered, h), 401)
    stale = body(NODE_ID, now - 11 * 60)
    expect("stale sent_unix", c.post(stale, signed_headers(
        key, NODE_ID, stale)), 401)
    other = Ed25519PrivateKey.generate()
    expect("body node_id differs from the header", c.post(data, signed_headers(
        other, node_id_of(other), data)), 400)
    expect("unsigned", c.post(data, {"Content-Type": "application/json"}),
           401)
    bad = body(NODE_ID, now).replace(b'"macs":[', b'"macs":[1,')
    expect("malformed macs", c.post(bad, signed_headers(key, NODE_ID, bad)),
           400)

    state = c.state()
    record = state["records"].get(NODE_ID, {})
    counters = state["counters"]
    ok = (list(state["records"]) == [NODE_ID]
          and record.get("registrations") == 2
          and record.get("body", {}).get("sent_unix") == now + 1
          and counters["registration_posts"] == 7
          and counters["registrations_created"] == 1
          and counters["registrations_updated"] == 1)
    print("%s /_grid/state: one record, registrations=%s, posts=%s, "
          "rejected=%s" % ("ok  " if ok else "FAIL",
                           record.get("registrations"),
                           counters["registration_posts"],
                           json.dumps(counters["registrations_rejected"],
                                      sort_keys=True)))
    if not ok:
        sys.exit(1)


def registrar_fail(base, cafile, n):
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    c = Client(base, cafile)
    data = body(NODE_ID, int(time.time()))
    for i in range(n):
        expect("injected failure %d" % (i + 1),
               c.post(data, signed_headers(key, NODE_ID, data)), 503)
    expect("then registered", c.post(data, signed_headers(
        key, NODE_ID, data)), 201, created=True, registrations=1)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[3] == "--registrar-fail":
        registrar_fail(sys.argv[1], sys.argv[2], int(sys.argv[4]))
    elif len(sys.argv) == 3:
        main(sys.argv[1], sys.argv[2])
    else:
        sys.exit(__doc__)
