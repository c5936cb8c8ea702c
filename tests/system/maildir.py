#!/usr/bin/python3
# Reads the test SMTP server's maildir (tests/server/README.md) for run.sh.
#   maildir.py find DIR TEXT    numbers of the stored messages containing TEXT
#   maildir.py show DIR N       one message as key=value lines: the envelope
#                               (mail_from, rcpt_tos, auth_user), the header
#                               fields From, To, Subject, Message-ID, and
#                               received= the number of Received: fields
import email.parser
import email.policy
import json
import os
import sys


def find(directory, text):
    needle = text.encode()
    for name in sorted(os.listdir(directory)):
        if name.endswith(".eml") and not name.startswith("."):
            with open(os.path.join(directory, name), "rb") as f:
                if needle in f.read():
                    print(name[:-4])


def show(directory, number):
    with open(os.path.join(directory, number + ".json")) as f:
        env = json.load(f)
    with open(os.path.join(directory, number + ".eml"), "rb") as f:
        msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parse(f)
    print(f"mail_from={env['mail_from']}")
    print(f"rcpt_tos={','.join(env['rcpt_tos'])}")
    print(f"auth_user={env['auth_user']}")
    for name in ("From", "To", "Subject", "Message-ID"):
        value = msg.get(name)
        if value is not None:
            print(f"{name}={' '.join(str(value).split())}")
    print(f"received={len(msg.get_all('Received') or [])}")


if len(sys.argv) == 4 and sys.argv[1] == "find":
    find(sys.argv[2], sys.argv[3])
elif len(sys.argv) == 4 and sys.argv[1] == "show":
    show(sys.argv[2], sys.argv[3])
else:
    sys.exit("usage: maildir.py find DIR TEXT | show DIR N")
