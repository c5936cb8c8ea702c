#!/usr/bin/python3
"""Scriptable SMTP test server for the outbox integration tests.

    smtpd.py gen-certs DIR [--expired] [--wrong-name] [--self-signed] [--weak-key] [--intermediate]
    smtpd.py serve --cert-dir DIR --maildir DIR [options]

The server speaks ESMTP over implicit TLS, STARTTLS or plaintext, offers
AUTH PLAIN/LOGIN, PIPELINING, CHUNKING (BDAT), 8BITMIME, SMTPUTF8 and SIZE,
imitates Gmail's replies, stores every accepted message in a directory and
injects faults described by a JSON script.  It listens on loopback addresses
only and runs one thread per connection.  See README.md for the details.

Run it with Debian's /usr/bin/python3 (needs python3-cryptography for
gen-certs only).
"""

import argparse
import base64
import binascii
import datetime
import ipaddress
import json
import os
import random
import re
import select
import signal
import socket
import ssl
import sys
import threading
import time
import traceback

HOSTNAME = "localhost"
MAX_LINE = 1 << 20          # longest accepted command line, without CRLF
RECV_SIZE = 1 << 16         # bytes asked from the socket per recv()
LINGER = 1.0                # seconds spent draining input when closing
GMAIL_SIZE = 35882577

EVENTS = ("connect", "ehlo", "starttls", "auth", "mail", "rcpt", "data",
          "data-end", "bdat", "rset", "quit")

# Commands that fire script events as soon as they are read.  BDAT fires
# from its handler, once its chunk has been consumed.
VERB_EVENTS = {"EHLO": "ehlo", "HELO": "ehlo", "STARTTLS": "starttls",
               "AUTH": "auth", "MAIL": "mail", "RCPT": "rcpt",
               "DATA": "data", "RSET": "rset", "QUIT": "quit"}

# A fatal internal_error alert as a cleartext TLS 1.2 record.  Written into an
# established TLS stream it cannot be authenticated, so the peer's TLS layer
# fails (bad record / bad MAC) instead of seeing an orderly close.
TLS_ALERT = b"\x15\x03\x03\x00\x02\x02\x50"

MAIL_RE = re.compile(r"FROM:\s*<([^<>]*)>(.*)", re.I | re.S)
RCPT_RE = re.compile(r"TO:\s*<([^<>]*)>(.*)", re.I | re.S)
BDAT_RE = re.compile(r"(\d+)(?: +(LAST))?", re.I)


class Disconnected(Exception):
    """The client closed the connection."""


class Hangup(Exception):
    """The server drops the connection (no TLS close_notify)."""


class Quit(Exception):
    """QUIT was answered: close the connection gracefully."""


class Shutdown(Exception):
    """SIGTERM or SIGINT received."""


class Refuse(Exception):
    """Abandon the current command with this reply."""

    def __init__(self, code, text):
        super().__init__(f"{code} {text}")
        self.code, self.text = code, text


# ---------------------------------------------------------------------------
# Certificates

def gen_certs(args):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def pem(cert):
        return cert.public_bytes(serialization.Encoding.PEM)

    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)

    def ca(subject, key, path_length, issuer=None, signer=None):
        """A CA certificate: self-signed, or issued by (issuer, signer)."""
        issuer, signer = (issuer, signer) if signer else (subject, key)
        b = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - day).not_valid_after(now + 365 * day)
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False,
                key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False))
        if signer is not key:
            b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                signer.public_key()), critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("outbox test CA")
    ca_cert = ca(ca_name, ca_key, 1)
    chain = []
    if args.intermediate:
        # The server's issuer is an intermediate that the server sends along,
        # as public CAs do; ca.pem holds only the root.
        int_key = ec.generate_private_key(ec.SECP256R1())
        int_name = name("outbox test intermediate")
        chain = [ca(int_name, int_key, 0, ca_name, ca_key)]
        ca_name, ca_key = int_name, int_key

    if args.weak_key:
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    if args.wrong_name:
        cn, sans = "wrong.example", [x509.DNSName("wrong.example")]
    else:
        cn = "localhost"
        sans = [x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1"))]
    if args.expired:
        not_before, not_after = now - 30 * day, now - day
    else:
        not_before, not_after = now - day, now + 365 * day
    # A self-signed server certificate is its own issuer; ca.pem is still
    # written, so a client trusting it must reject the server.
    issuer, signer = (name(cn), key) if args.self_signed else (ca_name, ca_key)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(cn)).issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            signer.public_key()), critical=False)
        .sign(signer, hashes.SHA256()))

    os.makedirs(args.dir, exist_ok=True)
    write_file(os.path.join(args.dir, "ca.pem"), pem(ca_cert))
    write_file(os.path.join(args.dir, "server.pem"), b"".join(pem(c) for c in [cert] + chain))
    write_file(os.path.join(args.dir, "server.key"), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), mode=0o600)


def write_file(path, data, mode=0o644):
    """Write `data` to `path` atomically (temporary file, then rename)."""
    tmp = os.path.join(os.path.dirname(path) or ".",
                       f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def make_ssl_context(cert_dir, tls_max="1.3"):
    cert = os.path.join(cert_dir, "server.pem")
    key = os.path.join(cert_dir, "server.key")

    def context(seclevel0=False):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if tls_max == "1.2":
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if seclevel0:
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.load_cert_chain(cert, key)
        return ctx

    try:
        return context()
    except ssl.SSLError:
        # OpenSSL's default security level refuses to load a 1024-bit RSA
        # key (gen-certs --weak-key): serve it anyway, the client must
        # reject it.
        return context(seclevel0=True)


# ---------------------------------------------------------------------------
# Fault script

class Rule:
    TYPES = {"on": str, "match": str, "reply": str, "raw": str, "close": bool,
             "delay": (int, float), "times": int, "skip": int,
             "tls-alert": bool, "huge": int, "store": bool}

    def __init__(self, index, spec):
        if not isinstance(spec, dict):
            raise ValueError(f"rule {index}: not an object")
        for key, value in spec.items():
            want = self.TYPES.get(key)
            if want is None:
                raise ValueError(f"rule {index}: unknown key {key!r}")
            if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
                raise ValueError(f"rule {index}: bad value for {key!r}: {value!r}")
        for key in ("delay", "times", "skip", "huge"):
            if spec.get(key, 0) < 0:
                raise ValueError(f"rule {index}: {key!r} must not be negative")
        self.index = index
        self.on = spec.get("on")
        if self.on not in EVENTS:
            raise ValueError(f"rule {index}: 'on' must be one of {', '.join(EVENTS)}")
        self.match = spec.get("match", "").encode().lower()
        self.reply = parse_reply(index, spec["reply"]) if "reply" in spec else None
        try:
            self.raw = spec["raw"].encode("latin-1") if "raw" in spec else None
        except UnicodeEncodeError:
            raise ValueError(f"rule {index}: 'raw' may only hold U+0000..U+00FF") from None
        if self.reply is not None and self.raw is not None:
            raise ValueError(f"rule {index}: 'reply' and 'raw' exclude each other")
        self.close = spec.get("close", False)
        self.delay = spec.get("delay", 0)
        self.times = spec.get("times")
        self.skip = spec.get("skip", 0)
        self.tls_alert = spec.get("tls-alert", False)
        self.huge = spec.get("huge", 0)
        self.store = spec.get("store")
        self.seen = 0           # matching events so far, over all connections

    @property
    def replies(self):
        return self.reply is not None or self.raw is not None

    def matches(self, event, subject):
        """Case-insensitive `match` against the command line, or for data-end
        against the message through the search function `subject`."""
        if event != self.on:
            return False
        if not self.match:
            return True
        return subject(self.match) if callable(subject) else self.match in subject.lower()

    def active(self):
        n = self.seen - self.skip
        return n > 0 and (self.times is None or n <= self.times)


def parse_reply(index, text):
    """'NNN text[\\nmore text...]' -> (code, [lines])."""
    first, *more = text.split("\n")
    if not re.fullmatch(r"\d{3}( .*)?", first, re.S):
        raise ValueError(f"rule {index}: reply must start with a 3-digit code: {text!r}")
    return first[:3], [first[4:]] + more


def load_script(path):
    with open(path, encoding="utf-8") as f:
        specs = json.load(f)
    if not isinstance(specs, list):
        raise ValueError("the script must be a JSON list of rules")
    return [Rule(i, spec) for i, spec in enumerate(specs)]


# ---------------------------------------------------------------------------
# Shared server state

class Server:
    def __init__(self, args):
        self.cfg = args
        self.lock = threading.Lock()
        self.rules = load_script(args.script) if args.script else []
        self.ssl_ctx = make_ssl_context(args.cert_dir, args.tls_max) \
            if args.tls != "none" else None
        self.rng = random.Random(args.seed)
        os.makedirs(args.maildir, exist_ok=True)
        self.logf = open(args.log, "a", encoding="utf-8", errors="backslashreplace") \
            if args.log else None
        self.conn_no = 0
        self.msg_no = 0
        self.stats = {"connections": 0, "auths": 0, "auth_failures": 0,
                      "messages": 0, "data_messages": 0, "bdat_messages": 0}

    def log(self, conn, text):
        if self.logf is None:
            return
        text = text.replace("\r", "\\r").replace("\n", "\\n")
        with self.lock:
            self.logf.write(f"{conn} {text}\n")
            self.logf.flush()

    def count(self, key):
        with self.lock:
            self.stats[key] += 1

    def chance(self, p):
        if p <= 0:
            return False
        with self.lock:
            return self.rng.random() < p

    def drop_point(self):
        """Event number (1-8) at which a new connection is dropped, or 0."""
        if self.cfg.random_drop <= 0:
            return 0
        with self.lock:
            if self.rng.random() < self.cfg.random_drop:
                return self.rng.randint(1, 8)
        return 0

    def pick(self, event, subject):
        """The rule handling this event, or None.

        Rules are tried in order.  Each matching rule the event reaches
        counts it; the first one that is active (past `skip`, within
        `times`) takes it, and later rules never see it.
        """
        candidates = [r for r in self.rules if r.matches(event, subject)]
        with self.lock:
            for rule in candidates:
                rule.seen += 1
                if rule.active():
                    return rule
        return None

    def store(self, body, meta):
        """Move a finished body into the maildir; returns its number 'NNNNNN'."""
        with self.lock:
            self.msg_no += 1
            name = f"{self.msg_no:06d}"
            meta["size"] = body.size
            meta["eight_bit"] = body.eight_bit
            path = os.path.join(self.cfg.maildir, name)
            write_file(path + ".json", (json.dumps(meta, indent=1) + "\n").encode())
            os.replace(body.path, path + ".eml")
            body.path = None
            self.stats["messages"] += 1
            self.stats["bdat_messages" if meta["via"] == "BDAT" else "data_messages"] += 1
        return name

    def new_connection(self):
        with self.lock:
            self.conn_no += 1
            self.stats["connections"] += 1
            return self.conn_no

    def finish(self):
        with self.lock:
            if self.cfg.stats:
                write_file(self.cfg.stats, (json.dumps(self.stats, indent=1) + "\n").encode())
            if self.logf:
                self.logf.flush()


# ---------------------------------------------------------------------------
# Message bodies

class Body:
    """A message being received, streamed to a hidden file in the maildir."""

    def __init__(self, path, limit):
        self.path = path
        self.file = open(path, "wb")
        self.limit = limit
        self.size = 0
        self.eight_bit = False

    @property
    def too_big(self):
        return bool(self.limit) and self.size > self.limit

    def write(self, data):
        self.size += len(data)
        if self.too_big:        # past the limit: only counted, not kept
            return
        if not self.eight_bit and not data.isascii():
            self.eight_bit = True
        self.file.write(data)

    def finish(self):
        self.file.close()

    def contains(self, needle):
        """Search the stored bytes, ignoring ASCII case, without loading them
        whole.  `needle` must be in lower case."""
        overlap = len(needle) - 1
        with open(self.path, "rb") as f:
            tail = b""
            while chunk := f.read(1 << 20):
                chunk = chunk.lower()
                if needle in tail + chunk:
                    return True
                tail = chunk[-overlap:] if overlap else b""
        return False

    def discard(self):
        self.file.close()
        if self.path:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


# ---------------------------------------------------------------------------
# Input

class Reader:
    """Buffered input from a (possibly TLS) socket.

    `before_block` is called before every blocking recv(): the session uses
    it to send its queued replies, so replies to pipelined commands go out
    in one batch once all received commands have been processed.
    """

    def __init__(self, sock, before_block):
        self.sock = sock
        self.before_block = before_block
        self.buf = bytearray()
        self.scanned = 0        # leading bytes of buf known to hold no LF

    def _fill(self):
        self.before_block()
        data = self.sock.recv(RECV_SIZE)
        if not data:
            raise Disconnected()
        self.buf += data

    def _take(self, n):
        data = bytes(self.buf[:n])
        del self.buf[:n]
        self.scanned = 0
        return data

    def pending(self):
        """Bytes received from the client and not consumed yet."""
        n = len(self.buf)
        if isinstance(self.sock, ssl.SSLSocket):
            n += self.sock.pending()
        if n:
            return n
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return len(poller.poll(0))

    def discard(self):
        n = len(self.buf)
        self.buf.clear()
        self.scanned = 0
        return n

    def readline(self, limit):
        """The next line including its LF, or `limit` bytes without LF."""
        while True:
            i = self.buf.find(b"\n", self.scanned, limit)
            if i >= 0:
                return self._take(i + 1)
            if len(self.buf) >= limit:
                return self._take(limit)
            self.scanned = len(self.buf)
            self._fill()

    def read_exact(self, n, sink):
        """Pass exactly n bytes to sink.write (or drop them if sink is None)."""
        while n:
            if not self.buf:
                self._fill()
            chunk = self._take(min(n, len(self.buf)))
            n -= len(chunk)
            if sink is not None:
                sink.write(chunk)

    def read_data(self, sink):
        """Read a DATA body up to CRLF.CRLF, dot-unstuffed, into sink.write.

        Works on whole buffers: only a dot at the start of a line (after
        CRLF, or at the start of the message) is special.
        """
        at_line_start = True
        while True:
            if not self.buf:
                self._fill()
            if at_line_start and self.buf[:1] == b".":
                if self.buf[:3] == b".\r\n":
                    self._take(3)
                    return
                if len(self.buf) < 3 and b".\r\n".startswith(self.buf):
                    self._fill()            # could still be the final dot
                    continue
                self._take(1)               # the stuffed dot
            at_line_start = False
            i = self.buf.find(b"\r\n.")
            if i >= 0:
                sink.write(self._take(i + 2))
                at_line_start = True
                continue
            # Keep a trailing CR or CRLF: it may precede a line-start dot.
            keep = 2 if self.buf.endswith(b"\r\n") else 1 if self.buf.endswith(b"\r") else 0
            if len(self.buf) > keep:
                sink.write(self._take(len(self.buf) - keep))
            else:
                self._fill()


# ---------------------------------------------------------------------------
# One SMTP connection

class Session:
    def __init__(self, server, sock, peer, conn):
        self.server = server
        self.cfg = server.cfg
        self.sock = sock
        self.peer = peer[0]
        self.conn = conn
        self.reader = Reader(sock, self.flush)
        self.out = []               # queued reply bytes
        self.huge = 0               # filler lines for the next reply
        self.drop_at = server.drop_point()
        self.events = 0
        self.tls_version = None
        self.stored_here = 0        # messages stored on this connection
        self.ehlo_name = None
        self.esmtp = False
        self.auth_user = None
        self.body = None
        self.body_seq = 0
        self.reset_transaction()
        self.handlers = {
            "EHLO": self.cmd_ehlo, "HELO": self.cmd_ehlo,
            "STARTTLS": self.cmd_starttls, "AUTH": self.cmd_auth,
            "MAIL": self.cmd_mail, "RCPT": self.cmd_rcpt, "DATA": self.cmd_data,
            "BDAT": self.cmd_bdat, "RSET": self.cmd_rset, "NOOP": self.cmd_noop,
            "VRFY": self.cmd_vrfy, "QUIT": self.cmd_quit,
        }

    # -- plumbing -----------------------------------------------------------

    def log(self, text):
        self.server.log(self.conn, text)

    def reply(self, code, *lines):
        lines = list(lines)
        if self.huge:
            # Filler lines after the first one, which keeps the real text.
            filler = [f"X-FILLER-{i:06d} " + "x" * 60 for i in range(self.huge)]
            lines[1:1] = filler
            self.huge = 0
        for i, text in enumerate(lines):
            line = f"{code}{'-' if i < len(lines) - 1 else ' '}{text}"
            self.log(f"S {line}")
            self.out.append(line.encode() + b"\r\n")

    def send_raw(self, data):
        self.log("S " + data.decode("latin-1").encode("unicode_escape").decode())
        self.out.append(data)

    def flush(self):
        if self.out:
            data = b"".join(self.out)
            self.out = []
            self.sock.sendall(data)

    def pause(self, seconds):
        self.flush()
        time.sleep(seconds)

    def tick(self):
        """Count a command or data-end for --random-drop."""
        self.events += 1
        if self.events == self.drop_at:
            self.log("DROP")
            raise Hangup()

    def pick(self, event, subject):
        rule = self.server.pick(event, subject)
        if rule is not None:
            self.log(f"RULE {rule.index} {event}")
        return rule

    def send_rule_reply(self, rule):
        if rule.raw is not None:
            self.send_raw(rule.raw)
        else:
            self.huge = rule.huge
            self.reply(rule.reply[0], *rule.reply[1])

    def fire(self, event, subject):
        """Apply the first active rule for `event`.

        Returns True when the rule's reply replaced the command, which then
        has no effect.  Raises Hangup when the rule drops the connection.
        """
        rule = self.pick(event, subject)
        if rule is None:
            return False
        if rule.delay:
            self.pause(rule.delay)
        if rule.tls_alert:
            self.tls_alert()
        if rule.replies:
            self.send_rule_reply(rule)
        if rule.close:
            raise Hangup()
        if not rule.replies:
            self.huge = rule.huge   # for the command's normal reply
        return rule.replies

    def tls_alert(self):
        self.flush()
        if isinstance(self.sock, ssl.SSLSocket):
            # Bypass the TLS layer: write the bogus record on the TCP socket.
            socket.socket.send(self.sock, TLS_ALERT)
        raise Hangup()

    def half_close(self, graceful):
        """Send what is queued, then end the server's side of the stream."""
        try:
            self.flush()
            if graceful and isinstance(self.sock, ssl.SSLSocket):
                self.sock.settimeout(0)
                try:
                    self.sock.unwrap()      # sends close_notify, does not wait
                except ssl.SSLWantReadError:
                    pass
            socket.socket.shutdown(self.sock, socket.SHUT_WR)
        except OSError:
            pass

    def linger_close(self):
        """Drain unread input for a moment, then close.

        Closing with unread data would send a reset, which can destroy the
        last reply before the client reads it.
        """
        try:
            deadline = time.monotonic() + LINGER
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                if not socket.socket.recv(self.sock, RECV_SIZE):
                    break
        except OSError:
            pass
        finally:
            self.sock.close()

    def start_tls(self):
        self.flush()
        self.sock = self.server.ssl_ctx.wrap_socket(
            self.sock, server_side=True, do_handshake_on_connect=False)
        self.reader.sock = self.sock
        try:
            self.sock.do_handshake()
        except (OSError, ssl.SSLError) as e:
            self.log(f"TLS-FAILED {e}")
            raise
        self.tls_version = self.sock.version().replace("TLSv", "TLS")
        self.log(f"TLS {self.tls_version}")

    def reset_transaction(self):
        self.mail_from = None
        self.mail_options = []
        self.rcpts = []             # [(address, options)]
        self.smtputf8 = False
        self.binarymime = False
        if self.body is not None:
            self.body.discard()
            self.body = None

    def new_body(self):
        self.body_seq += 1
        path = os.path.join(self.cfg.maildir, f".incoming-{self.conn}-{self.body_seq}")
        return Body(path, self.cfg.size)

    def capabilities(self):
        caps = [f"SIZE {self.cfg.size}" if self.cfg.size else "SIZE"]
        if self.cfg.eightbitmime:
            caps.append("8BITMIME")
        if self.cfg.tls == "starttls" and not self.tls_version:
            caps.append("STARTTLS")
        elif self.cfg.user:
            caps.append("AUTH " + " ".join(self.cfg.auth_mechs))
        caps.append("ENHANCEDSTATUSCODES")
        if self.cfg.pipelining:
            caps.append("PIPELINING")
        if self.cfg.chunking:
            caps.append("CHUNKING")
        if self.cfg.smtputf8:
            caps.append("SMTPUTF8")
        return caps

    # -- main loop ----------------------------------------------------------

    def run(self):
        graceful = False
        self.log("CONNECT")
        try:
            if self.cfg.tls == "implicit":
                self.start_tls()
            if not self.fire("connect", self.peer.encode()):
                self.reply("220", f"{HOSTNAME} ESMTP outbox-test-smtpd - gsmtp")
            while True:
                self.handle_command()
        except Quit:
            graceful = True
        except (Hangup, Disconnected):
            pass
        except OSError as e:    # resets, timeouts, TLS errors
            print(f"smtpd: connection {self.conn}: {e!r}", file=sys.stderr, flush=True)
        except Exception:
            print(f"smtpd: connection {self.conn}: unexpected error", file=sys.stderr)
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            self.reset_transaction()
            self.half_close(graceful)
            self.log("DISCONNECT")
            self.linger_close()

    def handle_command(self):
        # Replies stay queued until the server would block on input.  So
        # without PIPELINING, input already waiting while the reply to the
        # previous command is still queued was sent before the client could
        # have seen that reply.
        early = not self.cfg.pipelining and self.out and self.reader.pending() > 0
        raw = self.reader.readline(MAX_LINE + 2)
        if not raw.endswith(b"\n"):
            self.log(f"C <line longer than {MAX_LINE} bytes>")
            while not self.reader.readline(MAX_LINE).endswith(b"\n"):
                pass
            self.reply("500", "5.5.2 Line too long.")
            return
        text = raw.decode("utf-8", "replace")
        if not raw.endswith(b"\r\n"):
            self.log(f"C {text[:-1]}")
            self.reply("500", "5.5.2 Bare LF in command line.")
            return
        line = raw[:-2]
        text = text[:-2]
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        self.log("C " + (redact_auth(arg) if verb == "AUTH" else text))
        self.tick()
        try:
            if early:
                raise Refuse("503", "5.5.0 Improper use of SMTP command pipelining")
            event = VERB_EVENTS.get(verb)
            if event and self.fire(event, line):
                return
            handler = self.handlers.get(verb)
            if handler is None or (verb == "BDAT" and not (self.cfg.chunking and self.esmtp)):
                raise Refuse("502", "5.5.1 Unrecognized command.")
            handler(verb, arg, line)
        except Refuse as r:
            self.reply(r.code, r.text)

    # -- commands -----------------------------------------------------------

    def cmd_ehlo(self, verb, arg, line):
        name = arg.strip()
        if not name:
            raise Refuse("501", f"5.5.4 Empty {verb} argument not allowed.")
        if self.cfg.gmail_ehlo and name.lower() == "localhost":
            self.reply("421", f"4.7.0 Try again later, closing connection. ({verb})")
            raise Hangup()
        self.reset_transaction()
        self.ehlo_name = name
        self.esmtp = verb == "EHLO"
        if self.esmtp:
            self.reply("250", f"{HOSTNAME} at your service, [{self.peer}]", *self.capabilities())
        else:
            self.reply("250", f"{HOSTNAME} at your service")

    def cmd_starttls(self, verb, arg, line):
        if self.cfg.tls != "starttls" or self.tls_version:
            raise Refuse("502", "5.5.1 Unrecognized command.")
        if not self.ehlo_name:
            raise Refuse("503", "5.5.1 EHLO/HELO first.")
        if arg.strip():
            raise Refuse("501", "5.5.4 Syntax error, no parameters allowed.")
        self.reply("220", "2.0.0 Ready to start TLS")
        # RFC 3207: plaintext pipelined after STARTTLS is never executed.
        discarded = self.reader.discard()
        if discarded:
            self.log(f"STARTTLS-DISCARDED {discarded}")
        self.start_tls()
        self.ehlo_name = None
        self.esmtp = False
        self.reset_transaction()

    def cmd_auth(self, verb, arg, line):
        if not self.ehlo_name:
            raise Refuse("503", "5.5.1 EHLO/HELO first.")
        if not self.cfg.user or not self.esmtp:
            raise Refuse("502", "5.5.1 Unrecognized command.")
        if self.cfg.tls == "starttls" and not self.tls_version:
            raise Refuse("530", "5.7.0 Must issue a STARTTLS command first.")
        if self.auth_user:
            raise Refuse("503", "5.5.1 Already authenticated.")
        if self.mail_from is not None:
            raise Refuse("503", "5.5.1 AUTH not permitted during a mail transaction.")
        mech, _, initial = arg.strip().partition(" ")
        mech = mech.upper()
        authzid = b""
        if mech not in self.cfg.auth_mechs:
            raise Refuse("504", "5.7.4 Unrecognized authentication type.")
        if mech == "XOAUTH2":
            # https://developers.google.com/gmail/imap/xoauth2-protocol: the
            # password given to the server is the access token here.
            fields = self.auth_decode(initial or self.challenge("")).split(b"\x01")
            user = fields[0][5:] if fields[0].startswith(b"user=") else b""
            token = fields[1][12:] if len(fields) > 1 and fields[1].startswith(b"auth=Bearer ") else b""
            if user == self.cfg.user.encode() and token == self.cfg.password.encode():
                self.auth_user = self.cfg.user
                self.server.count("auths")
                self.reply("235", "2.7.0 Accepted")
                return
            self.server.count("auth_failures")
            # Gmail: a 334 with a JSON error, then 535 after the client's empty line.
            self.challenge(base64.b64encode(b'{"status":"400","schemes":"Bearer"}').decode())
            raise Refuse("535", "5.7.8 Username and Password not accepted.")
        if mech == "PLAIN":
            fields = self.auth_decode(initial or self.challenge("")).split(b"\0")
            if len(fields) != 3:
                raise Refuse("501", "5.5.2 Cannot Decode response.")
            authzid, user, password = fields
        elif mech == "LOGIN":
            user = self.auth_decode(initial or self.challenge("VXNlcm5hbWU6"))
            password = self.auth_decode(self.challenge("UGFzc3dvcmQ6"))
        else:
            raise Refuse("504", "5.7.4 Unrecognized authentication type.")
        want_user = self.cfg.user.encode()
        if user == want_user and password == self.cfg.password.encode() \
                and authzid in (b"", want_user):
            self.auth_user = self.cfg.user
            self.server.count("auths")
            self.reply("235", "2.7.0 Accepted")
        else:
            self.server.count("auth_failures")
            raise Refuse("535", "5.7.8 Username and Password not accepted.")

    def challenge(self, prompt):
        self.reply("334", prompt)
        raw = self.reader.readline(MAX_LINE + 2)
        self.log("C <redacted>")
        if not raw.endswith(b"\r\n"):
            raise Refuse("501", "5.5.2 Cannot Decode response.")
        if raw == b"*\r\n":
            raise Refuse("501", "5.0.0 Authentication cancelled.")
        return raw[:-2].decode("ascii", "replace")

    @staticmethod
    def auth_decode(text):
        if text == "=":         # RFC 4954: an empty initial response
            return b""
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error:
            raise Refuse("501", "5.5.2 Cannot Decode response.") from None

    def require_ready(self):
        if not self.ehlo_name:
            raise Refuse("503", "5.5.1 EHLO/HELO first.")
        if self.cfg.tls == "starttls" and not self.tls_version:
            raise Refuse("530", "5.7.0 Must issue a STARTTLS command first.")
        if self.cfg.user and not self.auth_user:
            raise Refuse("530", "5.7.0 Authentication Required.")

    def transaction_error(self):
        """The refusal for DATA/BDAT outside a transaction with recipients."""
        if self.mail_from is None:
            return Refuse("503", "5.5.1 MAIL first.")
        if not self.rcpts:
            return Refuse("503", "5.5.1 RCPT first.")
        return None

    def parse_path(self, regex, arg, null_ok):
        m = regex.fullmatch(arg)
        if not m or (m.group(2) and not m.group(2)[0].isspace()):
            raise Refuse("501", "5.5.2 Syntax error.")
        addr, params = m.group(1), m.group(2).split()
        if not (addr == "" and null_ok) and "@" not in addr and addr.lower() != "postmaster":
            raise Refuse("553", "5.1.3 Bad address syntax.")
        if params and not self.esmtp:
            raise Refuse("555", "5.5.4 Parameters need EHLO.")
        return addr, params

    def cmd_mail(self, verb, arg, line):
        self.require_ready()
        if self.mail_from is not None:
            raise Refuse("503", "5.5.1 Nested MAIL command.")
        if self.cfg.conn_messages and self.stored_here >= self.cfg.conn_messages:
            # A server's limit of messages per connection, said as Gmail says it.
            self.reply("421", "4.7.0 Try again later, closing connection. (MAIL)")
            raise Hangup()
        addr, params = self.parse_path(MAIL_RE, arg, null_ok=True)
        smtputf8 = binarymime = False
        for param in params:
            key, _, value = param.partition("=")
            key, value = key.upper(), value.upper()
            if key == "SIZE":
                if not value.isdigit():
                    raise Refuse("501", "5.5.4 Invalid SIZE parameter.")
                if self.cfg.size and int(value) > self.cfg.size:
                    raise Refuse("552", "5.3.4 Message size exceeds fixed maximum message size")
            elif key == "BODY":
                if value == "8BITMIME" and not self.cfg.eightbitmime \
                        or value == "BINARYMIME" and not self.cfg.chunking:
                    raise Refuse("555", f"5.5.4 Unsupported parameter {param}")
                if value not in ("7BIT", "8BITMIME", "BINARYMIME"):
                    raise Refuse("501", "5.5.4 Invalid BODY parameter.")
                binarymime = value == "BINARYMIME"
            elif key == "SMTPUTF8" and not value and self.cfg.smtputf8:
                smtputf8 = True
            elif key == "AUTH" and value and self.cfg.user:
                pass
            else:
                raise Refuse("555", f"5.5.4 Unsupported parameter {param}")
        if not addr.isascii() and not smtputf8:
            raise Refuse("553", "5.6.7 Non-ASCII addresses need SMTPUTF8.")
        self.mail_from = addr
        self.mail_options = params
        self.smtputf8 = smtputf8
        self.binarymime = binarymime
        self.reply("250", "2.1.0 OK")

    def cmd_rcpt(self, verb, arg, line):
        if self.mail_from is None:
            raise Refuse("503", "5.5.1 MAIL first.")
        addr, params = self.parse_path(RCPT_RE, arg, null_ok=False)
        if params:
            raise Refuse("555", f"5.5.4 Unsupported parameter {params[0]}")
        if not addr.isascii() and not self.smtputf8:
            raise Refuse("553", "5.6.7 Non-ASCII addresses need SMTPUTF8.")
        if len(self.rcpts) >= self.cfg.max_rcpt:
            raise Refuse("452", "4.5.3 Your message has too many recipients.")
        self.rcpts.append((addr, params))
        self.reply("250", "2.1.5 OK")

    def cmd_data(self, verb, arg, line):
        error = self.transaction_error()
        if error:
            raise error
        if self.body is not None:
            raise Refuse("503", "5.5.1 DATA not allowed after BDAT.")
        if self.binarymime:
            raise Refuse("503", "5.5.1 BODY=BINARYMIME needs BDAT.")
        self.reply("354", "Go ahead")
        self.body = self.new_body()
        self.reader.read_data(self.body)
        self.end_of_message("DATA")

    def cmd_bdat(self, verb, arg, line):
        m = BDAT_RE.fullmatch(arg.strip())
        if not m:
            raise Refuse("501", "5.5.4 Syntax error in BDAT parameters.")
        size, last = int(m.group(1)), bool(m.group(2))
        # The chunk is always consumed, even when the command is refused.
        error = self.transaction_error()
        if error is None and self.body is None:
            self.body = self.new_body()
        self.reader.read_exact(size, None if error else self.body)
        if self.fire("bdat", line):
            self.reset_transaction()
            return
        if error:
            raise error
        if self.body.too_big:
            self.reset_transaction()
            raise Refuse("552", "5.3.4 Message size exceeds fixed maximum message size")
        if last:
            self.end_of_message("BDAT")
        else:
            self.reply("250", f"2.0.0 {size} octets received")

    def end_of_message(self, via):
        """The final dot or last BDAT chunk: accept, reject or fail."""
        self.body.finish()
        self.tick()
        rule = self.pick("data-end", self.body.contains)
        store = True
        reply = None            # (code, text) replacing the normal 250
        if rule and rule.replies:
            first = rule.raw if rule.raw is not None else rule.reply[0].encode()
            store = first.startswith(b"2")
        elif rule and (rule.close or rule.tls_alert):
            store = False
        elif self.body.too_big:
            store, reply = False, ("552", "5.3.4 Message size exceeds fixed maximum message size")
        elif self.server.chance(self.cfg.random_defer):
            store, reply = False, ("451", "4.3.0 Try again later")
        if rule and rule.store is not None and not self.body.too_big:
            store = rule.store
        name = self.commit(via) if store else "unstored"
        self.reset_transaction()
        if rule and rule.delay:
            self.pause(rule.delay)
        if rule and rule.tls_alert:
            self.tls_alert()
        if rule and rule.replies:
            self.send_rule_reply(rule)
        elif not (rule and rule.close):
            self.huge = rule.huge if rule else 0
            self.reply(*(reply or ("250", f"2.0.0 OK {name} - gsmtp")))
        if rule and rule.close:
            raise Hangup()

    def commit(self, via):
        meta = {
            "mail_from": self.mail_from,
            "rcpt_tos": [addr for addr, _ in self.rcpts],
            "mail_options": self.mail_options,
            "rcpt_options": [opts for _, opts in self.rcpts],
            "auth_user": self.auth_user,
            "ehlo": self.ehlo_name,
            "tls": self.tls_version,
            "via": via,
            "connection": self.conn,
        }
        name = self.server.store(self.body, meta)
        self.stored_here += 1
        self.body = None
        self.log(f"STORED {name}")
        return name

    def cmd_rset(self, verb, arg, line):
        self.reset_transaction()
        self.reply("250", "2.1.5 Flushed")

    def cmd_noop(self, verb, arg, line):
        self.reply("250", "2.0.0 OK")

    def cmd_vrfy(self, verb, arg, line):
        self.reply("252", "2.1.5 Send some mail, I'll try my best")

    def cmd_quit(self, verb, arg, line):
        self.reply("221", "2.0.0 closing connection")
        raise Quit()


def redact_auth(arg):
    """The AUTH command for the log, without its initial response."""
    mech, _, initial = arg.strip().partition(" ")
    return f"AUTH {mech} <redacted>" if initial else f"AUTH {mech}"


# ---------------------------------------------------------------------------
# Command line

def loopback(text):
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text}") from None
    if not addr.is_loopback:
        raise argparse.ArgumentTypeError(f"not a loopback address: {text}")
    return str(addr)


def probability(text):
    p = float(text)
    if not 0 <= p <= 1:
        raise argparse.ArgumentTypeError("a probability is between 0 and 1")
    return p


def serve(args):
    if args.user is not None and args.password is None:
        sys.exit("smtpd: --user needs --password")
    if args.tls != "none" and not args.cert_dir:
        sys.exit("smtpd: --cert-dir is needed unless --tls none")
    try:
        server = Server(args)
    except (OSError, ValueError) as e:
        sys.exit(f"smtpd: {e}")
    family = socket.AF_INET6 if ":" in args.listen else socket.AF_INET
    lsock = socket.socket(family, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((args.listen, args.port))
    lsock.listen(128)
    port = lsock.getsockname()[1]
    if args.port_file:
        write_file(args.port_file, f"{port}\n".encode())

    def stop(signum, frame):
        # A second signal must not interrupt the shutdown itself.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise Shutdown()

    try:
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        print(f"READY {port}", flush=True)
        while True:
            sock, peer = lsock.accept()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(args.timeout)
            session = Session(server, sock, peer, server.new_connection())
            threading.Thread(target=session.run, daemon=True).start()
    except Shutdown:
        pass
    server.finish()
    sys.stdout.flush()
    sys.stderr.flush()
    # Connection threads may be blocked anywhere: leave without unwinding them.
    os._exit(0)


def main():
    parser = argparse.ArgumentParser(description="Scriptable SMTP test server.")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("gen-certs", help="make a throwaway CA and server certificate")
    g.add_argument("dir")
    g.add_argument("--expired", action="store_true", help="server certificate has expired")
    g.add_argument("--wrong-name", action="store_true", help="certificate only names wrong.example")
    g.add_argument("--self-signed", action="store_true", help="server certificate not from the CA")
    g.add_argument("--weak-key", action="store_true", help="1024-bit RSA server key")
    g.add_argument("--intermediate", action="store_true",
                   help="server certificate issued by an intermediate CA it sends along")

    s = sub.add_parser("serve", help="run the SMTP server")
    s.add_argument("--cert-dir", help="from gen-certs (not needed with --tls none)")
    s.add_argument("--maildir", required=True)
    s.add_argument("--listen", type=loopback, default="127.0.0.1")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--port-file")
    s.add_argument("--tls", choices=("implicit", "starttls", "none"), default="implicit")
    s.add_argument("--tls-max", choices=("1.2", "1.3"), default="1.3")
    s.add_argument("--conn-messages", type=int, default=0,
                   help="after N messages in a connection, MAIL gets 421 and the connection closes")
    s.add_argument("--user")
    s.add_argument("--password")
    s.add_argument("--auth-mechs", type=lambda v: v.upper().split(), default=["PLAIN", "LOGIN"],
                   help='mechanisms offered, e.g. "LOGIN" or "XOAUTH2" (default "PLAIN LOGIN")')
    s.add_argument("--no-pipelining", dest="pipelining", action="store_false")
    s.add_argument("--no-chunking", dest="chunking", action="store_false")
    s.add_argument("--no-8bitmime", dest="eightbitmime", action="store_false")
    s.add_argument("--no-smtputf8", dest="smtputf8", action="store_false")
    s.add_argument("--size", type=int, default=GMAIL_SIZE, help="0: no limit")
    s.add_argument("--gmail-ehlo", action="store_true")
    s.add_argument("--max-rcpt", type=int, default=100)
    s.add_argument("--script")
    s.add_argument("--random-defer", type=probability, default=0.0)
    s.add_argument("--random-drop", type=probability, default=0.0)
    s.add_argument("--seed", type=int)
    s.add_argument("--timeout", type=float, default=300.0,
                   help="seconds of client silence before dropping it")
    s.add_argument("--log")
    s.add_argument("--stats")

    args = parser.parse_args()
    if args.command == "gen-certs":
        gen_certs(args)
    else:
        serve(args)


if __name__ == "__main__":
    main()
