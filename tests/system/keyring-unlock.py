#!/usr/bin/python3
# Unlocks the user's login keyring the way pam_gnome_keyring does at login:
# the password (standard input) goes to gnome-keyring-daemon's control socket,
# $XDG_RUNTIME_DIR/keyring/control (socket-activated by the user manager).
# Exit 0 when the daemon answers OK.
#
# Protocol (gnome-keyring daemon/control): one credentials byte, then a
# packet: uint32 length (of the whole packet), uint32 operation (1 = unlock),
# the password as uint32 length + bytes; the reply is uint32 length (8) and
# uint32 result (0 = OK, 1 = denied, 2 = failed, 3 = no daemon). Big-endian.
import os
import socket
import struct
import sys

OP_UNLOCK = 1
RESULTS = {0: "ok", 1: "denied", 2: "failed", 3: "no daemon"}

password = sys.stdin.buffer.read()
path = os.path.join(os.environ["XDG_RUNTIME_DIR"], "keyring", "control")
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
    s.settimeout(10)
    s.connect(path)
    s.sendall(b"\0")
    body = struct.pack(">II", OP_UNLOCK, len(password)) + password
    s.sendall(struct.pack(">I", 4 + len(body)) + body)
    reply = b""
    while len(reply) < 8:
        chunk = s.recv(8 - len(reply))
        if not chunk:
            break
        reply += chunk
if len(reply) != 8:
    print(f"keyring-unlock: short reply from {path}", file=sys.stderr)
    sys.exit(1)
_, result = struct.unpack(">II", reply)
if result != 0:
    print(f"keyring-unlock: {RESULTS.get(result, result)}", file=sys.stderr)
    sys.exit(1)
