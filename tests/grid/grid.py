#!/usr/bin/python3
"""The test grid: hub (static files) and registrar for zos-netboot's tests.

One process serves, on the addresses given with --http/--https (and only
those):

  GET/HEAD /<path>      static files under --root (manifest, artifacts), with
                        "Range: bytes=N-" / "bytes=N-M" / "bytes=-N" → 206
  POST /api/v1/nodes    node registration: ed25519 signature over the body,
                        replay guard, one record per node id (idempotent)
  GET /_grid/state      records and counters, for tests
  --redirect            [STATUS:]PATH=LOCATION answers requests (any method) for
                        PATH with a redirect (302 by default)
  SNTP (UDP, --ntp)     a server whose clock runs --ntp-offset seconds ahead
                        (--ntp-stratum 0: kiss-o'-death "RATE" answers)

Fault switches (static files matching --fault-path, default all) make it a
bad hub on purpose: slow, dropping, corrupting, lying about lengths, failing
with 503, stalling. `--make-ca DIR --names ...` writes a test CA and a server
certificate instead of serving.

Needs Python 3 and python3-cryptography (Debian package).
"""

import argparse
import datetime
import fnmatch
import hashlib
import ipaddress
import json
import mimetypes
import os
import re
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PublicKey,
    )
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("grid.py: needs the python3-cryptography package "
             "(apt-get install python3-cryptography)")

REGISTRAR_PATH = "/api/v1/nodes"
STATE_PATH = "/_grid/state"
MAX_CLOCK_SKEW = 600  # seconds; sent_unix further off than this is a replay
MAX_BODY = 64 * 1024
CHUNK = 64 * 1024
HEX64 = re.compile(r"[0-9a-fA-F]{64}")
HEX128 = re.compile(r"[0-9a-fA-F]{128}")
HEX32 = re.compile(r"[0-9a-fA-F]{32}")
RANGE = re.compile(r"bytes=(\d*)-(\d*)")
NTP_EPOCH = 2208988800  # 1900-01-01 to 1970-01-01, in seconds


def log(msg):
    sys.stderr.write("grid: %s\n" % msg)
    sys.stderr.flush()


# --- the shared state: faults, counters, registration records -------------

class Faults:
    """The fault switches. Static-file faults apply to paths matching one of
    the --fault-path globs; slow/corrupt/wrong-length apply to the first
    --fault-times requests of a path (all of them by default), a drop once
    per path, 503s to the first --fail-5xx requests of a path."""

    def __init__(self, args):
        self.globs = args.fault_path or ["*"]
        self.slow_body = args.slow_body
        self.drop_after = args.drop_after
        self.corrupt_byte = args.corrupt_byte
        self.wrong_length = args.wrong_length
        self.fail_5xx = args.fail_5xx
        self.times = args.fault_times
        self.registrar_fail = args.registrar_fail
        self.stall_accept = args.stall_accept
        self.stall_count = args.stall_count
        self.wrong_md5 = args.wrong_md5 or []

    def matches(self, path):
        return any(fnmatch.fnmatchcase(path, g) for g in self.globs)

    def repeated(self, nth):
        """Whether the repeatable faults apply to a path's nth request."""
        return self.times is None or nth <= self.times


class Grid:
    """Everything the request threads share, behind one lock."""

    def __init__(self, root, records_path, faults, clock_offset):
        self.root = os.path.realpath(root) if root else None
        self.records_path = records_path
        self.faults = faults
        self.clock_offset = clock_offset
        self.redirects = {}  # URL path -> (status, Location)
        self.lock = threading.Lock()
        self.records = self._load_records()
        self.nonces = {}  # registration nonce -> when seen (replay guard)
        self.path_requests = {}
        self.dropped = set()
        self.counters = {
            "connections": 0,
            "requests": 0,
            "tls_failures": 0,
            "registration_posts": 0,
            "ntp_requests": 0,
            # Registration POSTs being handled at once: now, and the most seen.
            "registrations_in_flight": 0,
            "registrations_in_flight_peak": 0,
            "registrations_created": 0,
            "registrations_updated": 0,
            "registrations_rejected": {},
            "faults": {},
        }

    def now(self):
        return int(time.time()) + self.clock_offset

    def _load_records(self):
        if not self.records_path or not os.path.exists(self.records_path):
            return {}
        with open(self.records_path) as f:
            return json.load(f)

    def _save_records(self):
        if not self.records_path:
            return
        tmp = self.records_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.records, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, self.records_path)

    def count(self, name):
        with self.lock:
            self.counters[name] += 1
            return self.counters[name]

    def count_fault(self, name):
        with self.lock:
            faults = self.counters["faults"]
            faults[name] = faults.get(name, 0) + 1

    def count_path(self, path):
        """Counts a request for a static path; returns its number (1-based)."""
        with self.lock:
            self.counters["requests"] += 1
            n = self.path_requests.get(path, 0) + 1
            self.path_requests[path] = n
            return n

    def claim_drop(self, path):
        """True the first time a path's response is to be cut."""
        with self.lock:
            if path in self.dropped:
                return False
            self.dropped.add(path)
            return True

    def reject(self, status):
        with self.lock:
            rejected = self.counters["registrations_rejected"]
            rejected[str(status)] = rejected.get(str(status), 0) + 1

    def store(self, node_id, doc, remote, raw=b"", signature=""):
        """Creates or updates the node's one record; returns (created, n). A nonce
        seen before is a replay (Refused 409), except the node's own latest body sent
        again whole (a retry after a lost answer): answered as before, nothing
        changed."""
        now = self.now()
        nonce = doc["nonce"]
        with self.lock:
            record = self.records.get(node_id)
            if nonce in self.nonces:
                if record is not None and record.get("body") == doc:
                    return False, record["registrations"]
                raise Refused(409, "replayed registration: nonce %s was seen "
                              "before" % nonce)
            self.nonces[nonce] = now
            # Nonces older than the clock-skew window cannot come back: sent_unix
            # would be refused first.
            for old in [n for n, t in self.nonces.items()
                        if t < now - 2 * MAX_CLOCK_SKEW]:
                del self.nonces[old]
            created = record is None
            if created:
                record = {"node_id": node_id, "registrations": 0,
                          "first_unix": now}
                self.records[node_id] = record
                self.counters["registrations_created"] += 1
            else:
                self.counters["registrations_updated"] += 1
            record["registrations"] += 1
            record["last_unix"] = now
            record["remote"] = remote
            record["body"] = doc
            # The exact bytes and signature, so a test can replay them.
            record["raw"] = raw.decode("utf-8", "replace")
            record["signature"] = signature
            self._save_records()
            return created, record["registrations"]

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps({
                "records": self.records,
                "counters": self.counters,
                "paths": self.path_requests,
            }))

    def file_for(self, url_path):
        """The file under --root for a URL path, or None (no escaping it)."""
        if self.root is None:
            return None
        rel = unquote(url_path).lstrip("/")
        full = os.path.realpath(os.path.join(self.root, rel))
        if full != self.root and not full.startswith(self.root + os.sep):
            return None
        return full if os.path.isfile(full) else None


# --- the hub API (0-hub's public read-only part) --------------------------
#
# The layout under --root is 0-hub's public directory: one directory per repository
# (user), holding flists (regular files), symlinks to flists (`symlink`: same or another
# repository), tag directories `.tag-<tag>` whose entries are symlinks to flists, and
# taglinks (a symlink to another repository's `.tag-<tag>` directory). Targets are shown the
# way 0-hub cleans them: "../" dropped, ".tag-" read as "tags/".

HUB_API = "/api/flist"
NAME = re.compile(r"[A-Za-z0-9._:+@-]+")


def clean_target(target):
    return target.replace("../", "").replace(".tag-", "tags/")


def hub_entry(path, name, in_tag=False):
    st = os.lstat(path)
    if os.path.islink(path):
        target = os.readlink(path)
        tst = os.stat(path) if os.path.exists(path) else st
        kind = "taglink" if "/.tag-" in target and not in_tag else "symlink"
        return {"name": name, "size": "%.2f KB" % (tst.st_size / 1024),
                "updated": int(tst.st_mtime), "linktime": int(st.st_mtime),
                "type": kind, "target": clean_target(target)}
    if os.path.isdir(path):
        if in_tag or not name.startswith(".tag-"):
            return None
        return {"name": name[5:], "size": "0 KB", "updated": int(st.st_mtime),
                "type": "tag"}
    if in_tag:
        return None
    return {"name": name, "size": "%.2f KB" % (st.st_size / 1024),
            "updated": int(st.st_mtime), "type": "regular"}


def flist_md5(grid, url_path):
    """MD5 (hex) of the flist at a URL path, the --wrong-md5 fault applied; None: absent."""
    full = grid.file_for(url_path)
    if full is None:
        return None
    h = hashlib.md5()
    with open(full, "rb") as f:
        for data in iter(lambda: f.read(CHUNK), b""):
            h.update(data)
    md5 = h.hexdigest()
    if any(fnmatch.fnmatchcase(url_path, g) for g in grid.faults.wrong_md5):
        grid.count_fault("wrong_md5")
        md5 = hashlib.md5(md5.encode()).hexdigest()
    return md5


def hub_api(grid, path):
    """(status, JSON) for GET /api/flist[/...], answered from the directory tree."""
    if grid.root is None:
        return 404, {"status": "error", "message": "no hub here"}
    parts = path[len(HUB_API):].strip("/").split("/") if path != HUB_API else []
    if any(not NAME.fullmatch(p) for p in parts):
        return 404, {"status": "error", "message": "bad name"}
    users = sorted(u for u in os.listdir(grid.root)
                   if os.path.isdir(os.path.join(grid.root, u)) and not u.startswith("."))
    if not parts:
        return 200, ["%s/%s" % (u, f) for u in users
                     for f in sorted(os.listdir(os.path.join(grid.root, u)))]
    user = parts[0]
    udir = os.path.join(grid.root, user)
    if user not in users:
        return 404, {"status": "error", "message": "user not found"}
    if len(parts) == 1:
        out = [hub_entry(os.path.join(udir, f), f) for f in sorted(os.listdir(udir))]
        return 200, [e for e in out if e]
    if len(parts) == 3 and parts[1] == "tags":
        tdir = os.path.join(udir, ".tag-" + parts[2])
        if not os.path.isdir(tdir):
            return 404, {"status": "error", "message": "tag not found"}
        out = [hub_entry(os.path.join(tdir, f), f, in_tag=True)
               for f in sorted(os.listdir(tdir))]
        return 200, [e for e in out if e and e["type"] == "symlink"]
    if len(parts) == 3 and parts[2] == "light":
        fpath = os.path.join(udir, parts[1])
        if not os.path.isfile(fpath):
            return 404, {"status": "error", "message": "source not found"}
        st = os.lstat(fpath)
        info = {"name": parts[1], "size": st.st_size, "updated": int(st.st_mtime),
                "type": "regular", "md5": flist_md5(grid, "/%s/%s" % (user, parts[1]))}
        if os.path.islink(fpath):
            tst = os.stat(fpath)
            info.update({"type": "symlink", "updated": int(tst.st_mtime),
                         "linktime": int(st.st_mtime), "target": os.readlink(fpath),
                         "size": tst.st_size})
        return 200, info
    return 404, {"status": "error", "message": "no such endpoint"}


# --- registration ----------------------------------------------------------

class Refused(Exception):
    def __init__(self, status, text):
        super().__init__(text)
        self.status = status


def check_fields(doc):
    """The body's shape; raises Refused(400) naming the first bad field."""
    def want(name, ok, what):
        if name not in doc or not ok(doc[name]):
            raise Refused(400, "%s must be %s" % (name, what))

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    want("farmer_id", lambda v: v is None or is_int(v), "a number or null")
    want("runmode", lambda v: isinstance(v, str), "a string")
    want("version", lambda v: v is None or isinstance(v, str),
         "a string or null")
    want("kernel", lambda v: isinstance(v, str), "a string")
    want("zos_netboot", lambda v: isinstance(v, str), "a string")
    want("boot_unix", is_int, "a number")
    want("macs", lambda v: isinstance(v, list)
         and all(isinstance(m, str) for m in v), "a list of strings")
    want("network", lambda v: isinstance(v, dict)
         and isinstance(v.get("interfaces"), list)
         and isinstance(v.get("online"), bool),
         "an object with interfaces[] and online")


def verify_registration(grid, headers, body):
    """Checks one registration POST; returns (node_id, document)."""
    ctype = headers.get("Content-Type", "")
    if ctype.split(";")[0].strip().lower() != "application/json":
        raise Refused(415, "Content-Type must be application/json")
    node_id = headers.get("X-Zos-Node-Id")
    sig = headers.get("X-Zos-Signature")
    if not node_id or not sig:
        raise Refused(401, "unsigned: X-Zos-Node-Id and X-Zos-Signature "
                      "are required")
    if not HEX64.fullmatch(node_id):
        raise Refused(400, "X-Zos-Node-Id must be 64 hex digits")
    if not HEX128.fullmatch(sig):
        raise Refused(401, "bad signature: X-Zos-Signature must be 128 hex "
                      "digits")
    node_id = node_id.lower()
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(node_id))
        key.verify(bytes.fromhex(sig), body)
    except (InvalidSignature, ValueError):
        raise Refused(401, "bad signature for node %s" % node_id)
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise Refused(400, "body is not JSON: %s" % e)
    if not isinstance(doc, dict):
        raise Refused(400, "body must be a JSON object")
    if str(doc.get("node_id", "")).lower() != node_id:
        raise Refused(400, "node_id in the body is not X-Zos-Node-Id")
    sent = doc.get("sent_unix")
    if not isinstance(sent, int) or isinstance(sent, bool):
        raise Refused(400, "sent_unix must be a number")
    skew = sent - grid.now()
    if abs(skew) > MAX_CLOCK_SKEW:
        raise Refused(401, "sent_unix is %+d s off the registrar's clock "
                      "(limit %d s): check the node's clock"
                      % (skew, MAX_CLOCK_SKEW))
    # The signature covers the URL the node posted to and a nonce (issue 17, point 5): a
    # body captured on its way to another registrar, or replayed, is refused.
    url = doc.get("registrar")
    if not isinstance(url, str):
        raise Refused(400, "registrar (the URL posted to) is missing")
    parts = urlsplit(url)
    host = (headers.get("Host") or "").lower()
    # Its own path, or one it redirects here (a moved registrar: the node signs the URL it
    # was given, the one before the redirect).
    paths = {REGISTRAR_PATH} | {
        p for p, (_, loc) in grid.redirects.items()
        if urlsplit(loc).path == REGISTRAR_PATH}
    if parts.path not in paths or parts.netloc.lower() != host:
        raise Refused(401, "signed for %s, not this registrar (%s%s)"
                      % (url, host, REGISTRAR_PATH))
    nonce = doc.get("nonce")
    if not isinstance(nonce, str) or not HEX32.fullmatch(nonce):
        raise Refused(400, "nonce must be 32 hex digits")
    check_fields(doc)
    return node_id, doc


# --- HTTP ------------------------------------------------------------------

def parse_range(header, size):
    """(start, end) inclusive for a single byte range; None to ignore the
    header (malformed or several ranges); "unsatisfiable" for a 416."""
    m = RANGE.fullmatch(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, end


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "zos-test-grid/1"
    timeout = 60  # an idle keep-alive connection is closed after this

    # One log line per request, written by finish_line; the base class's
    # per-response line is silenced.
    def log_request(self, code="-", size="-"):
        pass

    def log_message(self, fmt, *args):
        log("%s %s" % (self.client_address[0], fmt % args))

    def send_response(self, code, message=None):
        self.status = code
        super().send_response(code, message)

    def finish_line(self, started, sent, notes):
        log("%s %s %s %s %dB %dms%s" % (
            self.client_address[0], self.command, self.path,
            getattr(self, "status", "-"), sent,
            (time.monotonic() - started) * 1000,
            "".join(" " + n for n in notes)))

    def send_json(self, status, obj, extra=()):
        data = json.dumps(obj, sort_keys=True).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        return len(data)

    @property
    def grid(self):
        return self.server.grid

    def do_GET(self):
        self.handle_get()

    def do_HEAD(self):
        self.handle_get()

    def do_POST(self):
        started, notes = time.monotonic(), []
        sent = 0
        try:
            path = urlsplit(self.path).path
            if path != REGISTRAR_PATH:
                # Counted per path like a static file, so a test can see
                # how often a node POSTed to a wrong endpoint.
                self.grid.count_path(path)
                # Read the body first: closing a socket with unread data
                # makes the kernel send a reset, which can destroy the
                # answer before the client reads it.
                length = self.headers.get("Content-Length", "")
                if length.isdigit() and int(length) <= MAX_BODY:
                    self.rfile.read(int(length))
                else:
                    self.close_connection = True
                if path in self.grid.redirects:
                    sent = self.send_redirect(path, notes)
                else:
                    sent = self.send_json(404, {"error": "no such endpoint"})
            else:
                grid = self.grid
                with grid.lock:
                    c = grid.counters
                    c["registrations_in_flight"] += 1
                    c["registrations_in_flight_peak"] = max(
                        c["registrations_in_flight_peak"],
                        c["registrations_in_flight"])
                try:
                    sent = self.handle_registration(notes)
                finally:
                    with grid.lock:
                        grid.counters["registrations_in_flight"] -= 1
        finally:
            self.finish_line(started, sent, notes)

    def handle_get(self):
        started, notes = time.monotonic(), []
        sent = 0
        try:
            path = urlsplit(self.path).path
            if path == STATE_PATH:
                sent = self.send_json(200, self.grid.snapshot())
            elif path == REGISTRAR_PATH:
                sent = self.send_json(405, {"error": "POST registrations"},
                                      [("Allow", "POST")])
            elif path in self.grid.redirects:
                self.grid.count_path(path)
                sent = self.send_redirect(path, notes)
            elif path == HUB_API or path.startswith(HUB_API + "/"):
                self.grid.count_path(path)
                status, doc = hub_api(self.grid, unquote(path))
                sent = self.send_json(status, doc)
            elif (path.endswith(".flist.md5") and self.grid.file_for(path) is None
                  and self.grid.root is not None):
                sent = self.serve_md5(path, notes)
            else:
                sent = self.serve_file(path, notes)
        except OSError as e:
            # The client went away mid-body (or a fault cut it): nothing
            # more can be said on this connection.
            notes.append("connection-lost(%s)" % e.__class__.__name__)
            self.close_connection = True
        finally:
            self.finish_line(started, sent, notes)

    def serve_md5(self, path, notes):
        """0-hub's `/<repo>/<f>.flist.md5`: the flist's MD5 in hex and a newline."""
        self.grid.count_path(path)
        md5 = flist_md5(self.grid, path[:-len(".md5")])
        if md5 is None:
            return self.send_json(404, {"error": "no such flist: %s" % path})
        data = (md5 + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        return len(data)

    def send_redirect(self, path, notes):
        status, location = self.grid.redirects[path]
        notes.append("redirect=%s" % location)
        return self.send_json(status, {"location": location},
                              [("Location", location)])

    def handle_registration(self, notes):
        grid, faults = self.grid, self.grid.faults
        nth = grid.count("registration_posts")
        grid.count("requests")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            return self.send_json(411, {"error": "Content-Length required"})
        length = int(length)
        if length > MAX_BODY:
            self.close_connection = True
            return self.send_json(413, {"error": "body over %d bytes"
                                        % MAX_BODY})
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return self.send_json(400, {"error": "body shorter than "
                                        "Content-Length"})
        if nth <= faults.registrar_fail:
            grid.count_fault("registrar_fail")
            notes.append("fault=registrar-fail(%d/%d)"
                         % (nth, faults.registrar_fail))
            return self.send_json(503, {"error": "injected failure %d of %d"
                                        % (nth, faults.registrar_fail)})
        try:
            node_id, doc = verify_registration(grid, self.headers, body)
        except Refused as e:
            grid.reject(e.status)
            notes.append("refused: %s" % e)
            return self.send_json(e.status, {"error": str(e)})
        try:
            created, n = grid.store(node_id, doc, self.client_address[0], body,
                                    self.headers.get("X-Zos-Signature", ""))
        except Refused as e:
            grid.reject(e.status)
            notes.append("refused: %s" % e)
            return self.send_json(e.status, {"error": str(e)})
        notes.append("node=%s… %s #%d" % (
            node_id[:12], "created" if created else "updated", n))
        return self.send_json(201 if created else 200, {
            "node_id": node_id, "created": created, "registrations": n})

    def serve_file(self, path, notes):
        grid, faults = self.grid, self.grid.faults
        nth = grid.count_path(path)
        full = grid.file_for(path)
        if full is None:
            return self.send_json(404, {"error": "no such file: %s" % path})
        faulty = faults.matches(path)
        if faulty and nth <= faults.fail_5xx:
            grid.count_fault("fail_5xx")
            notes.append("fault=5xx(%d/%d)" % (nth, faults.fail_5xx))
            return self.send_json(503, {"error": "injected 503 (%d of %d)"
                                        % (nth, faults.fail_5xx)})
        size = os.path.getsize(full)
        start, end, status = 0, size - 1, 200
        header = self.headers.get("Range")
        if header:
            rng = parse_range(header, size)
            if rng == "unsatisfiable":
                return self.send_json(416, {"error": "range not satisfiable"},
                                      [("Content-Range", "bytes */%d" % size)])
            if rng is not None:
                (start, end), status = rng, 206
        length = end - start + 1
        declared, to_send = length, length
        repeated = faulty and faults.repeated(nth)
        if repeated and faults.wrong_length:
            # +N: promise N bytes more than sent; -N: promise N fewer and send
            # them all anyway. Either way the connection then closes.
            declared = max(0, length + faults.wrong_length)
            self.close_connection = True
            grid.count_fault("wrong_length")
            notes.append("fault=wrong-length(%+d)" % faults.wrong_length)
        drop_at = None
        if (faulty and faults.drop_after is not None
                and faults.drop_after < to_send and grid.claim_drop(path)):
            drop_at = faults.drop_after
            grid.count_fault("drop")
            notes.append("fault=drop-after(%d)" % drop_at)
        corrupt = None
        if (repeated and faults.corrupt_byte is not None
                and start <= faults.corrupt_byte <= end):
            corrupt = faults.corrupt_byte - start
            grid.count_fault("corrupt")
            notes.append("fault=corrupt-byte(%d)" % faults.corrupt_byte)
        rate = faults.slow_body if repeated else None
        if rate:
            grid.count_fault("slow")
            notes.append("fault=slow-body(%d B/s)" % rate)

        self.send_response(status)
        ctype = mimetypes.guess_type(full)[0] or "application/octet-stream"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(declared))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range",
                             "bytes %d-%d/%d" % (start, end, size))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return 0
        return self.stream(full, start, to_send, drop_at, corrupt, rate)

    def stream(self, full, start, count, drop_at, corrupt, rate):
        """Sends count bytes of the file from start, applying the faults;
        returns the number of bytes sent."""
        chunk_size = max(1, rate // 20) if rate else CHUNK
        sent = 0
        with open(full, "rb") as f:
            f.seek(start)
            while sent < count:
                want = min(chunk_size, count - sent)
                if drop_at is not None:
                    want = min(want, drop_at - sent)
                data = bytearray(f.read(want))
                if not data:
                    break
                if corrupt is not None and sent <= corrupt < sent + len(data):
                    data[corrupt - sent] ^= 0xFF
                self.wfile.write(data)
                sent += len(data)
                if drop_at is not None and sent >= drop_at:
                    self.wfile.flush()
                    self.cut_connection()
                    return sent
                if rate:
                    self.wfile.flush()
                    time.sleep(len(data) / rate)
        return sent

    def cut_connection(self):
        """Closes the connection mid-body, without a TLS close_notify."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class GridServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: a fleet of nodes connecting at once would
    # see SYNs dropped (1 s, 3 s retransmissions) that no real hub would cause.
    request_queue_size = 1024

    def __init__(self, address, grid, tls):
        host, port = address
        self.address_family = (socket.AF_INET6 if ":" in host
                               else socket.AF_INET)
        self.grid = grid
        self.tls = tls
        super().__init__((host, port), Handler)

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            # Only the address given: [::] must not take IPv4 as well.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # TCPServer's bind, not HTTPServer's: that one looks up the host's
        # FQDN, which hangs in a namespace without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def url(self):
        host, port = self.server_address[:2]
        if self.address_family == socket.AF_INET6:
            host = "[%s]" % host
        return "%s://%s:%d" % ("https" if self.tls else "http", host, port)

    def finish_request(self, request, client_address):
        # Runs in the connection's own thread: stalls and TLS handshakes
        # hold up no one else.
        grid, faults = self.grid, self.grid.faults
        n = grid.count("connections")
        if faults.stall_accept and (faults.stall_count is None
                                    or n <= faults.stall_count):
            grid.count_fault("stall")
            log("%s connection %d: stalling %ss before reading"
                % (client_address[0], n, faults.stall_accept))
            time.sleep(faults.stall_accept)
        if self.tls is None:
            self.RequestHandlerClass(request, client_address, self)
            return
        request.settimeout(30)
        try:
            tls_sock = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            grid.count("tls_failures")
            log("%s TLS handshake failed: %s" % (client_address[0], e))
            return
        try:
            self.RequestHandlerClass(tls_sock, client_address, self)
        finally:
            tls_sock.close()


# --- SNTP --------------------------------------------------------------------

def ntp_timestamp(unix):
    secs = int(unix)
    frac = int((unix - secs) * (1 << 32)) & 0xFFFFFFFF
    return struct.pack("!II", (secs + NTP_EPOCH) & 0xFFFFFFFF, frac)


class NtpServer:
    """An SNTP server (RFC 4330 §5) on one UDP address: answers client
    (mode 3) requests with a clock --ntp-offset seconds ahead of this
    machine's, echoing the request's transmit timestamp as the originate
    timestamp. Stratum 0 sends kiss-o'-death "RATE" packets instead."""

    def __init__(self, address, grid, offset, stratum):
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        if family == socket.AF_INET6:
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.sock.bind((host, port))
        self.sock.settimeout(0.2)
        self.grid, self.offset, self.stratum = grid, offset, stratum
        self.stop = threading.Event()

    def url(self):
        host, port = self.sock.getsockname()[:2]
        return "ntp://%s:%d" % ("[%s]" % host if ":" in host else host, port)

    def serve(self):
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            received = time.time() + self.offset
            if len(data) < 48 or data[0] & 7 != 3:
                log("%s NTP: not a client request (%d bytes)"
                    % (peer[0], len(data)))
                continue
            self.grid.count("ntp_requests")
            version = (data[0] >> 3) & 7
            leap = 0 if self.stratum else 3
            ref_id = b"LAB\0" if self.stratum else b"RATE"
            reply = (struct.pack("!BBbb", leap << 6 | version << 3 | 4,
                                 self.stratum, 4, -20)
                     + struct.pack("!II", 0, 0) + ref_id
                     + ntp_timestamp(received) + data[40:48]
                     + ntp_timestamp(received)
                     + ntp_timestamp(time.time() + self.offset))
            self.sock.sendto(reply, peer)
            log("%s NTP stratum %d offset %+gs"
                % (peer[0], self.stratum, self.offset))

    def close(self):
        self.stop.set()
        self.sock.close()


# --- command line ----------------------------------------------------------

def listen_address(text):
    """ADDR:PORT with an IPv4 or a bracketed IPv6 literal; names are refused
    so the grid binds exactly where it is told."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError("%r: expected ADDR:PORT" % text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        version = 6
    else:
        version = 4
    try:
        if ipaddress.ip_address(host).version != version:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            "%r: the address must be an IPv4 literal or [IPv6]" % text)
    return host, int(port)


def redirect_spec(text):
    """[STATUS:]PATH=LOCATION → (path, (status, location))."""
    m = re.fullmatch(r"(?:(30[1278]):)?(/[^=]*)=(.+)", text)
    if not m:
        raise argparse.ArgumentTypeError(
            "%r: expected [301|302|307|308:]/PATH=LOCATION" % text)
    return m.group(2), (int(m.group(1) or 302), m.group(3))


def signed_int(text):
    if not re.fullmatch(r"[+-]\d+", text) or int(text) == 0:
        raise argparse.ArgumentTypeError("%r: expected +N or -N" % text)
    return int(text)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Test hub + registrar for zos-netboot.")
    p.add_argument("--http", action="append", default=[],
                   type=listen_address, metavar="ADDR:PORT")
    p.add_argument("--https", action="append", default=[],
                   type=listen_address, metavar="ADDR:PORT")
    p.add_argument("--ntp", action="append", default=[],
                   type=listen_address, metavar="ADDR:PORT",
                   help="answer SNTP requests (UDP) here")
    p.add_argument("--ntp-offset", type=float, default=0, metavar="SECS",
                   help="the SNTP server's clock runs SECS ahead (negative: "
                   "behind)")
    p.add_argument("--ntp-stratum", type=int, default=1, metavar="N",
                   help="stratum of the SNTP answers; 0 sends kiss-o'-death "
                   "RATE packets (leap indicator 3)")
    p.add_argument("--redirect", action="append", default=[],
                   type=redirect_spec, metavar="[STATUS:]PATH=LOCATION",
                   help="answer PATH (any method) with a redirect to LOCATION "
                   "(302 unless STATUS says 301, 307 or 308)")
    p.add_argument("--cert", help="server certificate (PEM) for --https")
    p.add_argument("--key", help="its private key (PEM)")
    p.add_argument("--root", help="directory served as static files")
    p.add_argument("--records", help="registration records (JSON object, "
                   "rewritten atomically; loaded at start if present)")
    p.add_argument("--ready-file", help="written (JSON: pid, urls) once "
                   "every listener is up")
    p.add_argument("--exit-after", type=float, metavar="SECS",
                   help="stop by itself after SECS (a test's safety net)")
    p.add_argument("--clock-offset", type=int, default=0, metavar="SECS",
                   help="the registrar's clock runs SECS ahead (negative: "
                   "behind), to test the replay guard")
    p.add_argument("--make-ca", metavar="DIR",
                   help="write ca.pem, ca-key.pem, server.pem, "
                   "server-key.pem into DIR and exit")
    p.add_argument("--valid-from", type=int, metavar="YEAR",
                   help="with --make-ca: the CA and the server certificate "
                   "are valid from 1 January YEAR (a future date tests a "
                   "node whose clock is behind, or a forged certificate)")
    p.add_argument("--names", default="",
                   help="with --make-ca: comma-separated DNS names and IPs "
                   "for the server certificate")
    f = p.add_argument_group("faults (static files matching --fault-path)")
    f.add_argument("--fault-path", action="append", metavar="GLOB",
                   help="URL path glob the faults apply to (repeatable; "
                   "default: every static file)")
    f.add_argument("--fault-times", type=int, metavar="N",
                   help="slow/corrupt/wrong-length only on the first N "
                   "requests of a path (default: all)")
    f.add_argument("--slow-body", type=int, metavar="BYTES_PER_SEC")
    f.add_argument("--drop-after", type=int, metavar="BYTES",
                   help="close the connection after BYTES of the body, once "
                   "per path")
    f.add_argument("--corrupt-byte", type=int, metavar="OFFSET",
                   help="flip the byte at this file offset")
    f.add_argument("--wrong-length", type=signed_int, metavar="+N|-N",
                   help="+N: Content-Length N too big (short body); -N: N too "
                   "small (the whole file is sent); then close")
    f.add_argument("--fail-5xx", type=int, default=0, metavar="N",
                   help="the first N requests per path get 503")
    f.add_argument("--registrar-fail", type=int, default=0, metavar="N",
                   help="the first N registration POSTs get 503")
    f.add_argument("--stall-accept", type=float, metavar="SECS",
                   help="accept connections but read nothing for SECS")
    f.add_argument("--wrong-md5", action="append", metavar="GLOB",
                   help="the hub API's MD5 of flists whose URL path matches GLOB (.flist.md5 "
                   "and /light) is wrong (repeatable)")
    f.add_argument("--stall-count", type=int, metavar="N",
                   help="stall only the first N connections (default: all)")
    args = p.parse_args(argv)
    if args.make_ca:
        if not args.names:
            p.error("--make-ca needs --names")
        return args
    if not args.http and not args.https and not args.ntp:
        p.error("nothing to serve on: give --http, --https and/or --ntp")
    if args.https and not (args.cert and args.key):
        p.error("--https needs --cert and --key")
    return args


# --- the test CA -----------------------------------------------------------

def make_ca(out_dir, names, valid_from=None):
    names = [n.strip() for n in names.split(",") if n.strip()]
    now = datetime.datetime.now(datetime.timezone.utc)
    if valid_from:
        now = datetime.datetime(valid_from, 1, 2, tzinfo=datetime.timezone.utc)
    os.makedirs(out_dir, exist_ok=True)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(filename, data, private=False):
        path = os.path.join(out_dir, filename)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o600 if private else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    def pem_key(key):
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("zos-netboot test CA")
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0),
                         critical=True)
          .add_extension(x509.KeyUsage(
              digital_signature=False, content_commitment=False,
              key_encipherment=False, data_encipherment=False,
              key_agreement=False, key_cert_sign=True, crl_sign=True,
              encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(
              ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))

    sans = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(name(names[0])).issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                           critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))

    pem = serialization.Encoding.PEM
    write("ca.pem", ca.public_bytes(pem))
    write("ca-key.pem", pem_key(ca_key), private=True)
    write("server.pem", cert.public_bytes(pem))
    write("server-key.pem", pem_key(key), private=True)
    log("wrote %s/{ca,ca-key,server,server-key}.pem for %s"
        % (out_dir, ", ".join(names)))


# --- main ------------------------------------------------------------------

def write_ready(path, servers, ntp):
    info = {"pid": os.getpid(),
            "http": [s.url() for s in servers if not s.tls],
            "https": [s.url() for s in servers if s.tls],
            "ntp": [n.url() for n in ntp]}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f)
        f.write("\n")
    os.replace(tmp, path)


def main(argv):
    args = parse_args(argv)
    if args.make_ca:
        make_ca(args.make_ca, args.names, args.valid_from)
        return 0

    grid = Grid(args.root, args.records, Faults(args), args.clock_offset)
    grid.redirects = dict(args.redirect)
    tls = None
    if args.https:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(args.cert, args.key)
    servers = [GridServer(a, grid, None) for a in args.http]
    servers += [GridServer(a, grid, tls) for a in args.https]
    ntp = [NtpServer(a, grid, args.ntp_offset, args.ntp_stratum)
           for a in args.ntp]

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threads = [threading.Thread(target=s.serve_forever, daemon=True)
               for s in servers]
    threads += [threading.Thread(target=n.serve, daemon=True) for n in ntp]
    for t in threads:
        t.start()
    log("serving %s (root %s) pid %d" % (
        " ".join([s.url() for s in servers] + [n.url() for n in ntp]),
        args.root or "none: no files",
        os.getpid()))
    if args.ready_file:
        write_ready(args.ready_file, servers, ntp)
    if not stop.wait(args.exit_after):
        log("--exit-after %ss reached" % args.exit_after)
    for s in servers:
        s.shutdown()
        s.server_close()
    for n in ntp:
        n.close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
