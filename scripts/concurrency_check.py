"""Several cron workers advancing the same queue at once: no duplicate, no loss.

Builds a throwaway database (the addon installed, no demo data), enrolls
N new contacts in a one-email sequence and commits; then W processes, each
with its own connection as separate Odoo workers would have, run the
advancing cron at the same time. Checks that every enrollment got exactly one
trace and one mail, and prints how the work was shared.

Usage: python3 scripts/concurrency_check.py [--contacts 2000] [--workers 4] [--batch 50] [--db NAME]
Exits 0 when the check holds, 1 otherwise. tests/test_concurrency.py runs it.
"""
import argparse
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "behavioral_email_concurrency"  # replaced by --db


def addons_path():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "odoo_paths.py")],
                         capture_output=True, text=True, check=True)
    return f"{out.stdout.strip()},{ROOT}"


def registry(db):
    import odoo
    from odoo.tools import config
    config.parse_config(["-d", db, f"--addons-path={addons_path()}", "--log-level=warn",
                         "--log-handler=py.warnings:ERROR"])
    return odoo.modules.registry.Registry(db)


def worker(db, index, ready, results):
    import odoo
    from odoo import api
    reg = registry(db)
    ready.wait(timeout=300)  # every worker loaded: all start at once
    with reg.cursor() as cr:
        env = api.Environment(cr, odoo.SUPERUSER_ID, {})
        t0 = time.perf_counter()
        done = env["behavioral.enrollment"]._cron_advance()
        cr.commit()
        results[index] = (done, time.perf_counter() - t0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--db", default=DB)
    args = parser.parse_args()
    db = args.db

    subprocess.run(["dropdb", "--if-exists", db], check=True)
    print(f"building {db} ...")
    subprocess.run([sys.executable, "-m", "odoo", "-d", db, f"--addons-path={addons_path()}",
                    "-i", "behavioral_email", "--without-demo=all", "--stop-after-init",
                    "--log-level=warn", "--log-handler=py.warnings:ERROR"], check=True)
    import odoo
    from odoo import api
    reg = registry(db)
    with reg.cursor() as cr:
        env = api.Environment(cr, odoo.SUPERUSER_ID, {})
        env["ir.config_parameter"].set_param("behavioral_email.advance_batch_size", args.batch)
        sequence = env["behavioral.sequence"].create({
            "name": "Concurrency check", "trigger_type": "partner_created", "reentry": "partner",
            "email_from": "shop@example.com",
            "step_ids": [(0, 0, {"subject": "Hello {{ object.partner_id.name }}",
                                 "body_html": "<p>Hello <t t-out='object.partner_id.name'/></p>",
                                 "delay_value": 0})],
        })
        sequence.action_start()
        env["res.partner"].create([
            {"name": f"Contact {i}", "email": f"contact{i}@example.com"} for i in range(args.contacts)
        ])
        env["behavioral.trigger"]._cron_enroll()
        enrolled = env["behavioral.enrollment"].search_count([("sequence_id", "=", sequence.id)])
        cr.commit()
        print(f"{enrolled} enrollments due, {args.workers} workers, batches of {args.batch}")

    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        results = manager.dict()
        ready = context.Barrier(args.workers)
        procs = [context.Process(target=worker, args=(db, i, ready, results)) for i in range(args.workers)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        shares = dict(results)

    with reg.cursor() as cr:
        cr.execute("""SELECT count(*), count(DISTINCT (enrollment_id, step_id)) FROM behavioral_trace""")
        traces, distinct = cr.fetchone()
        cr.execute("""SELECT count(*) FROM mail_mail mail JOIN mail_message msg ON msg.id = mail.mail_message_id
                       WHERE msg.model = 'behavioral.enrollment'""")
        mails = cr.fetchone()[0]
        cr.execute("""SELECT count(*) FROM behavioral_enrollment WHERE state = 'done'""")
        done = cr.fetchone()[0]
    for index in sorted(shares):
        count, seconds = shares[index]
        print(f"  worker {index}: advanced {count} enrollments in {seconds:.1f}s")
    print(f"traces {traces} (distinct enrollment/step: {distinct}), mails {mails}, enrollments done {done}")
    ok = traces == distinct == mails == done == enrolled and sum(c for c, _s in shares.values()) == enrolled
    print("OK: every enrollment advanced exactly once" if ok else "FAILED: duplicates or losses")
    odoo.sql_db.close_db(db)
    subprocess.run(["dropdb", "--if-exists", db], check=False)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
