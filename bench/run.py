#!/usr/bin/env python3
"""Benchmarks of behavioral_email, each against Odoo's own path.

    python3 bench/run.py [--db NAME] [--sizes 100,500] [--repeat 3]
                         [--scale-carts 50] [--extra-partners 20000]
                         [--bench send,scale] [--advance-batch-size N]
                         [--page-ms MS] [--recreate] [--update]

A "send"   N enrollments due on the first email of the abandoned-cart
           sequence, advanced by ``behavioral.enrollment._cron_advance``,
           against the same email sent by mass_mailing
           (``mailing.mailing.action_send_mail(res_ids=...)``, the composer
           path its queue cron runs) to the same N customers, and, for
           reference, rendered against the same N carts.
B "scale"  ``_cron_detect`` + ``_cron_enroll`` + ``_cron_advance`` for a few
           new carts with the partner table at its base size, then again
           for other new carts once ``--extra-partners`` customers (with
           their processed capture history) were added.

Speed and memory are reported as RATIOS against the other path, measured
on the same machine in the same run; nothing here asserts a duration.

Everything happens in one cursor that is rolled back at the end: the
database is left exactly as it was. Each measured run starts from a
savepoint and is rolled back too, so that every repetition and every path
starts from the same state. Mails are only queued (``mail.mail`` rows),
never sent: no SMTP server is involved and nothing in Odoo is patched.
The shop's base URL points to a stub web server run by the benchmark (see
PageStub): Odoo's link tracker fetches every new link's page.
"""
import argparse
import contextlib
import gc
import http.server
import logging
import os
import platform
import subprocess
import sys
import threading
import time
import tracemalloc
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import lxml.html
import psycopg2
from freezegun import freeze_time

import odoo
import odoo.release
from odoo import SUPERUSER_ID, api
from odoo.modules.registry import Registry
from odoo.tools import SQL

ROOT = Path(__file__).resolve().parent.parent
MODULE = "behavioral_email"
DEFAULT_DB = "behavioral_email_bench"
# every customer made here has an address in this domain: the final check
# looks for them to prove that nothing was committed
EMAIL_DOMAIN = "bench.example.com"
# The cart sequence treats carts idle for IDLE_HOURS as abandoned; the carts
# are last changed CART_AGE before the real clock, so that they are due by
# the time the (unfrozen, timed) advancing cron runs.
IDLE_HOURS = 1.0
CART_AGE = timedelta(hours=2)
CART_LINES = (("Terracotta Pot", 12.5, 2), ("Olive Tree", 80.0, 1))
# The email measured: the first cart email as one self-contained QWeb body.
# The shipped email is made of dynamic blocks that expand into t-calls of the
# addon's templates when rendered; Odoo's own paths below need a body they
# can render as it is, and both sides must render the same thing.
BENCH_BODY = """\
<div style="margin:0;padding:0;background-color:#f4f4f4;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="background-color:#f4f4f4;">
<tr><td align="center" style="padding:16px 8px;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="max-width:600px;background-color:#ffffff;border-radius:8px;font-family:Arial,Helvetica,sans-serif;color:#333333;font-size:15px;line-height:1.5;">
<tr><td style="padding:24px 24px 8px 24px;font-size:20px;font-weight:bold;color:#222222;"><t t-out="object.company_id.name or ''">Your shop</t></td></tr>
<tr><td style="padding:8px 24px 24px 24px;">
<p style="margin:0 0 12px 0;">Hi <t t-out="object.partner_id.name or ''">there</t>,</p><p style="margin:0 0 12px 0;">You left these items in your cart. We saved them for you:</p><table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="border-collapse:collapse;margin:8px 0;">
<t t-foreach="object.order_id.order_line" t-as="line">
<tr t-if="line.product_id and not line.display_type and not line.is_delivery">
<td width="72" style="padding:8px 8px 8px 0;border-bottom:1px solid #eeeeee;vertical-align:top;">
<img t-att-src="'/web/image/product.product/%s/image_128' % line.product_id.id" width="64" height="64" alt="" style="display:block;width:64px;height:64px;border-radius:4px;object-fit:cover;"/>
</td>
<td style="padding:8px 0;border-bottom:1px solid #eeeeee;vertical-align:top;">
<strong t-out="line.name_short">Product</strong><br/>
<span style="color:#666666;">Quantity: <t t-out="int(line.product_uom_qty) if line.product_uom_qty == int(line.product_uom_qty) else line.product_uom_qty">1</t></span>
</td>
<td align="right" style="padding:8px 0 8px 8px;border-bottom:1px solid #eeeeee;vertical-align:top;white-space:nowrap;">
<t t-out="line.price_total" t-options="{'widget': 'monetary', 'display_currency': line.currency_id}">$ 10.00</t>
</td>
</tr>
</t>
</table>
<p style="margin:8px 0;text-align:right;font-size:17px;"><strong>Total: <t t-out="object.order_id.amount_total" t-options="{'widget': 'monetary', 'display_currency': object.order_id.currency_id}">$ 10.00</t></strong></p><table role="presentation" cellpadding="0" cellspacing="0" border="0" style="margin:24px auto;">
<tr><td align="center" style="border-radius:6px;background-color:#875A7B;">
<a t-att-href="object.cart_restore_url" style="display:inline-block;padding:14px 28px;font-size:16px;font-weight:bold;color:#ffffff;text-decoration:none;border-radius:6px;">Return to my cart</a>
</td></tr></table>
</td></tr>
<tr><td style="padding:16px 24px;border-top:1px solid #eeeeee;font-size:12px;color:#888888;text-align:center;">
You receive this email because you are a customer of <t t-out="object.company_id.name or ''">our shop</t>.<br/>
<a href="/unsubscribe_from_list" style="color:#888888;">Unsubscribe</a>
</td></tr>
</table>
</td></tr>
</table>
</div>
"""
# creating bench data: no chatter, no tracking, no capture
QUIET = {
    "tracking_disable": True,
    "mail_create_nolog": True,
    "mail_create_nosubscribe": True,
    "mail_notrack": True,
}
WARMUP_SIZE = 5

_logger = logging.getLogger("bench")


class PageStub:
    """The shop's web server, as far as the benchmark needs one.

    ``web.base.url`` points here during the run. Odoo's link tracker fetches
    the page of every new tracked link to read its title
    (``link.tracker.create`` -> ``_get_title_from_url``, an HTTP GET with a
    3 s timeout): this server answers each GET after ``delay`` seconds
    (0 by default: a lower bound for a real shop page) and counts them.
    """

    def __init__(self, delay=0.0):
        stub = self
        self.delay = delay
        self.hits = 0
        self._lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with stub._lock:
                    stub.hits += 1
                if stub.delay:
                    time.sleep(stub.delay)
                body = b"<html><head><title>Shop</title></head><body></body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ----------------------------------------------------------------------
# database
# ----------------------------------------------------------------------

def odoo_addons_path():
    return ",".join([os.path.join(os.path.dirname(odoo.__file__), "addons"), str(ROOT)])


def module_state(db):
    """(state of behavioral_email, last install or update in UTC) in ``db``,
    or (None, None) when there is no such database."""
    with contextlib.closing(psycopg2.connect(dbname="postgres")) as conn, conn.cursor() as cr:
        cr.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
        if not cr.fetchone():
            return None, None
    with contextlib.closing(psycopg2.connect(dbname=db)) as conn, conn.cursor() as cr:
        cr.execute("SELECT to_regclass('ir_module_module') IS NOT NULL")
        if not cr.fetchone()[0]:
            return "no Odoo database", None
        cr.execute("SELECT state, write_date FROM ir_module_module WHERE name = %s", (MODULE,))
        return cr.fetchone() or ("unknown", None)


def source_changed_at():
    """Last change to the addon's source files, in UTC."""
    mtime = max(path.stat().st_mtime for path in (ROOT / MODULE).rglob("*") if path.is_file())
    return datetime.fromtimestamp(mtime, timezone.utc).replace(tzinfo=None)


def odoo_cli(db, addons_path, *args):
    subprocess.run([
        sys.executable, "-m", "odoo", "-d", db, f"--addons-path={addons_path}", *args,
        "--stop-after-init", "--log-level=warn", "--http-port=0",
    ], check=True)


def ensure_database(db, addons_path, recreate=False, update=False):
    """The database, with behavioral_email installed from the current source.

    Created when missing (as scripts/test.sh does); updated when the addon's
    source changed since it was installed or last updated.
    """
    if recreate and module_state(db)[0] is not None:
        print(f"== dropping database {db}")
        subprocess.run(["dropdb", "--if-exists", db], check=True)
    state, updated_at = module_state(db)
    if state is None:
        print(f"== creating database {db} with {MODULE} (no demo data); takes a minute")
        odoo_cli(db, addons_path, "-i", MODULE, "--without-demo=all")
    elif state == "installed" and (update or updated_at is None or source_changed_at() > updated_at):
        print(f"== updating {MODULE} in {db}: its source changed since it was installed")
        odoo_cli(db, addons_path, "-u", MODULE)
    state, _updated_at = module_state(db)
    if state != "installed":
        sys.exit(f"{MODULE} is not installed in database {db} (state: {state}); "
                 f"use --recreate or another --db")


def vacuum(db):
    """VACUUM (ANALYZE) the database, from its own autocommit connection.

    Every run inserts and rolls back thousands of rows; their dead tuples
    (and dead GIN index entries) stay until a vacuum. Where autovacuum is off
    or lagging, they would slow the next run down: clean them first, as
    autovacuum does in production. Nothing of the benchmark is committed.
    """
    with contextlib.closing(psycopg2.connect(dbname=db)) as conn:
        conn.autocommit = True
        with conn.cursor() as cr:
            cr.execute("VACUUM (ANALYZE)")


def bench_rows_left(db):
    """Customers made by the benchmark that are visible from another connection."""
    with contextlib.closing(psycopg2.connect(dbname=db)) as conn, conn.cursor() as cr:
        cr.execute("SELECT count(*) FROM res_partner WHERE email LIKE %s", (f"%@{EMAIL_DOMAIN}",))
        return cr.fetchone()[0]


# ----------------------------------------------------------------------
# measuring
# ----------------------------------------------------------------------

@contextlib.contextmanager
def rolled_back(env):
    """Whatever happens inside is undone (savepoint), caches included."""
    savepoint = env.cr.savepoint()  # flushes first
    try:
        yield
    finally:
        savepoint.close(rollback=True)
        env.invalidate_all()


def _new_mails(cr, after_id):
    cr.execute(SQL(
        "SELECT count(*), COALESCE(avg(length(body_html)), 0) FROM mail_mail WHERE id > %s",
        after_id))
    return cr.fetchone()


def _last_id(cr, table):
    cr.execute(SQL("SELECT COALESCE(max(id), 0) FROM %s", SQL.identifier(table)))
    return cr.fetchone()[0]


def run_once(env, phases, pages, trace=False, profile=False):
    """Run the phases once from the current state and roll them back.

    Pending writes are flushed and every cache is invalidated before; the
    phases' own writes are flushed (precommit hooks included) inside the
    measure. SQL time is what Odoo's cursor accounts for on the thread
    (``query_time``), i.e. PostgreSQL plus the round trip.

    :param phases: [(name, callable)]
    :param pages: the PageStub the shop's links point to
    :param trace: measure the peak of Python memory (tracemalloc)
    :param profile: keep every query with its duration (``query_hooks``)
    :return dict: phases {name: (seconds, queries, sql seconds)}, peak
        (bytes, traced runs only), queries_log ([(phase, ms, query)] with
        profile), mails (mail.mail created), body (average length), http
        (pages fetched from the shop, see PageStub)
    """
    cr = env.cr
    thread = threading.current_thread()
    if not hasattr(thread, "query_time"):
        # Odoo's cursor adds each query's duration to these when they exist
        thread.query_count, thread.query_time = 0, 0.0
    result = {"phases": {}, "peak": None, "queries_log": []}
    phase_name = None

    def log_query(cursor, query, params, _start, delay):
        text = cursor.mogrify(query, params).decode(errors="replace")
        result["queries_log"].append((phase_name, 1000 * delay, " ".join(text.split())))

    with rolled_back(env):
        env.invalidate_all()
        last_mail = _last_id(cr, "mail_mail")
        hits = pages.hits
        gc.collect()
        if trace:
            tracemalloc.start()
        if profile:
            thread.query_hooks = [log_query]
        try:
            for phase_name, func in phases:
                queries, sql_time = cr.sql_log_count, thread.query_time
                start = time.perf_counter()
                func()
                cr.flush()
                result["phases"][phase_name] = (
                    time.perf_counter() - start, cr.sql_log_count - queries, thread.query_time - sql_time)
            if trace:
                result["peak"] = tracemalloc.get_traced_memory()[1]
        finally:
            if profile:
                thread.query_hooks = []
            if trace:
                tracemalloc.stop()
        result["mails"], result["body"] = _new_mails(cr, last_mail)
        result["http"] = pages.hits - hits
    return result


def measure(env, paths, pages, repeat, memory=True, profile=False):
    """Measure each path: ``repeat`` runs for time and queries (the fastest
    run is kept: background load only ever adds time), taken in turns so that
    the paths share whatever load the machine has; then one run under
    tracemalloc for the peak memory (tracing slows Python down, so it is kept
    apart from the timed runs); with ``profile``, ``repeat`` more runs that
    log every query.

    :param dict paths: {name: [(phase name, callable)]}
    :return dict: {name: result}, see run_once; times are summed over the
        phases into time, queries and sql
    """
    runs = {name: [] for name in paths}
    for _round in range(repeat):
        for name, phases in paths.items():
            runs[name].append(run_once(env, phases, pages))
    results = {}
    for name, phases in paths.items():
        traced = run_once(env, phases, pages, trace=True) if memory else None
        # per query, the fastest of the profiled runs (matched by position)
        profiled = [run_once(env, phases, pages, profile=True)["queries_log"] for _ in range(repeat)] \
            if profile else []
        queries_log = None
        if profiled and len({len(log) for log in profiled}) == 1:
            queries_log = [(entries[0][0], min(ms for _phase, ms, _query in entries), entries[0][2])
                           for entries in zip(*profiled)]
        first = runs[name][0]
        result = {
            "phases": {
                phase: tuple(min(run["phases"][phase][i] for run in runs[name]) for i in range(3))
                for phase, _func in phases
            },
            "mails": first["mails"],
            "body": first["body"],
            "http": first["http"],
            "peak": traced and traced["peak"],
            "queries_log": queries_log,
        }
        for key, index in (("time", 0), ("queries", 1), ("sql", 2)):
            result[key] = sum(values[index] for values in result["phases"].values())
        if any(run["mails"] != first["mails"] for run in runs[name] + ([traced] if traced else [])):
            _logger.warning("%s: mail counts differ between repetitions", name)
        results[name] = result
    return results


# ----------------------------------------------------------------------
# the shop
# ----------------------------------------------------------------------

class Shop:
    """A website, two products and the shipped abandoned-cart sequence,
    running alone: other sequences paused, queues emptied."""

    def __init__(self, env, pages):
        self.env = env
        self.pages = pages
        self.website = env["website"].search([], order="id", limit=1)
        # links in the emails point to the stub shop (see PageStub)
        env["ir.config_parameter"].set_param("web.base.url", pages.url)
        self.website.domain = False
        self.products = env["product.product"].with_context(**QUIET).create([{
            "name": name, "list_price": price, "sale_ok": True, "is_published": True,
            "type": "consu", "taxes_id": [(5, 0, 0)],
        } for name, price, _qty in CART_LINES])
        self.sequence = env.ref("behavioral_email.sequence_cart")
        self.step = self.sequence.step_ids.sorted()[:1]
        self.step.body_html = BENCH_BODY
        env["behavioral.sequence"].search([("state", "=", "running")]).action_pause()
        self.sequence.write({"cart_idle_hours": IDLE_HOURS, "website_id": False})
        self.sequence.action_start()
        # the benchmark sees its own work only
        env["behavioral.enrollment"].search([("state", "=", "running")]).action_stop()
        env.flush_all()
        env.cr.execute(SQL("UPDATE behavioral_trigger SET state = 'done' WHERE state = 'new'"))
        env.invalidate_all()
        self._serial = 0

    def customers(self, count, history=False):
        """``count`` new customers with an address.

        With ``history`` each one also gets the 'new contact' trigger its
        creation would have captured, already processed: the trigger table
        of a shop that has been running for a while. (Written as processed
        right away: an UPDATE inside this never-committed transaction would
        leave dead index entries that no vacuum can remove before the
        measure.)
        """
        self._serial += 1
        tag = f"c{self._serial}"
        partners = self.env["res.partner"].with_context(**QUIET, behavioral_no_capture=True).create([{
            "name": f"Bench Customer {tag}-{i}",
            "email": f"{tag}-{i}@{EMAIL_DOMAIN}",
        } for i in range(count)])
        if history:
            now = datetime.utcnow()
            self.env["behavioral.trigger"].with_context(**QUIET).create([
                dict(partner._behavioral_prepare_created_trigger(now), state="done")
                for partner in partners
            ])
        return partners

    def carts(self, partners, at):
        """One website cart per customer, last changed at ``at``."""
        with freeze_time(at):
            return self.env["sale.order"].with_context(**QUIET).create([{
                "partner_id": partner.id,
                "website_id": self.website.id,
                "order_line": [(0, 0, {"product_id": product.id, "product_uom_qty": qty})
                               for product, (_name, _price, qty) in zip(self.products, CART_LINES)],
            } for partner in partners])

    def due_enrollments(self, carts):
        return self.env["behavioral.enrollment"].search([
            ("order_id", "in", carts.ids), ("state", "=", "running"),
            ("step_id", "=", self.step.id), ("next_due", "<=", datetime.utcnow()),
        ])

    # -- Odoo's own path ------------------------------------------------

    def mailing(self, model, body):
        """A mass mailing with the step's subject, preview, sender and campaign."""
        step_mailing = self.step.mailing_id
        return self.env["mailing.mailing"].with_context(**QUIET).create({
            "subject": step_mailing.subject,
            "preview": step_mailing.preview,
            "body_arch": body,
            "body_html": body,
            "mailing_type": "mail",
            "mailing_model_id": self.env["ir.model"]._get_id(model),
            "mailing_domain": "[]",
            "email_from": step_mailing.email_from,
            "reply_to_mode": "new",
            "reply_to": step_mailing.reply_to,
            "campaign_id": step_mailing.campaign_id.id,
            "keep_archives": False,
        })

    def partner_body(self):
        """The step's body for a res.partner mailing: same layout, greeting,
        button (a link per recipient, as the cart link is) and footer; no
        cart lines, no total (a partner has no cart)."""
        root = lxml.html.fragment_fromstring(str(self.step.body_html), create_parent="div")
        for loop in root.xpath("//*[@t-foreach]"):
            table = loop.getparent()
            table.getparent().remove(table)
        for out in root.xpath("//*[contains(@t-out, 'object.order_id')]"):
            para = out.xpath("ancestor::p[1]")[0]
            para.getparent().remove(para)
        for link in root.xpath("//*[@t-att-href='object.cart_restore_url']"):
            link.set("t-att-href", "'/shop/cart?customer=%s' % object.id")
        body = "".join(lxml.html.tostring(child, encoding="unicode") for child in root)
        body = body.replace("object.partner_id.", "object.")
        assert "object.order_id" not in body and "cart_restore_url" not in body, body
        return body

    def cart_body(self):
        """The step's body unchanged, but rendered against the cart itself."""
        body = str(self.step.body_html)
        body = body.replace("object.order_id.", "object.")
        body = body.replace("object.cart_restore_url", "'/shop/cart?order=%s' % object.id")
        assert "object.order_id" not in body and "cart_restore_url" not in body, body
        return body


# ----------------------------------------------------------------------
# A: send
# ----------------------------------------------------------------------

def bench_send(env, shop, size, repeat, memory=True):
    """ours / odoo partner mailing / odoo cart mailing for ``size`` recipients."""
    Enrollment = env["behavioral.enrollment"]
    Trigger = env["behavioral.trigger"]
    with rolled_back(env):
        partners = shop.customers(size)
        cart_time = datetime.utcnow().replace(microsecond=0) - CART_AGE
        carts = shop.carts(partners, cart_time)
        # detection and enrollment at a time the carts are idle (not timed)
        with freeze_time(cart_time + timedelta(hours=IDLE_HOURS, minutes=30)):
            Trigger._cron_detect()
            Trigger._cron_enroll()
        due = shop.due_enrollments(carts)
        if len(due) != size:
            sys.exit(f"send: expected {size} due enrollments, got {len(due)}")
        partner_mailing = shop.mailing("res.partner", shop.partner_body())
        cart_mailing = shop.mailing("sale.order", shop.cart_body())
        results = measure(env, {
            "ours": [("advance", Enrollment._cron_advance)],
            "odoo: partner mailing": [
                ("send", lambda: partner_mailing.action_send_mail(res_ids=partners.ids))],
            "odoo: cart mailing": [
                ("send", lambda: cart_mailing.action_send_mail(res_ids=carts.ids))],
        }, shop.pages, repeat, memory)
    for name, result in results.items():
        if result["mails"] != size:
            _logger.warning("send: %s created %s mails for %s recipients", name, result["mails"], size)
    return results


# ----------------------------------------------------------------------
# B: scale
# ----------------------------------------------------------------------

def bench_scale_round(env, shop, carts_count, repeat):
    Enrollment = env["behavioral.enrollment"]
    Trigger = env["behavioral.trigger"]
    with rolled_back(env):
        partners = shop.customers(carts_count)
        shop.carts(partners, datetime.utcnow().replace(microsecond=0) - CART_AGE)
        result = measure(env, {"scale": [
            ("detect", Trigger._cron_detect),
            ("enroll", Trigger._cron_enroll),
            ("advance", Enrollment._cron_advance),
        ]}, shop.pages, repeat, profile=True)["scale"]
        env.cr.execute(SQL("SELECT count(*) FROM res_partner"))
        result["partners"] = env.cr.fetchone()[0]
    if result["mails"] != carts_count:
        _logger.warning("scale: %s mails for %s carts", result["mails"], carts_count)
    return result


def analyze(env):
    """Fresh planner statistics, as autovacuum keeps them in production
    (ANALYZE runs inside the transaction and sees its own rows)."""
    env.flush_all()
    for table in ("res_partner", "behavioral_trigger", "sale_order"):
        env.cr.execute(SQL("ANALYZE %s", SQL.identifier(table)))


def bench_scale(env, shop, carts_count, extra_partners, repeat):
    analyze(env)
    base = bench_scale_round(env, shop, carts_count, repeat)
    start = time.perf_counter()
    batch = 2000
    for offset in range(0, extra_partners, batch):
        shop.customers(min(batch, extra_partners - offset), history=True)
        env.invalidate_all()
    analyze(env)
    print(f"   ({extra_partners} customers added in {time.perf_counter() - start:.1f} s)")
    large = bench_scale_round(env, shop, carts_count, repeat)
    return base, large


# ----------------------------------------------------------------------
# report
# ----------------------------------------------------------------------

def ratio(a, b):
    return a / b if a is not None and b else float("nan")


def mib(value):
    return value / 2**20 if value is not None else float("nan")


def print_send(all_results):
    print()
    print("A. send: N due cart emails queued as mail.mail")
    print(f"{'N':>6}  {'path':<24}{'time s':>9}{'sql s':>8}{'queries':>9}{'peak MiB':>10}"
          f"{'mails':>7}{'body KiB':>10}{'http':>6}")
    for size, results in all_results:
        for name, res in results.items():
            print(f"{size:>6}  {name:<24}{res['time']:>9.3f}{res['sql']:>8.3f}{res['queries']:>9}"
                  f"{mib(res['peak']):>10.1f}{res['mails']:>7}{res['body'] / 1024:>10.1f}{res['http']:>6}")
        ours = results["ours"]
        for name, res in results.items():
            if name != "ours":
                print(f"{'':>6}  ours / {name.split(': ')[-1]:<17}"
                      f"{ratio(ours['time'], res['time']):>9.2f}{ratio(ours['sql'], res['sql']):>8.2f}"
                      f"{ratio(ours['queries'], res['queries']):>9.2f}{ratio(ours['peak'], res['peak']):>10.2f}")
    print("   per mail, ours:", "; ".join(
        f"N={size}: {1000 * res['ours']['time'] / size:.1f} ms, {res['ours']['queries'] / size:.2f} queries"
        for size, res in all_results))
    print("   per mail, odoo partner mailing:", "; ".join(
        f"N={size}: {1000 * res['odoo: partner mailing']['time'] / size:.1f} ms, "
        f"{res['odoo: partner mailing']['queries'] / size:.2f} queries"
        for size, res in all_results))


def print_scale(base, large, carts_count, top=3):
    print()
    print(f"B. scale: detect + enroll + advance for {carts_count} new carts")
    header = "".join(f"{name + ' s':>11}{'q':>5}" for name in base["phases"])
    print(f"{'partners':>9}{header}{'total s':>10}{'sql s':>8}{'queries':>9}{'peak MiB':>10}{'mails':>7}{'http':>6}")
    for res in (base, large):
        cells = "".join(f"{t:>11.3f}{q:>5}" for t, q, _sql in res["phases"].values())
        print(f"{res['partners']:>9}{cells}{res['time']:>10.3f}{res['sql']:>8.3f}{res['queries']:>9}"
              f"{mib(res['peak']):>10.1f}{res['mails']:>7}{res['http']:>6}")
    cells = "".join(f"{ratio(large['phases'][name][0], base['phases'][name][0]):>11.2f}{'':>5}"
                    for name in base["phases"])
    print(f"{'ratio':>9}{cells}{ratio(large['time'], base['time']):>10.2f}{ratio(large['sql'], base['sql']):>8.2f}"
          f"{ratio(large['queries'], base['queries']):>9.2f}{ratio(large['peak'], base['peak']):>10.2f}")
    print("   queries equal:", "yes" if large["queries"] == base["queries"] else
          f"NO ({base['queries']} -> {large['queries']})")
    # the queries that slowed down most, matched by position (same queries, same order)
    before, after = base["queries_log"], large["queries_log"]
    if before and len(before) == len(after):
        growth = sorted(zip(before, after), key=lambda pair: pair[1][1] - pair[0][1], reverse=True)
        print("   queries that grew most (ms, fastest of the profiled runs):")
        for (phase, ms_before, _query), (_phase, ms_after, query) in growth[:top]:
            print(f"   {phase:>8} {ms_before:7.2f} -> {ms_after:7.2f}  {query[:110]}")


# ----------------------------------------------------------------------
# main
# ----------------------------------------------------------------------

def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=DEFAULT_DB, help=f"database (default {DEFAULT_DB}, created if missing)")
    parser.add_argument("--sizes", default="100,500", help="recipients per send run (default 100,500)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measure; the fastest is kept (default 3)")
    parser.add_argument("--scale-carts", type=int, default=50, help="new carts per scale run (default 50)")
    parser.add_argument("--extra-partners", type=int, default=20000,
                        help="customers added between the two scale runs (default 20000)")
    parser.add_argument("--bench", default="send,scale", help="which benchmarks: send, scale or both")
    parser.add_argument("--advance-batch-size", type=int,
                        help="behavioral_email.advance_batch_size for this run (default: the database's)")
    parser.add_argument("--page-ms", type=float, default=0.0,
                        help="how long the stub shop takes to answer a page fetch, in ms (default 0)")
    parser.add_argument("--recreate", action="store_true", help="drop and recreate the database first")
    parser.add_argument("--update", action="store_true",
                        help=f"update {MODULE} in the database first (done anyway when its source changed)")
    args = parser.parse_args()
    args.sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    args.bench = {name.strip() for name in args.bench.split(",")}
    if not args.bench <= {"send", "scale"}:
        parser.error("--bench takes send, scale or send,scale")
    return args


def main():
    args = parse_args()
    addons_path = odoo_addons_path()
    ensure_database(args.db, addons_path, args.recreate, args.update)
    vacuum(args.db)
    odoo.tools.config.parse_config(["-d", args.db, f"--addons-path={addons_path}", "--log-level=warn"])
    # Odoo 18 still calls werkzeug.urls: its deprecation warnings are noise here
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    registry = Registry(args.db)
    pages = PageStub(args.page_ms / 1000)
    # the addon's crons (and mass_mailing's composer) commit per batch unless
    # the thread is marked as testing: everything here must be rolled back
    threading.current_thread().testing = True
    cr = registry.cursor()
    try:
        env = api.Environment(cr, SUPERUSER_ID, {})
        cr.execute(SQL("SHOW server_version"))
        print(f"behavioral_email benchmarks, {datetime.now():%Y-%m-%d %H:%M}, database {args.db}")
        print(f"Odoo {odoo.release.version}, PostgreSQL {cr.fetchone()[0]}, Python {platform.python_version()}, "
              f"{os.cpu_count()} CPU(s); fastest of {args.repeat} run(s), memory from one traced run")
        shop = Shop(env, pages)
        params = env["ir.config_parameter"]
        if args.advance_batch_size:
            params.set_param("behavioral_email.advance_batch_size", args.advance_batch_size)
        print(f"batches: behavioral_email.advance_batch_size={params.get_param('behavioral_email.advance_batch_size')}, "
              f"mail.batch_size={params.get_param('mail.batch_size') or 50} (composer)")
        if "send" in args.bench:
            # compile the templates and fill the registry caches on both paths
            bench_send(env, shop, WARMUP_SIZE, repeat=1, memory=False)
            print_send([(size, bench_send(env, shop, size, args.repeat)) for size in args.sizes])
        if "scale" in args.bench:
            bench_scale_round(env, shop, WARMUP_SIZE, repeat=1)  # warm-up
            base, large = bench_scale(env, shop, args.scale_carts, args.extra_partners, args.repeat)
            print_scale(base, large, args.scale_carts)
    finally:
        # never keep benchmark data
        cr.rollback()
        cr.close()
        pages.close()
    left = bench_rows_left(args.db)
    print()
    print("rolled back:", "yes, no benchmark data left" if not left else f"NO, {left} customers left")


if __name__ == "__main__":
    main()
