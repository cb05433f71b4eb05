"""A minimal SMTP server on loopback that keeps what it receives in memory.

Enough of RFC 5321 for Odoo's smtplib client (EHLO/HELO, MAIL, RCPT, DATA,
RSET, NOOP, QUIT); no TLS, no authentication. Used by the demo to show the
emails really leaving Odoo's mail queue.
"""
import email
import email.policy
import socketserver
import threading


class _Handler(socketserver.StreamRequestHandler):
    def _reply(self, line):
        self.wfile.write((line + "\r\n").encode())

    def handle(self):
        self._reply("220 localhost behavioral_email sink")
        sender, recipients = None, []
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = line[:4].upper()
            if verb == "EHLO":
                self._reply("250-localhost")
                self._reply("250 8BITMIME")
            elif verb == "HELO":
                self._reply("250 localhost")
            elif verb == "MAIL":
                sender, recipients = line[10:].strip(), []
                self._reply("250 OK")
            elif verb == "RCPT":
                recipients.append(line[8:].strip())
                self._reply("250 OK")
            elif verb == "DATA":
                self._reply("354 End data with <CR><LF>.<CR><LF>")
                chunks = []
                while True:
                    data = self.rfile.readline()
                    if not data or data in (b".\r\n", b".\n"):
                        break
                    chunks.append(data[1:] if data.startswith(b"..") else data)
                message = email.message_from_bytes(b"".join(chunks), policy=email.policy.default)
                self.server.messages.append({"from": sender, "to": recipients, "message": message})
                self._reply("250 OK: queued")
            elif verb in ("RSET", "NOOP"):
                self._reply("250 OK")
            elif verb == "QUIT":
                self._reply("221 Bye")
                return
            else:
                self._reply("502 Command not implemented")


class SmtpSink(socketserver.ThreadingTCPServer):
    """``with SmtpSink() as sink:`` listens on 127.0.0.1 (a free port: sink.port)."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, host="127.0.0.1", port=0):
        super().__init__((host, port), _Handler)
        self.messages = []
        self.port = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()
