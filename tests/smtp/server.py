#!/usr/bin/env python3
"""A real SMTP server on 127.0.0.1 for tests/delivery.rs and bench/delivery.sh (aiosmtpd).

Every message accepted is written whole to DIR (one file per message, through a rename), so a
test judges delivery by what the server received. Recipients starting with "reject" get
550 (a permanent failure); "busy" gets 451 (a temporary one). Prints "ready PORT" once
listening; stops on SIGTERM. With --cert/--key it offers STARTTLS and, with --user/--password,
requires AUTH (PLAIN or LOGIN) after it, refusing a wrong password with 535. With --busy-file,
every recipient gets 451 while that file exists (a burst of temporary failures, for
bench/faults.py); without it, or while the file is absent, nothing changes.

    server.py --port 2525 --dir /tmp/mail [--cert C --key K --user U --password P] [--busy-file F]
"""
import argparse
import os
import signal
import ssl
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Mailbox:
    def __init__(self, directory, busy_file=None):
        self.dir = directory
        self.busy_file = busy_file
        self.n = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.busy_file and os.path.exists(self.busy_file):
            return "451 4.3.0 try again later"
        local = address.lower()
        if local.startswith("reject"):
            # Quoting the address, as Postfix does: the service must not log or keep it.
            return f"550 5.1.1 <{address}>: Recipient address rejected: mailbox unavailable"
        if local.startswith("busy"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.n += 1
            n = self.n
        name = f"{time.time_ns()}-{os.getpid()}-{n}.eml"
        tmp = os.path.join(self.dir, "." + name)
        with open(tmp, "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(self.dir, name))
        return "250 2.0.0 queued as " + name


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--busy-file", help="while this file exists, every RCPT gets 451")
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    options = {}
    if a.cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(a.cert, a.key)
        options.update(tls_context=tls, require_starttls=True)
    if a.user:
        def check(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == a.user and auth_data.password.decode() == a.password
            # handled=False: aiosmtpd answers 535 itself when the password is wrong.
            return AuthResult(success=ok, handled=False)
        options.update(authenticator=check, auth_required=True, auth_require_tls=True)
    controller = Controller(Mailbox(a.dir, a.busy_file), hostname="127.0.0.1", port=a.port, data_size_limit=10 * 1024 * 1024, **options)
    controller.start()
    print(f"ready {a.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
