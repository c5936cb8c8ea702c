#!/usr/bin/python3
"""Self-test of smtpd.py: starts servers in a temporary directory and talks
to them with smtplib/ssl.  Prints one line per check; exits nonzero if any
check fails."""

import base64
import glob
import json
import os
import select
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SMTPD = os.path.join(HERE, "smtpd.py")
PYTHON = "/usr/bin/python3"
USER, PASSWORD = "tester@example.com", "s3cret pass"


class Server:
    """smtpd.py serve as a subprocess; stop() checks it exits 0 on SIGTERM."""

    def __init__(self, tmp, name, cert_dir, *options, script=None):
        self.dir = os.path.join(tmp, "server-" + name)
        self.maildir = os.path.join(self.dir, "mail")
        self.log = os.path.join(self.dir, "log")
        self.stats = os.path.join(self.dir, "stats.json")
        os.makedirs(self.dir)
        cmd = [PYTHON, SMTPD, "serve", "--cert-dir", cert_dir, "--maildir", self.maildir,
               "--log", self.log, "--stats", self.stats, *options]
        if script is not None:
            path = os.path.join(self.dir, "script.json")
            with open(path, "w") as f:
                json.dump(script, f)
            cmd += ["--script", path]
        self.stderr = open(os.path.join(self.dir, "stderr"), "w+")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr)
        self.port = None

    def wait_ready(self):
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("READY "):
            self.stderr.seek(0)
            raise RuntimeError(f"server did not start: {line!r} {self.stderr.read()}")
        self.port = int(line.split()[1])
        return self

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10)

    def messages(self):
        """[(eml bytes, json dict)] in arrival order."""
        out = []
        for eml in sorted(glob.glob(os.path.join(self.maildir, "*.eml"))):
            with open(eml, "rb") as f, open(eml[:-4] + ".json") as j:
                out.append((f.read(), json.load(j)))
        return out


def client_context(cert_dir):
    return ssl.create_default_context(cafile=os.path.join(cert_dir, "ca.pem"))


def smtp_ssl(server, cert_dir, helo="client.example"):
    return smtplib.SMTP_SSL("localhost", server.port, local_hostname=helo,
                            context=client_context(cert_dir), timeout=10)


class Raw:
    """A bare TLS connection, for exact control over what is sent."""

    def __init__(self, server, cert_dir):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.sock = client_context(cert_dir).wrap_socket(sock, server_hostname="localhost")
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        """One reply as (code, [lines])."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    raise EOFError(f"connection closed after {lines}")
                self.buf += data
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line[4:].decode())
            if line[3:4] != b"-":
                return int(line[:3]), lines

    def codes(self, n):
        return [self.reply()[0] for _ in range(n)]

    def login(self):
        self.reply()
        self.send(b"EHLO raw.example\r\n")
        self.reply()
        token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())
        self.send(b"AUTH PLAIN " + token + b"\r\n")
        assert self.reply()[0] == 235

    def close(self):
        self.sock.close()


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def expect_refused(exc_type, code, call, *args):
    try:
        call(*args)
    except exc_type as e:
        expect(e.smtp_code == code, f"got {e.smtp_code} {e}, want {code}")
        return e
    raise AssertionError(f"no {exc_type.__name__}")


# ---------------------------------------------------------------------------
# Checks.  Each gets a context dict and raises on failure.

def check_plain_dot(ctx):
    """implicit TLS + AUTH PLAIN, message with leading-dot lines is byte-exact"""
    srv, certs = ctx["main"], ctx["certs"]
    msg = b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\n \r\nend\r\n"
    with smtp_ssl(srv, certs) as s:
        s.login(USER, PASSWORD)
        s.sendmail("from@example.com", ["to1@example.net", "to2@example.net"], msg)
    eml, meta = srv.messages()[-1]
    expect(eml == msg, f"eml differs: {eml!r}")
    expect(meta["auth_user"] == USER and meta["tls"] in ("TLS1.2", "TLS1.3")
           and meta["via"] == "DATA" and meta["ehlo"] == "client.example"
           and meta["mail_from"] == "from@example.com"
           and meta["rcpt_tos"] == ["to1@example.net", "to2@example.net"]
           and meta["rcpt_options"] == [[], []], f"json: {meta}")


def check_auth_login(ctx):
    """AUTH LOGIN, with and without initial response"""
    for initial in (True, False):
        with smtp_ssl(ctx["main"], ctx["certs"]) as s:
            s.ehlo()
            s.user, s.password = USER, PASSWORD     # what s.auth_login() sends
            code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=initial)
            expect(code == 235, f"AUTH LOGIN gave {code}")


def check_wrong_password(ctx):
    """wrong password gives 535 5.7.8, MAIL without AUTH gives 530"""
    with smtp_ssl(ctx["main"], ctx["certs"]) as s:
        e = expect_refused(smtplib.SMTPAuthenticationError, 535, s.login, USER, "wrong")
        expect(e.smtp_error == b"5.7.8 Username and Password not accepted.", e.smtp_error)
        code, text = s.mail("x@example.com")
        expect(code == 530, f"MAIL without AUTH gave {code} {text}")


def check_pipelining(ctx):
    """pipelined MAIL/RCPT/DATA answered in order; 4th RCPT over --max-rcpt gets 452"""
    srv = ctx["main"]
    raw = Raw(srv, ctx["certs"])
    raw.login()
    raw.send(b"MAIL FROM:<p@example.com> BODY=8BITMIME\r\nRCPT TO:<a@x.example>\r\n"
             b"RCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\nRCPT TO:<d@x.example>\r\n"
             b"DATA\r\n")
    codes = raw.codes(6)
    expect(codes == [250, 250, 250, 250, 452, 354], f"replies {codes}")
    body = "Subject: pipe\r\n\r\nh\u00e9llo\r\n".encode()
    raw.send(body + b".\r\nNOOP\r\nQUIT\r\n")
    codes = raw.codes(3)
    expect(codes == [250, 250, 221], f"replies {codes}")
    raw.close()
    eml, meta = srv.messages()[-1]
    expect(eml == body and meta["eight_bit"] and meta["mail_options"] == ["BODY=8BITMIME"]
           and len(meta["rcpt_tos"]) == 3, f"{eml!r} {meta}")


def check_bdat(ctx):
    """BDAT in 2 pipelined chunks with LAST is byte-exact"""
    srv = ctx["main"]
    raw = Raw(srv, ctx["certs"])
    raw.login()
    chunk1 = b"Subject: bdat\r\n\r\n.dot\r\n.\r\nbare\nLF"
    chunk2 = b"\x00\xff binary\r\n"
    raw.send(b"MAIL FROM:<> BODY=BINARYMIME\r\nRCPT TO:<r@x.example>\r\n"
             + b"BDAT %d\r\n" % len(chunk1) + chunk1
             + b"BDAT %d LAST\r\n" % len(chunk2) + chunk2 + b"QUIT\r\n")
    replies = [raw.reply() for _ in range(5)]
    codes = [code for code, _ in replies]
    expect(codes == [250, 250, 250, 250, 221], f"replies {replies}")
    raw.close()
    eml, meta = srv.messages()[-1]
    expect(eml == chunk1 + chunk2, f"eml differs: {eml!r}")
    expect(meta["via"] == "BDAT" and meta["mail_from"] == "", f"json: {meta}")


def check_size(ctx):
    """MAIL SIZE= over --size gives 552 5.3.4"""
    with smtp_ssl(ctx["main"], ctx["certs"]) as s:
        s.login(USER, PASSWORD)
        code, text = s.mail("x@example.com", ["SIZE=2000000"])
        expect(code == 552 and text.startswith(b"5.3.4"), f"{code} {text}")


def check_scripted_defer(ctx):
    """scripted data-end 451, then the same message is accepted"""
    srv = ctx["main"]
    before = len(srv.messages())
    msg = b"Subject: defer\r\nX-Defer-Once: yes\r\n\r\nbody\r\n"
    with smtp_ssl(srv, ctx["certs"]) as s:
        s.login(USER, PASSWORD)
        e = expect_refused(smtplib.SMTPDataError, 451,
                           s.sendmail, "a@example.com", ["b@x.example"], msg)
        expect(b"scripted" in e.smtp_error, e.smtp_error)
        s.sendmail("a@example.com", ["b@x.example"], msg)
    stored = srv.messages()[before:]
    expect([eml for eml, _ in stored] == [msg], f"stored {stored}")


def check_scripted_faults(ctx):
    """scripted huge reply, drop after the final dot, TLS alert"""
    srv = ctx["main"]
    before = len(srv.messages())
    with smtp_ssl(srv, ctx["certs"]) as s:
        s.login(USER, PASSWORD)
        code, text = s.rset()
        lines = text.split(b"\n")
        expect(code == 250 and len(lines) == 501 and lines[0] == b"2.1.5 Flushed",
               f"RSET: {code}, {len(lines)} lines")
        try:
            s.sendmail("a@example.com", ["b@x.example"], b"Subject: x\r\nX-Drop: yes\r\n\r\n")
            raise AssertionError("drop after the final dot went unnoticed")
        except smtplib.SMTPServerDisconnected:
            pass
    with smtp_ssl(srv, ctx["certs"]) as s:
        s.login(USER, PASSWORD)
        try:
            s.mail("alert@example.com")
            raise AssertionError("no TLS error")
        except smtplib.SMTPServerDisconnected as e:     # smtplib wraps the SSLError
            expect("SSL" in str(e), f"not a TLS error: {e}")
    expect(len(srv.messages()) == before, "the dropped message was stored")


def check_starttls(ctx):
    """starttls mode: 530 before STARTTLS, then TLS + AUTH + message"""
    srv, certs = ctx["starttls"], ctx["certs"]
    with smtplib.SMTP("localhost", srv.port, local_hostname="st.example", timeout=10) as s:
        s.ehlo()
        expect(s.has_extn("starttls") and not s.has_extn("auth"), f"features {s.esmtp_features}")
        code, _ = s.mail("a@example.com")
        expect(code == 530, f"MAIL before STARTTLS gave {code}")
        s.rset()
        s.starttls(context=client_context(certs))
        s.ehlo()
        expect(s.has_extn("auth") and not s.has_extn("starttls"), f"features {s.esmtp_features}")
        s.login(USER, PASSWORD)
        s.sendmail("a@example.com", ["b@x.example"], b"Subject: starttls\r\n\r\nhi\r\n")
    _, meta = srv.messages()[-1]
    expect(meta["tls"] in ("TLS1.2", "TLS1.3") and meta["ehlo"] == "st.example", f"json: {meta}")


def check_gmail_ehlo(ctx):
    """--gmail-ehlo: EHLO localhost gets 421, other names 250"""
    srv = ctx["gmail"]
    with smtp_ssl(srv, ctx["certs"], helo="localhost") as s:
        code, text = s.ehlo()
        expect(code == 421 and text == b"4.7.0 Try again later, closing connection. (EHLO)",
               f"{code} {text}")
    with smtp_ssl(srv, ctx["certs"], helo="host.example") as s:
        code, _ = s.ehlo()
        expect(code == 250, f"EHLO host.example gave {code}")


def check_bad_certs(ctx):
    """bad certificates (expired, wrong name, self-signed, weak key) fail verification"""
    for variant, srv in ctx["bad"].items():
        try:
            with smtp_ssl(srv, os.path.join(ctx["tmp"], variant)):
                pass
        except ssl.SSLCertVerificationError as e:
            print(f"#   {variant}: {e.verify_message}")
            continue
        raise AssertionError(f"{variant}: certificate accepted")


def check_log_and_stats(ctx):
    """log redacts AUTH, no password; SIGTERM exits 0 and writes stats"""
    srv = ctx["main"]
    rc = srv.stop()
    expect(rc == 0, f"exit status {rc}")
    with open(srv.log) as f:
        text = f.read()
    secret = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    expect(PASSWORD not in text and secret not in text, "password in the log")
    lines = text.splitlines()
    expect(any(line.endswith(" C AUTH PLAIN <redacted>") for line in lines), "no redacted AUTH")
    with open(srv.stats) as f:
        stats = json.load(f)
    connects = sum(line.endswith(" CONNECT") for line in lines)
    expect(stats["connections"] == connects and stats["messages"] == len(srv.messages())
           and stats["bdat_messages"] == 1 and stats["auth_failures"] >= 1, f"stats {stats}")


CHECKS = [check_plain_dot, check_auth_login, check_wrong_password, check_pipelining,
          check_bdat, check_size, check_scripted_defer, check_scripted_faults,
          check_starttls, check_gmail_ehlo, check_bad_certs, check_log_and_stats]

BAD_VARIANTS = ("expired", "wrong-name", "self-signed", "weak-key")

MAIN_SCRIPT = [
    {"on": "data-end", "match": "X-Defer-Once: yes", "reply": "451 4.3.0 scripted deferral",
     "times": 1},
    {"on": "rset", "huge": 500},
    {"on": "data-end", "match": "X-Drop: yes", "close": True},
    {"on": "mail", "match": "alert@", "tls-alert": True},
]


def main():
    started = time.monotonic()
    failed = 0
    with tempfile.TemporaryDirectory(prefix="test-smtpd-") as tmp:
        certs = os.path.join(tmp, "certs")
        gens = [subprocess.Popen([PYTHON, SMTPD, "gen-certs", certs])]
        gens += [subprocess.Popen([PYTHON, SMTPD, "gen-certs", os.path.join(tmp, v), "--" + v])
                 for v in BAD_VARIANTS]
        if any(p.wait() != 0 for p in gens):
            print("FAIL - gen-certs")
            return 1
        auth = ["--user", USER, "--password", PASSWORD]
        servers = []

        def launch(*args, **kwargs):
            servers.append(Server(tmp, *args, **kwargs))
            return servers[-1]

        try:
            ctx = {
                "tmp": tmp,
                "certs": certs,
                "main": launch("main", certs, *auth, "--max-rcpt", "3", "--size", "1000000",
                              script=MAIN_SCRIPT),
                "starttls": launch("starttls", certs, "--tls", "starttls", *auth),
                "gmail": launch("gmail", certs, "--gmail-ehlo"),
                "bad": {v: launch(v, os.path.join(tmp, v)) for v in BAD_VARIANTS},
            }
            for srv in servers:
                srv.wait_ready()
            for check in CHECKS:
                try:
                    check(ctx)
                    print(f"ok - {check.__doc__}")
                except Exception as e:
                    failed += 1
                    print(f"FAIL - {check.__doc__}: {type(e).__name__}: {e}")
        finally:
            for srv in servers:
                if srv.proc.poll() is None:
                    srv.stop()
    print(f"{len(CHECKS) - failed}/{len(CHECKS)} checks passed in "
          f"{time.monotonic() - started:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
