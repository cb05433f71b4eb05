#!/usr/bin/env python3
"""Scale benchmarks of behavioral_email: workers, volume, a large database,
the capture's cost in the shop, and the latency of the whole chain.

    python3 bench/scale.py workers  [--due 20000] [--repeat 1]
    python3 bench/scale.py volume   [--small 10000] [--large 100000] [--workers 1]
    python3 bench/scale.py bigdb    [--contacts 1000000] [--carts 200000] [--new-carts 200]
    python3 bench/scale.py capture  [--requests 300]
    python3 bench/scale.py latency  [--runs 5] [--cart-runs 2] [--queue-job]
    python3 bench/scale.py all      (each of the above with its defaults)
    common options: --db-prefix NAME (default behavioral_email_scale), --keep

workers  the advancing cron on N due steps run by 1, then 2 processes at once
         (Odoo cron workers: each its own connection): speed-up, and where
         the time goes (Python CPU, PostgreSQL backend CPU, machine busy).
volume   one worker on 10 000 then 100 000 due steps: cost per email and
         peak memory of the worker process (ru_maxrss).
bigdb    detection + enrollment of a few new idle carts in a database of a
         thousand contacts and carts, then of a million contacts and 200 000
         carts (with their history): time, queries, and the query plans
         (EXPLAIN (ANALYZE, BUFFERS)) of the detection.
capture  real HTTP requests to /shop/cart/update_json on two Odoo servers:
         one without behavioral_email (website_sale + mass_mailing), one with.
latency  a real Odoo server with 2 cron threads: from a new contact, and from
         a cart becoming idle, to the first email queued (mail.mail row).

Every database is a throwaway made from set-based SQL (INSERT ... SELECT
generate_series, cloning one row made by the ORM so that every column is
filled as Odoo fills it), dropped at the end unless --keep. Results are
ratios against the small variant of the same run; nothing asserts a duration
(the CI never runs this). See bench/README.md.
"""
import argparse
import contextlib
import json
import logging
import multiprocessing
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
import xmlrpc.client
from datetime import datetime, timedelta
from pathlib import Path

import psycopg2
from psycopg2 import sql

ROOT = Path(__file__).resolve().parent.parent
CLK = os.sysconf("SC_CLK_TCK")
BIG_DOMAIN = "big.bench.example.com"
DUE_DOMAIN = "due.bench.example.com"


# ----------------------------------------------------------------------
# machine, databases, processes
# ----------------------------------------------------------------------

def addons_path():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "odoo_paths.py")],
                         capture_output=True, text=True, check=True)
    return f"{out.stdout.strip()},{ROOT}"


def machine():
    cpu = platform.processor()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
    return f"{os.cpu_count()} CPU(s) ({cpu}), {mem_kib / 2**20:.0f} GiB RAM"


def header(title):
    import odoo.release
    with contextlib.closing(psycopg2.connect(dbname="postgres")) as conn, conn.cursor() as cr:
        cr.execute("SHOW server_version")
        pg = cr.fetchone()[0]
    print(f"behavioral_email scale benchmark: {title}, {datetime.now():%Y-%m-%d %H:%M}")
    print(f"{machine()}; Odoo {odoo.release.version}, PostgreSQL {pg}, Python {platform.python_version()}")
    print(f"command: {' '.join([Path(sys.argv[0]).name] + sys.argv[1:])}")
    sys.stdout.flush()


def db_exists(db):
    with contextlib.closing(psycopg2.connect(dbname="postgres")) as conn, conn.cursor() as cr:
        cr.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
        return bool(cr.fetchone())


def drop(db):
    subprocess.run(["dropdb", "--if-exists", "--force", db], check=True, capture_output=True)


def clone(template, db):
    drop(db)
    subprocess.run(["createdb", "-T", template, db], check=True)


def odoo_cli(db, *args):
    subprocess.run([sys.executable, "-m", "odoo", "-d", db, f"--addons-path={addons_path()}", *args,
                    "--stop-after-init", "--log-level=warn", "--log-handler=py.warnings:ERROR",
                    "--http-port=0"], check=True)


def ensure_installed(db, modules, keep_existing=True):
    """``db`` with ``modules`` installed (no demo data); made when missing."""
    if keep_existing and db_exists(db):
        return db
    drop(db)
    print(f"== installing {modules} in {db} (a few minutes)")
    sys.stdout.flush()
    odoo_cli(db, "-i", modules, "--without-demo=all")
    return db


def vacuum(db):
    with contextlib.closing(psycopg2.connect(dbname=db)) as conn:
        conn.autocommit = True
        with conn.cursor() as cr:
            cr.execute("VACUUM (ANALYZE)")


def open_registry(db):
    import odoo
    from odoo.tools import config
    config.parse_config(["-d", db, f"--addons-path={addons_path()}", "--log-level=warn",
                         "--log-handler=py.warnings:ERROR"])
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    return odoo.modules.registry.Registry(db)


def in_subprocess(func, *args):
    """Run ``func(*args)`` in a fresh process (its own registry and
    connections, nothing left open here) and return its result."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        result = manager.dict()
        proc = context.Process(target=_call_into, args=(func, args, result))
        proc.start()
        proc.join()
        if proc.exitcode:
            sys.exit(f"{func.__name__} failed (exit {proc.exitcode})")
        return result.get("value")


def _call_into(func, args, result):
    result["value"] = func(*args)


def proc_cpu(pid):
    """CPU seconds (user + system) used so far by process ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def proc_runqueue_wait(pid="self"):
    """Seconds process ``pid`` spent runnable but waiting for a CPU
    (/proc/<pid>/schedstat): the cost of sharing the cores."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


def machine_busy():
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLK, sum(values) / CLK


def columns(cr, table):
    cr.execute("""SELECT column_name FROM information_schema.columns
                   WHERE table_name = %s AND table_schema = 'public' ORDER BY ordinal_position""", (table,))
    return [row[0] for row in cr.fetchall()]


def clone_rows(cr, table, ref_id, source, overrides):
    """INSERT INTO table SELECT, one row per row of ``source`` (SQL, aliased
    ``src``): every column copied from the reference row ``ref_id`` (made
    by the ORM), except ``overrides`` {column: SQL expression}."""
    cols = columns(cr, table)
    values = [sql.SQL(overrides[col]) if col in overrides else sql.SQL("ref.{}").format(sql.Identifier(col))
              for col in cols]
    cr.execute(sql.SQL("INSERT INTO {table} ({cols}) SELECT {values} FROM {table} ref, ({source}) src "
                       "WHERE ref.id = %s").format(
        table=sql.Identifier(table), cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
        values=sql.SQL(", ").join(values), source=sql.SQL(source)), (ref_id,))
    return cr.rowcount


def clone_partners(env, count, domain, tag):
    """``count`` customers <tag>N@<domain>, cloned from one made by the ORM."""
    ref = env["res.partner"].with_context(behavioral_no_capture=True).create({
        "name": "Reference", "email": f"reference@{domain}"})
    env.flush_all()
    cr = env.cr
    done = clone_rows(cr._obj, "res_partner", ref.id, f"""
        SELECT nextval('res_partner_id_seq') AS id, g FROM generate_series(1, {int(count)}) g""", {
        "id": "src.id",
        "commercial_partner_id": "src.id",
        "name": f"'Customer {tag}' || src.g",
        "complete_name": f"'Customer {tag}' || src.g",
        "email": f"'{tag}' || src.g || '@{domain}'",
        "email_normalized": f"'{tag}' || src.g || '@{domain}'",
    })
    ref.unlink()
    return done


# ----------------------------------------------------------------------
# workers and volume: the advancing cron on N due steps
# ----------------------------------------------------------------------

def populate_due(db, count, batch):
    """The shipped welcome sequence running, ``count`` customers enrolled
    and due on its first email (delay 0), committed."""
    import odoo
    from odoo import api
    reg = open_registry(db)
    with reg.cursor() as cr:
        env = api.Environment(cr, odoo.SUPERUSER_ID, {})
        env["ir.config_parameter"].set_param("behavioral_email.advance_batch_size", batch)
        sequence = env.ref("behavioral_email.sequence_welcome")
        sequence.write({"reentry": "partner"})
        sequence.action_start()
        step = sequence.step_ids.sorted()[:1]
        clone_partners(env, count, DUE_DOMAIN, "d")
        cr.execute("""
            INSERT INTO behavioral_enrollment
                (sequence_id, partner_id, res_model, res_id, state, step_id, next_due, goal_since,
                 dedupe_key, company_id, payload, retry_count, create_uid, create_date, write_uid, write_date)
            SELECT %(sequence)s, p.id, 'res.partner', p.id, 'running', %(step)s, %(due)s, %(due)s,
                   'partner:' || p.id, %(company)s, '{}'::jsonb, 0, 1, %(due)s, 1, %(due)s
              FROM res_partner p WHERE p.email LIKE %(emails)s""", {
            "sequence": sequence.id, "step": step.id, "company": env.company.id,
            "due": datetime.utcnow() - timedelta(minutes=5), "emails": f"%@{DUE_DOMAIN}"})
        enrolled = cr.rowcount
        cr.commit()
    odoo.sql_db.close_all()
    return enrolled


def due_template(args, count):
    """A database with ``count`` due steps, kept as a template for the runs."""
    name = f"{args.db_prefix}_due_{count}"
    if db_exists(name) and not args.rebuild:
        return name
    base = ensure_installed(f"{args.db_prefix}_base", "behavioral_email", keep_existing=not args.rebuild)
    clone(base, name)
    start = time.perf_counter()
    enrolled = in_subprocess(populate_due, name, count, args.batch)
    vacuum(name)
    print(f"== {name}: {enrolled} due steps built in {time.perf_counter() - start:.0f} s")
    return name


class RetryCounter(logging.Handler):
    """Counts the batches the cron loop redid after a concurrent update."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def emit(self, record):
        if "concurrent update" in record.getMessage():
            self.count += 1


def advance_worker(db, index, ready, results):
    """One cron worker: its own registry and connection, then the advancing
    cron, measured from the moment every worker is ready."""
    import odoo
    from odoo import api
    reg = open_registry(db)
    retries = RetryCounter()
    batch_logger = logging.getLogger("odoo.addons.behavioral_email.tools.batch")
    batch_logger.setLevel(logging.INFO)
    batch_logger.propagate = False
    batch_logger.addHandler(retries)
    # the retried claim is logged as a "bad query" by the cursor: counted above
    logging.getLogger("odoo.sql_db").setLevel(logging.CRITICAL)
    thread = threading.current_thread()
    thread.query_count, thread.query_time = 0, 0.0
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ready.wait(timeout=900)
    with reg.cursor() as cr:
        cr.execute("SELECT pg_backend_pid()")
        backend = cr.fetchone()[0]
        env = api.Environment(cr, odoo.SUPERUSER_ID, {})
        usage0, backend0, sql0, queries0 = (
            resource.getrusage(resource.RUSAGE_SELF), proc_cpu(backend), thread.query_time, cr.sql_log_count)
        wait0, backend_wait0 = proc_runqueue_wait(), proc_runqueue_wait(backend)
        start = time.perf_counter()
        done = env["behavioral.enrollment"]._cron_advance()
        cr.commit()
        wall = time.perf_counter() - start
        usage1, backend1 = resource.getrusage(resource.RUSAGE_SELF), proc_cpu(backend)
        wait1, backend_wait1 = proc_runqueue_wait(), proc_runqueue_wait(backend)
        queries = cr.sql_log_count - queries0
    results[index] = {
        "done": done, "wall": wall, "queries": queries, "retries": retries.count,
        "py_cpu": (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime),
        "pg_cpu": backend1 - backend0, "sql": thread.query_time - sql0,
        "py_wait": wait1 - wait0, "pg_wait": backend_wait1 - backend_wait0,
        "rss_loaded_mib": rss_loaded / 1024, "maxrss_mib": usage1.ru_maxrss / 1024,
    }


def run_advance(db, workers):
    """Run the advancing cron in ``workers`` processes at once on ``db``;
    return the per-worker measures, the run's wall time and machine load."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        results = manager.dict()
        ready = context.Barrier(workers + 1)
        procs = [context.Process(target=advance_worker, args=(db, i, ready, results)) for i in range(workers)]
        for proc in procs:
            proc.start()
        ready.wait(timeout=900)
        busy0, total0 = machine_busy()
        start = time.perf_counter()
        for proc in procs:
            proc.join()
        wall = time.perf_counter() - start
        busy1, total1 = machine_busy()
        shares = [results[i] for i in sorted(results.keys())]
    with contextlib.closing(psycopg2.connect(dbname=db)) as conn, conn.cursor() as cr:
        cr.execute("SELECT count(*), count(DISTINCT (enrollment_id, step_id)) FROM behavioral_trace")
        traces, distinct = cr.fetchone()
        cr.execute("""SELECT count(*) FROM mail_mail mail JOIN mail_message msg ON msg.id = mail.mail_message_id
                       WHERE msg.model = 'behavioral.enrollment'""")
        mails = cr.fetchone()[0]
    return {
        "workers": workers, "wall": wall, "shares": shares, "traces": traces, "distinct": distinct,
        "mails": mails, "cores_busy": (busy1 - busy0) / wall,
        "machine_cores": (total1 - total0) / wall,
    }


def print_advance(label, count, res):
    shares = res["shares"]
    done = sum(s["done"] for s in shares)
    py = sum(s["py_cpu"] for s in shares)
    pg = sum(s["pg_cpu"] for s in shares)
    sql_time = sum(s["sql"] for s in shares)
    print(f"{label:>10} {res['workers']:>3} {count:>8} {res['wall']:>8.1f} {1000 * res['wall'] / max(done, 1):>7.2f}"
          f" {py:>8.1f} {pg:>8.1f} {sql_time:>8.1f} {res['cores_busy']:>6.2f}"
          f" {max(s['maxrss_mib'] for s in shares):>8.0f} {max(s['rss_loaded_mib'] for s in shares):>8.0f}"
          f"  {res['traces']}/{res['distinct']}/{res['mails']} {sum(s['retries'] for s in shares):>7}")
    if done != count or not res["traces"] == res["distinct"] == res["mails"] == count:
        print(f"{'':>10} WARNING: {done} advanced, {res['traces']} traces, {res['mails']} mails for {count} due")
    sys.stdout.flush()


ADVANCE_HEADER = (f"{'':>10} {'W':>3} {'due':>8} {'wall s':>8} {'ms/mail':>7} {'py cpu':>8} {'pg cpu':>8}"
                  f" {'sql s':>8} {'cores':>6} {'maxrss':>8} {'loaded':>8}  traces/distinct/mails retries")


def print_time_split(res):
    """Where the workers' time went, as a partition of their wall time:
    Python on a CPU; Python runnable but waiting for a CPU (cores busy);
    blocked on the database, split into its backend on a CPU, the backend
    waiting for a CPU, and the rest (disk, commits, locks, round trips)."""
    shares = res["shares"]
    total = sum(s["wall"] for s in shares)
    py = sum(s["py_cpu"] for s in shares)
    py_wait = sum(s["py_wait"] for s in shares)
    pg = sum(s["pg_cpu"] for s in shares)
    pg_wait = sum(s["pg_wait"] for s in shares)
    blocked = max(0.0, total - py - py_wait)
    print(f"  {res['workers']} worker(s), share of worker time: python on CPU {py / total:.0%},"
          f" python waiting for a CPU {py_wait / total:.0%}, blocked on the database {blocked / total:.0%}"
          f" (backend on CPU {pg / total:.0%}, backend waiting for a CPU {pg_wait / total:.0%},"
          f" other {max(0.0, blocked - pg - pg_wait) / total:.0%})."
          f" Machine: {res['cores_busy']:.2f} of {res['machine_cores']:.0f} cores busy,"
          f" {(py + pg) / res['wall']:.2f} by these workers and their backends")


def bench_workers(args):
    header(f"1 vs 2 workers on {args.due} due steps")
    template = due_template(args, args.due)
    runs = {1: [], 2: []}
    print(ADVANCE_HEADER)
    for _round in range(args.repeat):
        for workers in (1, 2):
            run_db = f"{args.db_prefix}_run"
            clone(template, run_db)
            res = run_advance(run_db, workers)
            print_advance(f"{workers} worker", args.due, res)
            runs[workers].append(res)
            if not args.keep:
                drop(run_db)
    one = min(runs[1], key=lambda r: r["wall"])
    two = min(runs[2], key=lambda r: r["wall"])
    print(f"speed-up 2 workers / 1: {one['wall'] / two['wall']:.2f}x (fastest of {args.repeat})")
    for res in (one, two):
        print_time_split(res)
    print("  (maxrss and loaded in MiB: peak resident memory of a worker, and after loading the registry)")
    if not args.keep:
        drop(template)


def bench_volume(args):
    header(f"{args.small} vs {args.large} due steps, {args.workers} worker(s)")
    results = {}
    print(ADVANCE_HEADER)
    for count in (args.small, args.large):
        template = due_template(args, count)
        run_db = f"{args.db_prefix}_run"
        clone(template, run_db)
        results[count] = run_advance(run_db, args.workers)
        print_advance(f"{count}", count, results[count])
        if not args.keep:
            drop(run_db)
            drop(template)
    small, large = results[args.small], results[args.large]
    per_small = small["wall"] / args.small
    per_large = large["wall"] / args.large
    print(f"per email: {1000 * per_small:.2f} ms at {args.small}, {1000 * per_large:.2f} ms at {args.large}:"
          f" ratio {per_large / per_small:.2f} (target <= 1.15)")

    def cpu(res, count):
        return sum(s["py_cpu"] + s["pg_cpu"] for s in res["shares"]) / count

    print(f"CPU per email (python + its backend, whatever else runs on the machine):"
          f" {1000 * cpu(small, args.small):.2f} ms at {args.small}, {1000 * cpu(large, args.large):.2f} ms"
          f" at {args.large}: ratio {cpu(large, args.large) / cpu(small, args.small):.2f}")
    peak = max(s["maxrss_mib"] for s in large["shares"])
    print(f"peak memory of a worker at {args.large}: {peak:.0f} MiB (target < 1024)")
    for count in (args.small, args.large):
        print(f"  {count}:", end="")
        print_time_split(results[count])


# ----------------------------------------------------------------------
# bigdb: detection and enrollment in a large database
# ----------------------------------------------------------------------

def populate_shop(db, contacts, carts):
    """``contacts`` customers, ``carts`` carts and orders with a line each
    (3/4 confirmed orders, 1/4 carts left long ago), their history (a
    processed new-contact trigger per customer, a finished cart enrollment
    per old cart, one customer in ten on a running welcome series), and the
    abandoned-cart sequence running. Committed."""
    import odoo
    from odoo import api
    reg = open_registry(db)
    timings = {}
    with reg.cursor() as cr:
        env = api.Environment(cr, odoo.SUPERUSER_ID, {})
        website = env["website"].search([], order="id", limit=1)
        website.domain = False
        products = env["product.product"].create([{
            "name": name, "list_price": price, "sale_ok": True, "is_published": True,
            "type": "consu", "taxes_id": [(5, 0, 0)],
        } for name, price in (("Bench Pot", 12.5), ("Bench Tree", 80.0))])
        sequence = env.ref("behavioral_email.sequence_cart")
        sequence.write({"cart_idle_hours": 1.0, "website_id": False})
        sequence.action_start()
        start = time.perf_counter()
        clone_partners(env, contacts, BIG_DOMAIN, "b")
        timings["partners"] = time.perf_counter() - start
        # one cart made by the ORM, cloned for the first ``carts`` customers
        partner = env["res.partner"].with_context(behavioral_no_capture=True).create({
            "name": "Reference cart", "email": f"cart@{BIG_DOMAIN}"})
        ref = env["sale.order"].create({
            "partner_id": partner.id, "website_id": website.id,
            "order_line": [(0, 0, {"product_id": products[0].id, "product_uom_qty": 1})],
        })
        env.flush_all()
        start = time.perf_counter()
        # (the source is run with one parameter: literal % are doubled)
        clone_rows(cr._obj, "sale_order", ref.id, f"""
            SELECT nextval('sale_order_id_seq') AS id, p.g, p.id AS partner_id,
                   (now() AT TIME ZONE 'utc') - make_interval(days => 30 + (p.g %% 300)::int) AS at
              FROM (SELECT id, row_number() OVER (ORDER BY id) AS g FROM res_partner
                     WHERE email LIKE '%%@{BIG_DOMAIN}' AND name LIKE 'Customer b%%') p
             WHERE p.g <= {int(carts)}""", {
            "id": "src.id", "name": "'BIG' || src.g",
            "partner_id": "src.partner_id", "partner_invoice_id": "src.partner_id",
            "partner_shipping_id": "src.partner_id",
            "state": "CASE WHEN src.g %% 4 = 0 THEN 'draft' ELSE 'sale' END",
            "date_order": "src.at", "create_date": "src.at", "write_date": "src.at",
            "behavioral_cart_activity": "CASE WHEN src.g %% 4 = 0 THEN src.at END",
            "access_token": "md5(src.id::text)",
        })
        line = ref.order_line
        clone_rows(cr._obj, "sale_order_line", line.id, """
            SELECT nextval('sale_order_line_id_seq') AS id, so.id AS order_id, so.partner_id, so.state,
                   so.date_order AS at
              FROM sale_order so WHERE so.name LIKE 'BIG%%'""", {
            "id": "src.id", "order_id": "src.order_id", "order_partner_id": "src.partner_id",
            "state": "src.state", "create_date": "src.at", "write_date": "src.at",
        })
        ref.unlink()
        partner.unlink()
        timings["carts"] = time.perf_counter() - start
        start = time.perf_counter()
        cr.execute("""
            INSERT INTO behavioral_trigger
                (trigger_type, partner_id, res_model, res_id, occurred_at, payload, dedupe_key, state,
                 company_id, create_uid, create_date, write_uid, write_date)
            SELECT 'partner_created', p.id, 'res.partner', p.id, p.create_date, '{}'::jsonb,
                   'partner_created:' || p.id, 'done', p.company_id, 1, p.create_date, 1, p.create_date
              FROM res_partner p WHERE p.email LIKE %s""", (f"%@{BIG_DOMAIN}",))
        cr.execute("""
            INSERT INTO behavioral_enrollment
                (sequence_id, partner_id, res_model, res_id, order_id, state, exit_reason, goal_since,
                 dedupe_key, company_id, payload, retry_count, create_uid, create_date, write_uid, write_date)
            SELECT %s, so.partner_id, 'sale.order', so.id, so.id, 'done', NULL, so.date_order,
                   'doc:sale.order,' || so.id, so.company_id, '{}'::jsonb, 0, 1, so.date_order, 1, so.date_order
              FROM sale_order so WHERE so.name LIKE 'BIG%%' AND so.state = 'draft'""", (sequence.id,))
        # and one customer in ten on a running welcome series, next email in three days
        welcome = env.ref("behavioral_email.sequence_welcome")
        welcome.action_start()
        cr.execute("""
            INSERT INTO behavioral_enrollment
                (sequence_id, partner_id, res_model, res_id, state, step_id, next_due, goal_since,
                 dedupe_key, company_id, payload, retry_count, create_uid, create_date, write_uid, write_date)
            SELECT %s, p.id, 'res.partner', p.id, 'running', %s, (now() AT TIME ZONE 'utc') + interval '3 days',
                   p.create_date, 'partner:' || p.id, p.company_id, '{}'::jsonb, 0, 1, p.create_date, 1, p.create_date
              FROM res_partner p WHERE p.email LIKE %s AND p.id %% 10 = 0""",
                   (welcome.id, welcome.step_ids.sorted()[-1].id, f"%@{BIG_DOMAIN}"))
        timings["history"] = time.perf_counter() - start
        cr.commit()
    odoo.sql_db.close_all()
    return timings


def bigdb_template(args, contacts, carts):
    name = f"{args.db_prefix}_shop_{contacts}"
    if db_exists(name) and not args.rebuild:
        return name
    base = ensure_installed(f"{args.db_prefix}_base", "behavioral_email", keep_existing=not args.rebuild)
    clone(base, name)
    start = time.perf_counter()
    timings = in_subprocess(populate_shop, name, contacts, carts)
    vacuum(name)
    print(f"== {name}: {contacts} contacts, {carts} carts and orders built in {time.perf_counter() - start:.0f} s"
          f" ({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}, then VACUUM ANALYZE)")
    sys.stdout.flush()
    return name


def measure_detect_enroll(db, new_carts, repeat):
    """Detection and enrollment of ``new_carts`` new idle carts, in a
    transaction rolled back at the end (``repeat`` times, the fastest kept);
    then the query plans of the detection and of the enrollment's slowest
    reads, with EXPLAIN (ANALYZE, BUFFERS)."""
    import odoo
    from odoo import api
    reg = open_registry(db)
    thread = threading.current_thread()
    thread.testing = True  # the crons must not commit: everything is rolled back
    thread.query_count, thread.query_time = 0, 0.0
    out = {"runs": [], "plans": []}
    with reg.cursor() as cr:
        env = api.Environment(cr, odoo.SUPERUSER_ID, {})
        cr.execute("SELECT (SELECT count(*) FROM res_partner), (SELECT count(*) FROM sale_order),"
                   " (SELECT count(*) FROM sale_order_line), (SELECT count(*) FROM behavioral_trigger),"
                   " (SELECT count(*) FROM behavioral_enrollment)")
        out["sizes"] = dict(zip(("partners", "orders", "lines", "triggers", "enrollments"), cr.fetchone()))
        website = env["website"].search([], order="id", limit=1)
        products = env["product.product"].search([("name", "in", ("Bench Pot", "Bench Tree"))])
        Trigger = env["behavioral.trigger"]
        logged = []

        def log_query(cursor, query, params, _start, delay):
            logged.append((1000 * delay, cursor.mogrify(query, params).decode(errors="replace")))

        def new_idle_carts(serial):
            partners = env["res.partner"].with_context(behavioral_no_capture=True).create([{
                "name": f"New shopper {serial}-{i}", "email": f"new{serial}-{i}@{BIG_DOMAIN}",
            } for i in range(new_carts)])
            carts = env["sale.order"].create([{
                "partner_id": partner.id, "website_id": website.id,
                "order_line": [(0, 0, {"product_id": product.id, "product_uom_qty": 1}) for product in products],
            } for partner in partners])
            env.flush_all()
            cr.execute("UPDATE sale_order SET behavioral_cart_activity = %s WHERE id IN %s",
                       (datetime.utcnow() - timedelta(hours=2), tuple(carts.ids)))
            env.invalidate_all()
            return carts

        for serial in range(repeat + 1):  # the first run warms the caches up
            savepoint = cr.savepoint()
            try:
                new_idle_carts(serial)
                cr.execute("SELECT count(*) FROM behavioral_enrollment WHERE state = 'running'")
                running_before = cr.fetchone()[0]
                run = {}
                for phase, method in (("detect", Trigger._cron_detect), ("enroll", Trigger._cron_enroll)):
                    env.invalidate_all()
                    logged.clear()
                    thread.query_hooks = [log_query]
                    queries, sql_time = cr.sql_log_count, thread.query_time
                    start = time.perf_counter()
                    result = method()
                    env.flush_all()
                    run[phase] = {
                        "time": time.perf_counter() - start, "queries": cr.sql_log_count - queries,
                        "sql": thread.query_time - sql_time, "result": len(result) if isinstance(result, list) else result,
                        "log": list(logged),
                    }
                    thread.query_hooks = []
                cr.execute("SELECT count(*) FROM behavioral_enrollment WHERE state = 'running'")
                run["enrolled"] = cr.fetchone()[0] - running_before
                if serial:
                    out["runs"].append(run)
            finally:
                thread.query_hooks = []
                savepoint.close(rollback=True)
                env.invalidate_all()
        # the plans, on a fresh set of new carts (rolled back too)
        best = min(out["runs"], key=lambda r: r["detect"]["time"] + r["enroll"]["time"])
        savepoint = cr.savepoint()
        try:
            new_idle_carts(repeat + 1)
            detect_sql = [q for _ms, q in best["detect"]["log"] if q.lstrip().startswith("INSERT INTO behavioral_trigger")]
            for query in detect_sql:
                cr.execute("EXPLAIN (ANALYZE, BUFFERS) " + query)
                out["plans"].append(("detect", query, "\n".join(row[0] for row in cr.fetchall())))
            reads = sorted((entry for entry in best["enroll"]["log"] if entry[1].lstrip().upper().startswith("SELECT")),
                           reverse=True)[:3]
            for _ms, query in reads:
                cr.execute("EXPLAIN (ANALYZE, BUFFERS) " + query)
                out["plans"].append(("enroll", query, "\n".join(row[0] for row in cr.fetchall())))
        finally:
            savepoint.close(rollback=True)
        for run in out["runs"]:
            for phase in ("detect", "enroll"):
                run[phase]["top"] = sorted(run[phase].pop("log"), reverse=True)[:3]
        cr.rollback()
    odoo.sql_db.close_all()
    return out


def bench_bigdb(args):
    header(f"detection + enrollment of {args.new_carts} new idle carts: "
           f"{args.small_contacts} contacts / {args.small_carts} carts vs {args.contacts} / {args.carts}")
    results = {}
    for contacts, carts in ((args.small_contacts, args.small_carts), (args.contacts, args.carts)):
        db = bigdb_template(args, contacts, carts)
        results[contacts] = in_subprocess(measure_detect_enroll, db, args.new_carts, args.repeat)
        if not args.keep:
            drop(db)
    print(f"{'partners':>9} {'orders':>8} {'triggers':>9} {'enrollm.':>9} {'detect s':>9} {'q':>4}"
          f" {'enroll s':>9} {'q':>4} {'detected':>9} {'enrolled':>9}")
    rows = {}
    for contacts, res in results.items():
        best = min(res["runs"], key=lambda r: r["detect"]["time"] + r["enroll"]["time"])
        rows[contacts] = best
        sizes = res["sizes"]
        print(f"{sizes['partners']:>9} {sizes['orders']:>8} {sizes['triggers']:>9} {sizes['enrollments']:>9}"
              f" {best['detect']['time']:>9.3f} {best['detect']['queries']:>4}"
              f" {best['enroll']['time']:>9.3f} {best['enroll']['queries']:>4}"
              f" {best['detect']['result']:>9} {best['enrolled']:>9}")
    small, large = rows[args.small_contacts], rows[args.contacts]
    print(f"{'ratio':>9} {'':>8} {'':>9} {'':>9} {large['detect']['time'] / small['detect']['time']:>9.2f} {'':>4}"
          f" {large['enroll']['time'] / small['enroll']['time']:>9.2f}")
    print(f"queries equal: detect {small['detect']['queries']} -> {large['detect']['queries']},"
          f" enroll {small['enroll']['queries']} -> {large['enroll']['queries']}")
    for contacts in (args.small_contacts, args.contacts):
        print(f"\nslowest queries with {contacts} contacts (ms):")
        for phase in ("detect", "enroll"):
            for ms, query in rows[contacts][phase]["top"]:
                print(f"  {phase:>6} {ms:8.2f}  {' '.join(query.split())[:150]}")
    for contacts in (args.small_contacts, args.contacts):
        print(f"\nplans with {contacts} contacts (EXPLAIN (ANALYZE, BUFFERS), on another {args.new_carts} new carts):")
        for phase, query, plan in results[contacts]["plans"]:
            print(f"-- {phase}: {' '.join(query.split())[:200]}")
            print("\n".join("   " + line for line in plan.splitlines()))


# ----------------------------------------------------------------------
# capture: /shop/cart/update_json with and without the addon
# ----------------------------------------------------------------------

def free_port():
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def odoo_server(db, *options, env=None, log=None):
    """A real Odoo server (threaded) on ``db``, on a free port of 127.0.0.1."""
    port = free_port()
    cmd = [sys.executable, "-m", "odoo", "-d", db, f"--db-filter=^{db}$", f"--addons-path={addons_path()}",
           "--http-interface=127.0.0.1", f"--http-port={port}", "--log-level=warn",
           "--log-handler=py.warnings:ERROR", *options]
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, **(env or {})),
                            start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/web/health", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError(f"Odoo server on {db} did not start")
            time.sleep(0.5)
        yield url, proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if log:
            out.close()


def setup_shop_product(db):
    """A published product on the shop (committed); returns its id."""
    import odoo
    from odoo import api
    reg = open_registry(db)
    with reg.cursor() as cr:
        env = api.Environment(cr, odoo.SUPERUSER_ID, {})
        env["website"].search([], order="id", limit=1).domain = False
        product = env["product.product"].create({
            "name": "Watering Can", "list_price": 24.0, "sale_ok": True, "is_published": True,
            "type": "consu", "taxes_id": [(5, 0, 0)],
        })
        cr.commit()
        product_id = product.id
    odoo.sql_db.close_all()
    return product_id


def server_cpu(pid, db):
    """CPU seconds used so far by an Odoo server process (all its threads)
    and by the PostgreSQL backends connected to its database."""
    with contextlib.closing(psycopg2.connect(dbname="postgres")) as conn, conn.cursor() as cr:
        cr.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (db,))
        backends = {}
        for (backend,) in cr.fetchall():
            with contextlib.suppress(OSError):
                backends[backend] = proc_cpu(backend)
    return {"server": proc_cpu(pid), "backends": backends}


class CartClient:
    """A visitor adding a product to their cart through the shop's own route."""

    def __init__(self, url, product_id):
        self.url = url
        self.product_id = product_id
        self.cookies = None

    def add(self, fresh=False):
        """POST /shop/cart/update_json; seconds taken. ``fresh``: as a new
        visitor (the request creates the cart)."""
        body = json.dumps({"jsonrpc": "2.0", "method": "call", "id": 1,
                           "params": {"product_id": self.product_id, "add_qty": 1}}).encode()
        request = urllib.request.Request(f"{self.url}/shop/cart/update_json", data=body,
                                         headers={"Content-Type": "application/json"})
        if self.cookies and not fresh:
            request.add_header("Cookie", self.cookies)
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as resp:
            payload = json.loads(resp.read())
            cookie = resp.headers.get("Set-Cookie")
        elapsed = time.perf_counter() - start
        if "error" in payload:
            raise RuntimeError(payload["error"])
        if cookie and not fresh:
            self.cookies = cookie.split(";", 1)[0]
        return elapsed


def bench_capture(args):
    header(f"/shop/cart/update_json with and without behavioral_email, {args.requests} requests each")
    plain = ensure_installed(f"{args.db_prefix}_plain", "website_sale,mass_mailing", keep_existing=not args.rebuild)
    base = ensure_installed(f"{args.db_prefix}_base", "behavioral_email", keep_existing=not args.rebuild)
    dbs = {"without addon": f"{args.db_prefix}_capture_plain", "with addon": f"{args.db_prefix}_capture"}
    clone(plain, dbs["without addon"])
    clone(base, dbs["with addon"])
    products = {name: in_subprocess(setup_shop_product, db) for name, db in dbs.items()}
    times = {name: {"add": [], "new": []} for name in dbs}
    with contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(odoo_server(db, "--max-cron-threads=0")) for name, db in dbs.items()}
        clients = {name: CartClient(servers[name][0], products[name]) for name in dbs}
        for _ in range(20):  # warm-up: templates, caches, the cart itself
            for name in dbs:
                clients[name].add()
                clients[name].add(fresh=True)
        order = list(dbs)
        cpu0 = {name: server_cpu(servers[name][1], db) for name, db in dbs.items()}
        for i in range(args.requests):
            for name in (order if i % 2 else order[::-1]):  # in turns, so both share the load
                times[name]["add"].append(clients[name].add())
                times[name]["new"].append(clients[name].add(fresh=True))
        cpu1 = {name: server_cpu(servers[name][1], db) for name, db in dbs.items()}
    print(f"{'':>14} {'kind':>4} {'median ms':>10} {'mean ms':>8} {'p10 ms':>7} {'p90 ms':>7}")
    for name in dbs:
        for kind in ("add", "new"):
            values = sorted(1000 * t for t in times[name][kind])
            print(f"{name:>14} {kind:>4} {statistics.median(values):>10.2f} {statistics.fmean(values):>8.2f}"
                  f" {values[len(values) // 10]:>7.2f} {values[9 * len(values) // 10]:>7.2f}")
    for kind, label in (("add", "add to an existing cart"), ("new", "first add (creates the cart)")):
        with_, without = times["with addon"][kind], times["without addon"][kind]
        median = statistics.median(with_) / statistics.median(without) - 1
        mean = statistics.fmean(with_) / statistics.fmean(without) - 1
        print(f"overhead, {label}: {median:+.1%} on the median, {mean:+.1%} on the mean (target <= +3%)")
    cpu = {}
    for name in dbs:
        server = cpu1[name]["server"] - cpu0[name]["server"]
        backends = sum(value - cpu0[name]["backends"].get(pid, 0.0) for pid, value in cpu1[name]["backends"].items())
        cpu[name] = (server + backends) / (2 * args.requests)
        print(f"{name:>14}: CPU per request (the Odoo server + its PostgreSQL backends): {1000 * cpu[name]:.2f} ms"
              f" ({1000 * server / (2 * args.requests):.2f} + {1000 * backends / (2 * args.requests):.2f})")
    print(f"overhead in CPU per request (add and first add together): "
          f"{cpu['with addon'] / cpu['without addon'] - 1:+.1%}")
    if not args.keep:
        for db in dbs.values():
            drop(db)


# ----------------------------------------------------------------------
# latency: from the event to the first email queued, real cron threads
# ----------------------------------------------------------------------

def setup_latency(db, detect_minutes):
    """A one-email welcome sequence and the cart sequence (idle 1 minute),
    both with their first email at delay 0; detection every
    ``detect_minutes``. Committed; returns the cart product id."""
    import odoo
    from odoo import api
    reg = open_registry(db)
    with reg.cursor() as cr:
        env = api.Environment(cr, odoo.SUPERUSER_ID, {})
        env["website"].search([], order="id", limit=1).domain = False
        welcome = env.ref("behavioral_email.sequence_welcome")
        welcome.step_ids.sorted()[1:].unlink()
        welcome.action_start()
        cart = env.ref("behavioral_email.sequence_cart")
        cart.write({"cart_idle_hours": 1 / 60, "website_id": False})
        cart.step_ids.sorted()[:1].write({"delay_value": 0})
        cart.action_start()
        env.ref("behavioral_email.ir_cron_behavioral_detect").write({
            "interval_number": detect_minutes, "interval_type": "minutes"})
        product = env["product.product"].create({
            "name": "Latency Pot", "list_price": 12.5, "sale_ok": True, "is_published": True,
            "type": "consu", "taxes_id": [(5, 0, 0)],
        })
        cr.commit()
        product_id = product.id
    odoo.sql_db.close_all()
    return product_id


def first_mail_at(conn, field, value, timeout):
    """Poll (every 10 ms) for the first behavioral mail.mail row of an
    enrollment whose ``field`` (partner_id, order_id) is ``value``; returns
    the time.perf_counter() at which it was seen, or None."""
    deadline = time.perf_counter() + timeout
    with conn.cursor() as cr:
        while time.perf_counter() < deadline:
            cr.execute("""SELECT 1 FROM mail_mail mail
                            JOIN mail_message msg ON msg.id = mail.mail_message_id
                            JOIN behavioral_enrollment e ON e.id = msg.res_id AND msg.model = 'behavioral.enrollment'
                           WHERE {} = %s LIMIT 1""".format({"partner_id": "e.partner_id", "order_id": "e.order_id"}[field]),
                       (value,))
            if cr.fetchone():
                return time.perf_counter()
            time.sleep(0.01)
    return None


def bench_latency(args):
    variant = "with behavioral_email_queue_job (job runner, channel capacity 2)" if args.queue_job else "cron threads"
    header(f"event to first email queued, {variant}, --max-cron-threads=2")
    modules = "behavioral_email,behavioral_email_queue_job" if args.queue_job else "behavioral_email"
    base = ensure_installed(f"{args.db_prefix}_base{'_qj' if args.queue_job else ''}", modules,
                            keep_existing=not args.rebuild)
    db = f"{args.db_prefix}_latency"
    clone(base, db)
    product_id = in_subprocess(setup_latency, db, args.detect_minutes)
    options = ["--max-cron-threads=2"]
    env = {}
    if args.queue_job:
        options.append("--load=base,web,queue_job")
        env["ODOO_QUEUE_JOB_CHANNELS"] = "root:2,root.behavioral_email:2"
    log = f"/tmp/{db}.log"
    with odoo_server(db, *options, env=env, log=log) as (url, _pid):
        models = xmlrpc.client.ServerProxy(f"{url}/xmlrpc/2/object", allow_none=True)
        uid = xmlrpc.client.ServerProxy(f"{url}/xmlrpc/2/common").authenticate(db, "admin", "admin", {})
        time.sleep(10 if args.queue_job else 2)  # the job runner starts 5 s after the server
        conn = psycopg2.connect(dbname=db)
        conn.autocommit = True
        # warm-up (not counted): the first email compiles the templates
        partner_id = models.execute_kw(db, uid, "admin", "res.partner", "create", [{
            "name": "Latency warm-up", "email": "warmup@bench.example.com"}])
        first_mail_at(conn, "partner_id", partner_id, timeout=300)
        print(f"{'kind':>16} {'run':>4} {'latency s':>10}  from")
        partner_times = []
        for run in range(args.runs):
            start = time.perf_counter()
            partner_id = models.execute_kw(db, uid, "admin", "res.partner", "create", [{
                "name": f"Latency contact {run}", "email": f"latency{run}@bench.example.com"}])
            seen = first_mail_at(conn, "partner_id", partner_id, timeout=300)
            latency = seen - start if seen else float("nan")
            partner_times.append(latency)
            print(f"{'partner_created':>16} {run:>4} {latency:>10.2f}  the create request sent")
            sys.stdout.flush()
            time.sleep(1)
        cart_times = []
        for run in range(args.cart_runs):
            partner_id = models.execute_kw(db, uid, "admin", "res.partner", "create", [{
                "name": f"Latency shopper {run}", "email": f"shopper{run}@bench.example.com"}])
            cart_id = models.execute_kw(db, uid, "admin", "sale.order", "create", [{
                "partner_id": partner_id, "website_id": 1,
                "order_line": [(0, 0, {"product_id": product_id, "product_uom_qty": 1})]}])
            with conn.cursor() as cr:
                cr.execute("""SELECT EXTRACT(EPOCH FROM (now() AT TIME ZONE 'utc')
                                     - (behavioral_cart_activity + interval '1 minute'))
                                FROM sale_order WHERE id = %s""", (cart_id,))
                idle_in = -cr.fetchone()[0]
            idle_at = time.perf_counter() + idle_in  # the moment the cart becomes abandoned
            seen = first_mail_at(conn, "order_id", cart_id, timeout=120 + 60 * args.detect_minutes)
            latency = seen - idle_at if seen else float("nan")
            cart_times.append(latency)
            print(f"{'cart_abandoned':>16} {run:>4} {latency:>10.2f}  the cart idle for 1 minute")
            sys.stdout.flush()
        conn.close()
    if partner_times:
        print(f"partner_created: median {statistics.median(partner_times):.2f} s, max {max(partner_times):.2f} s")
    if cart_times:
        print(f"cart_abandoned: median {statistics.median(cart_times):.2f} s, max {max(cart_times):.2f} s"
              f" (detection runs every {args.detect_minutes} minute(s): nothing wakes it when a cart becomes idle)")
    print(f"(server log: {log})")
    if not args.keep:
        drop(db)


# ----------------------------------------------------------------------
# main
# ----------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench", choices=["workers", "volume", "bigdb", "capture", "latency", "all"])
    parser.add_argument("--db-prefix", default="behavioral_email_scale")
    parser.add_argument("--keep", action="store_true", help="keep the databases made (default: drop them)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild kept databases")
    parser.add_argument("--batch", type=int, default=200, help="behavioral_email.advance_batch_size (200)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measure, the fastest kept")
    parser.add_argument("--due", type=int, default=20000, help="workers: due steps (20000)")
    parser.add_argument("--small", type=int, default=10000, help="volume: small run (10000)")
    parser.add_argument("--large", type=int, default=100000, help="volume: large run (100000)")
    parser.add_argument("--workers", type=int, default=1, help="volume: worker processes (1)")
    parser.add_argument("--contacts", type=int, default=1000000, help="bigdb: contacts (1000000)")
    parser.add_argument("--carts", type=int, default=200000, help="bigdb: carts and orders (200000)")
    parser.add_argument("--small-contacts", type=int, default=1000)
    parser.add_argument("--small-carts", type=int, default=1000)
    parser.add_argument("--new-carts", type=int, default=200, help="bigdb: new idle carts per run (200)")
    parser.add_argument("--requests", type=int, default=300, help="capture: requests per server and kind")
    parser.add_argument("--runs", type=int, default=5, help="latency: new contacts")
    parser.add_argument("--cart-runs", type=int, default=2, help="latency: new idle carts")
    parser.add_argument("--detect-minutes", type=int, default=1, help="latency: detection cron interval")
    parser.add_argument("--queue-job", action="store_true", help="latency: with the queue_job bridge and runner")
    args = parser.parse_args()
    if not shutil.which("createdb"):
        sys.exit("PostgreSQL client tools (createdb, dropdb) are needed")
    benches = {"workers": bench_workers, "volume": bench_volume, "bigdb": bench_bigdb,
               "capture": bench_capture, "latency": bench_latency}
    for name in (benches if args.bench == "all" else [args.bench]):
        benches[name](args)
        print()
    if not args.keep:
        for suffix in ("_base", "_base_qj", "_plain"):
            drop(args.db_prefix + suffix)


if __name__ == "__main__":
    main()
