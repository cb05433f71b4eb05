"""Helpers shared by the step-kind, branch and cadence tests: sequences built
from step values, contacts created the real way (their creation is the
trigger), and the crons run at fixed clocks."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from freezegun import freeze_time

from .common import NOW, BehavioralCommon

EMAIL_BODY = ('<p>Hello <t t-out="object.partner_id.name"/>, '
              '<a href="https://shop.example.com/garden">see the garden</a></p>')


def email_step(subject, delay=0, unit="days", **vals):
    return dict({"step_type": "email", "subject": subject, "body_html": EMAIL_BODY,
                 "delay_value": delay, "delay_unit": unit}, **vals)


class Receiver:
    """A real HTTP server on 127.0.0.1 (random port) that records what it is
    posted and answers the status codes it is told to, in turn."""

    def __init__(self):
        self.requests = []
        self.answers = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status = receiver.answers.pop(0) if receiver.answers else 200
                payload = b'{"ok": true}' if status < 300 else b'{"error": "nope"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/shop"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class StepsCommon(BehavioralCommon):

    @classmethod
    def make_sequence(cls, name, steps, trigger_type="partner_created", start=True, **vals):
        """A sequence with these steps (in order), started at NOW."""
        sequence = cls.env["behavioral.sequence"].create(dict({
            "name": name,
            "trigger_type": trigger_type,
            "step_ids": [(0, 0, dict(step, sequence=10 * (index + 1))) for index, step in enumerate(steps)],
        }, **vals))
        if start:
            with freeze_time(NOW):
                sequence.action_start()
        return sequence

    def new_contact(self, name, at=NOW, **vals):
        """A new contact (the partner_created trigger), created at ``at``."""
        vals.setdefault("email", f"{name.split()[0].lower()}@example.com")
        with freeze_time(at):
            return self.env["res.partner"].create(dict(vals, name=name))

    def steps(self, sequence):
        return sequence.step_ids.sorted()
