"""Simulate a fortnight of shop activity on the demo database and run the sequences.

Customers leave carts, one of them orders in between, one is blocklisted,
others sign up or place orders; the crons run as the clock moves forward and
every queued email is printed. Finally Odoo's own mail queue sends them to an
SMTP server on loopback (aiosmtpd), which shows what really went out (with
headers).

Usage: python3 scripts/demo.py DATABASE   (see scripts/demo.sh)
"""
import email
import email.policy
import logging
import socket
import sys
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta

from aiosmtpd.controller import Controller
from freezegun import freeze_time

import odoo
from odoo import api
from odoo.tools import config


class Sink:
    """aiosmtpd handler that keeps every message it receives, headers decoded."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@contextmanager
def smtp_sink():
    """An SMTP server on 127.0.0.1 (a free port) while in the block:
    yields (sink, port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def queued_since(env, last_id):
    mails = env["mail.mail"].sudo().search(
        [("id", ">", last_id), ("model", "=", "behavioral.enrollment")], order="id")
    for mail in mails:
        enrollment = env["behavioral.enrollment"].browse(mail.res_id)
        print(f"    queued  to {mail.recipient_ids.email:<30} [{enrollment.sequence_id.name}] {mail.subject}")
    return max([last_id] + mails.ids)


def tick(env, at, label, last_id):
    print(f"\n{at:%Y-%m-%d %H:%M}  {label}")
    with freeze_time(at):
        env["behavioral.trigger"]._cron_detect()
        env["behavioral.trigger"]._cron_enroll()
        env["behavioral.enrollment"]._cron_advance()
    return queued_since(env, last_id)


def main(dbname, addons_path):
    config.parse_config([
        "-d", dbname, f"--addons-path={addons_path}", "--log-level=warn",
        # core modules still call deprecated werkzeug helpers: keep the output readable
        "--log-handler=py.warnings:ERROR",
    ])
    # the crons commit per batch outside tests; here the whole demo is one
    # transaction, committed at the end
    threading.current_thread().testing = True
    registry = odoo.modules.registry.Registry(dbname)
    with registry.cursor() as cr:
        env = api.Environment(cr, odoo.SUPERUSER_ID, {})
        website = env["website"].get_current_website()
        website.cart_abandoned_delay = 1.0
        sequences = env["behavioral.sequence"].search([])
        sequences.filtered(lambda s: s.state != "running").action_start()
        print("Running sequences: " + ", ".join(sequences.mapped("name")))
        products = env["product.product"].search(
            [("sale_ok", "=", True), ("is_published", "=", True), ("list_price", ">", 0)], limit=3)
        now = datetime.now().replace(second=0, microsecond=0)
        start = now - timedelta(days=16)
        last_id = max(env["mail.mail"].sudo().search([], order="id desc", limit=1).ids or [0])

        names = [("Lena Fischer", "lena.fischer@example.com"), ("Tom Baker", "tom.baker@example.com"),
                 ("Ines Duarte", "ines.duarte@example.com"), ("Yuki Sato", "yuki.sato@example.com")]
        with freeze_time(start):
            lena, tom, ines, yuki = env["res.partner"].create([{"name": n, "email": e} for n, e in names])
            env["mail.blacklist"]._add("ines.duarte@example.com")
            print(f"\n{start:%Y-%m-%d %H:%M}  4 customers sign up; Ines is on the blocklist")
            carts = {}
            for partner in (lena, tom, ines):
                carts[partner] = env["sale.order"].create({
                    "partner_id": partner.id, "website_id": website.id,
                    "order_line": [(0, 0, {"product_id": p.id, "product_uom_qty": 1}) for p in products],
                })
                print(f"    {partner.name} leaves a cart of {carts[partner].amount_total:.2f}")
            order = env["sale.order"].create({
                "partner_id": yuki.id, "website_id": website.id,
                "order_line": [(0, 0, {"product_id": products[0].id, "product_uom_qty": 2})],
            })
            order.action_confirm()
            print(f"    Yuki orders {order.name}")

        last_id = tick(env, start + timedelta(minutes=5), "crons: welcome and order series start", last_id)
        last_id = tick(env, start + timedelta(hours=1, minutes=5), "carts idle for an hour: abandoned", last_id)
        with freeze_time(start + timedelta(hours=5)):
            carts[tom].action_confirm()
            print(f"\n{start + timedelta(hours=5):%Y-%m-%d %H:%M}  Tom comes back and orders {carts[tom].name}")
        last_id = tick(env, start + timedelta(hours=5, minutes=5), "his cart series ends, his order series starts",
                       last_id)
        for days, label in ((1, "a day later"), (3, "three days later"), (4, "four days later"), (15, "two weeks later")):
            last_id = tick(env, start + timedelta(days=days, hours=1, minutes=10), label, last_id)
        last_id = tick(env, datetime.now(), "today (the demo data's own contacts were created at install)", last_id)

        print("\nEnrollments:")
        for enrollment in env["behavioral.enrollment"].search([], order="sequence_id, partner_id"):
            reason = f" ({dict(enrollment._fields['exit_reason'].selection).get(enrollment.exit_reason)})" \
                if enrollment.exit_reason else ""
            print(f"    {enrollment.sequence_id.name:<26} {enrollment.partner_id.name:<16} {enrollment.state}{reason}")

        print("\nSequences:")
        for sequence in env["behavioral.sequence"].search([]):
            print(f"    {sequence.name:<26} enrolled {sequence.enrollment_count:>2}, emails {sequence.trace_count:>2}, "
                  f"conversions {sequence.converted_count}, revenue {sequence.revenue:.2f}")

        with smtp_sink() as (sink, port):
            server = env["ir.mail_server"].create({
                "name": "Demo SMTP sink", "smtp_host": "127.0.0.1", "smtp_port": port,
                "smtp_encryption": "none", "sequence": 1,
            })
            mails = env["mail.mail"].sudo().search([("state", "=", "outgoing"), ("model", "=", "behavioral.enrollment")])
            mails.write({"mail_server_id": server.id})
            threading.current_thread().testing = False
            mails.send(raise_exception=False)
            print(f"\nOdoo's mail queue delivered {len(sink.messages)} email(s) to the SMTP sink on 127.0.0.1:{port}")
            if sink.messages:
                message = sink.messages[0]
                print(f"    e.g. To: {message['To']} | Subject: {message['Subject']}")
                print(f"         List-Unsubscribe: {message['List-Unsubscribe']}")
                print(f"         List-Unsubscribe-Post: {message['List-Unsubscribe-Post']}")
            server.active = False
        cr.commit()
        print("\nDone: open the database in Odoo to explore Behavioral Email > Sequences.")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
