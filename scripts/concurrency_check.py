"""Several cron workers advancing the same queue at once: no duplicate, no loss.

Builds a throwaway database (the addon installed, no demo data) and commits a
queue of due first emails:

- ``--scenario carts`` (default): N customers with an abandoned website cart,
  run through the shipped cart recovery sequence. Every email carries links
  tracked per cart (the restore link), so the workers keep creating link
  trackers and random short codes at the same moment.
- ``--scenario welcome``: N new contacts and a one-email welcome sequence.

Then W processes, each with its own connection as separate Odoo servers would
have, run the advancing cron at the same time. With ``--kill``, worker 0 is
killed with SIGKILL in the middle of its second batch (rows locked, nothing
committed); a last cron run ("the crons left to finish") follows in a fresh
process. The check holds when every enrollment has exactly one trace, one
mail and no failure, and every customer exactly one first email.

Usage: python3 scripts/concurrency_check.py [--scenario carts] [--contacts 2000]
       [--workers 4] [--batch 200] [--kill] [--db NAME] [--queue-job]
Exits 0 when the check holds, 1 otherwise. tests/test_concurrency.py runs it.

With --queue-job (OCA queue_job and behavioral_email_queue_job installed):
the advancing cron queues its batches as jobs, and W processes perform them
the way queue_job's runner and controller do, one worker being killed in
the middle of a job; see queue_job_check(). tests/test_queue_job.py runs it.
"""
import argparse
import logging
import multiprocessing
import os
import signal
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


class RetryCounter(logging.Handler):
    """Counts the transient conflicts a worker met and retried."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record):
        message = record.getMessage()
        if "concurrent update" in message or "tracked link conflict" in message:
            self.count += 1


def advance_by_cron(reg):
    """Run the advancing cron once, as an Odoo cron worker does: it claims
    and runs batches until none is due. Returns (enrollments advanced, 0)."""
    import odoo
    from odoo import api
    with reg.cursor() as cr:
        env = api.Environment(cr, odoo.SUPERUSER_ID, {})
        done = env["behavioral.enrollment"]._cron_advance()
        cr.commit()
    return done, 0


def worker(db, index, ready, results, run_batches, die_in_batch=0):
    """One Odoo server with its own connection: load the registry, wait for
    the other workers, then run batches with ``run_batches(registry)``
    (:func:`advance_by_cron` or :func:`advance_by_jobs`), which returns
    (work done, failures). ``die_in_batch``: SIGKILL this process right
    after its Nth batch, processed but not committed.

    results[index]: (pid, work done, failures, seconds, transient conflicts retried)
    """
    try:
        reg = registry(db)
    except BaseException:
        ready.abort()  # the others must not wait for a worker that will never come
        raise
    counter = RetryCounter()
    batch_logger = logging.getLogger("odoo.addons.behavioral_email")
    batch_logger.setLevel(logging.INFO)
    batch_logger.addHandler(counter)
    if die_in_batch:
        Enrollment = reg["behavioral.enrollment"]
        original = Enrollment._advance_safely
        batches = []

        def advance_then_die(self):
            original(self)
            batches.append(len(self))
            if len(batches) == die_in_batch:
                # killed mid-way: the batch is processed, locked, not committed
                os.kill(os.getpid(), signal.SIGKILL)

        Enrollment._advance_safely = advance_then_die
    ready.wait(timeout=600)  # every worker loaded: all start at once
    t0 = time.perf_counter()
    done, failed = run_batches(reg)
    results[index] = (os.getpid(), done, failed, time.perf_counter() - t0, counter.count)


def start_workers(context, db, count, results, run_batches, die_in_batch=None):
    """Start ``count`` worker processes, released together; ``die_in_batch``:
    {worker index: batch after which it is killed}.

    Returns (the processes, their barrier): hold on to the barrier until they
    are joined, the workers open it by name after they start.
    """
    ready = context.Barrier(count)
    procs = [context.Process(target=worker, args=(db, i, ready, results, run_batches,
                                                  (die_in_batch or {}).get(i, 0)))
             for i in range(count)]
    for proc in procs:
        proc.start()
    return procs, ready


def create_database(db, modules):
    """A fresh database ``db`` with ``modules`` installed, no demo data."""
    subprocess.run(["dropdb", "--if-exists", db], check=True)
    print(f"building {db} ({modules}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "odoo", "-d", db, f"--addons-path={addons_path()}",
                    "-i", modules, "--without-demo=all", "--stop-after-init",
                    "--log-level=warn", "--log-handler=py.warnings:ERROR"], check=True)


def build_welcome(env, contacts):
    """A running one-email welcome sequence and ``contacts`` new contacts
    (each one a trigger for it); returns the sequence."""
    sequence = env["behavioral.sequence"].create({
        "name": "Concurrency check", "trigger_type": "partner_created", "reentry": "partner",
        "email_from": "shop@example.com",
        "step_ids": [(0, 0, {"subject": "Hello {{ object.partner_id.name }}",
                             "body_html": "<p>Hello <t t-out='object.partner_id.name'/></p>",
                             "delay_value": 0})],
    })
    sequence.action_start()
    env["res.partner"].create([
        {"name": f"Contact {i}", "email": f"contact{i}@example.com"} for i in range(contacts)
    ])
    return sequence


def build_queue(env, args):
    """Commit a queue of due first emails; return (sequence, enrolled)."""
    from datetime import timedelta

    from odoo import fields
    env["ir.config_parameter"].set_param("behavioral_email.advance_batch_size", args.batch)
    if args.scenario == "welcome":
        sequence = build_welcome(env, args.contacts)
    else:
        env.company.email = "shop@example.com"
        website = env["website"].search([], limit=1)
        product = env["product.product"].create({
            "name": "Terracotta Pot", "list_price": 12.5, "sale_ok": True, "is_published": True})
        partners = env["res.partner"].with_context(behavioral_no_capture=True).create([
            {"name": f"Customer {i}", "email": f"customer{i}@example.com"} for i in range(args.contacts)
        ])
        orders = env["sale.order"].create([{
            "partner_id": partner.id, "website_id": website.id,
            "order_line": [(0, 0, {"product_id": product.id, "product_uom_qty": 2})],
        } for partner in partners])
        env.flush_all()
        idle_since = fields.Datetime.now() - timedelta(hours=3)
        env.cr.execute("UPDATE sale_order SET behavioral_cart_activity = %s WHERE id IN %s",
                       (idle_since, tuple(orders.ids)))
        sequence = env.ref("behavioral_email.sequence_cart")
        sequence.write({"cart_idle_hours": 1.0, "email_from": "shop@example.com"})
        sequence.action_start()
        env["behavioral.trigger"]._cron_detect()
    env["behavioral.trigger"]._cron_enroll()
    enrolled = env["behavioral.enrollment"].search_count([("sequence_id", "=", sequence.id)])
    return sequence, enrolled


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=["carts", "welcome"], default="carts")
    parser.add_argument("--contacts", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--kill", action="store_true", help="SIGKILL worker 0 in its second batch")
    parser.add_argument("--db", default=DB)
    parser.add_argument("--queue-job", action="store_true",
                        help="advance through queue jobs (behavioral_email_queue_job)")
    args = parser.parse_args()
    if args.queue_job:
        sys.exit(queue_job_check(args))
    db = args.db
    create_database(db, "behavioral_email")
    import odoo
    from odoo import api
    reg = registry(db)
    with reg.cursor() as cr:
        env = api.Environment(cr, odoo.SUPERUSER_ID, {})
        sequence, enrolled = build_queue(env, args)
        first_step = sequence.step_ids.sorted()[:1]
        cr.commit()
    print(f"{enrolled} enrollments due ({args.scenario}), {args.workers} workers, batches of {args.batch}"
          + (", worker 0 killed in its second batch" if args.kill else ""), flush=True)

    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        results = manager.dict()
        # the barrier is held (_ready) until the workers are joined
        procs, _ready = start_workers(context, db, args.workers, results, advance_by_cron,
                                      die_in_batch={0: 2} if args.kill else None)
        for proc in procs:
            proc.join()
        exitcodes = [proc.exitcode for proc in procs]
        # the crons left to finish: what a killed worker held is picked up
        alone = context.Barrier(1)
        last = context.Process(target=worker, args=(db, "finish", alone, results, advance_by_cron))
        last.start()
        last.join()
        shares = dict(results)

    with reg.cursor() as cr:
        cr.execute("""SELECT count(*), count(DISTINCT (enrollment_id, step_id)) FROM behavioral_trace
                       WHERE step_id = %s AND state = 'sent'""", (first_step.id,))
        traces, distinct = cr.fetchone()
        cr.execute("""SELECT count(*), count(DISTINCT mail.id) FROM mail_mail mail
                        JOIN mail_message msg ON msg.id = mail.mail_message_id
                       WHERE msg.model = 'behavioral.enrollment'""")
        mails, _distinct_mails = cr.fetchone()
        cr.execute("""SELECT count(*) FROM (
                          SELECT e.partner_id FROM behavioral_trace t
                            JOIN behavioral_enrollment e ON e.id = t.enrollment_id
                           WHERE t.step_id = %s AND t.state = 'sent'
                           GROUP BY e.partner_id HAVING count(*) = 1) one""", (first_step.id,))
        customers_once = cr.fetchone()[0]
        cr.execute("SELECT count(*) FROM behavioral_enrollment WHERE state = 'failed'")
        failed = cr.fetchone()[0]
        cr.execute("SELECT count(*) FROM behavioral_trace WHERE state != 'sent'")
        not_sent = cr.fetchone()[0]
    for index in sorted(shares, key=str):
        _pid, count, _failed, seconds, retried = shares[index]
        print(f"  worker {index}: advanced {count} enrollments in {seconds:.1f}s, {retried} transient conflicts retried")
    killed = [i for i, code in enumerate(exitcodes) if code == -signal.SIGKILL]
    if killed:
        print(f"  worker(s) {killed} killed (SIGKILL) mid-batch")
    print(f"traces {traces} (distinct enrollment/step: {distinct}), mails {mails}, "
          f"customers with exactly one first email {customers_once}, failed {failed}, other traces {not_sent}")
    ok = (traces == distinct == mails == customers_once == enrolled and not failed and not not_sent
          and (not args.kill or killed == [0]))
    print("OK: every enrollment advanced exactly once" if ok else "FAILED: duplicates or losses")
    odoo.sql_db.close_db(db)
    subprocess.run(["dropdb", "--if-exists", db], check=False)
    sys.exit(0 if ok else 1)


# ----------------------------------------------------------------------
# --queue-job: the same check, the batches run as queue jobs
# ----------------------------------------------------------------------

QUEUE_JOB_CHANNEL = "root.behavioral_email"


def pick_job(cr):
    """Take the next pending job of the channel, as queue_job's runner does
    (state ``enqueued``), with SKIP LOCKED so that workers never take the
    same one; committed at once. Returns its uuid or None."""
    cr.execute("""
        UPDATE queue_job SET state = 'enqueued', date_enqueued = now() AT TIME ZONE 'utc'
         WHERE id = (SELECT id FROM queue_job
                      WHERE state = 'pending' AND channel = %s
                        AND (eta IS NULL OR eta <= now() AT TIME ZONE 'utc')
                      ORDER BY priority, date_created, id LIMIT 1
                      FOR NO KEY UPDATE SKIP LOCKED)
        RETURNING uuid""", (QUEUE_JOB_CHANNEL,))
    row = cr.fetchone()
    cr.commit()
    return row and row[0]


def advance_by_jobs(reg):
    """Perform the channel's jobs until none is pending, enqueued or started:
    each in its own transaction, through queue_job's own controller code
    (acquire: state started + lock; perform, done, commit; retry or fail).
    Returns (jobs performed, jobs failed)."""
    from odoo.service.model import PG_CONCURRENCY_EXCEPTIONS_TO_RETRY
    performed = failed = 0
    while True:
        try:
            done = perform_next_job(reg)
        except PG_CONCURRENCY_EXCEPTIONS_TO_RETRY:
            # another worker took or updated the same job row meanwhile: Odoo
            # retries such a request (odoo.service.model.retrying), so do we
            time.sleep(0.05)
            continue
        if done is None:
            break
        performed += done == "performed"
        failed += done == "failed"
    return performed, failed


def perform_next_job(reg):
    """Take and perform the next job of the channel, in its own transaction.
    Returns "performed", "failed", "waiting" (none to take now), or None when
    no job is left to perform."""
    import odoo
    from odoo import api
    from odoo.addons.queue_job.controllers.main import RunJobController
    with reg.cursor() as cr:
        env = api.Environment(cr, odoo.SUPERUSER_ID, {})
        uuid = pick_job(cr)
        if not uuid:
            cr.execute("""SELECT count(*) FROM queue_job
                           WHERE channel = %s AND state IN ('pending', 'enqueued', 'started')""",
                       (QUEUE_JOB_CHANNEL,))
            if not cr.fetchone()[0]:
                return None
            time.sleep(0.05)  # a running job may queue the next batch of its slot
            return "waiting"
        job = RunJobController._acquire_job(env, uuid)  # pylint: disable=protected-access
        if not job:
            return "waiting"
        try:
            RunJobController._runjob(env, job)  # pylint: disable=protected-access
        except Exception:  # noqa: BLE001 - _runjob marked the job failed and logged why
            return "failed"
        return "performed"


def queue_job_check(args):
    """The advancing cron queues jobs (slots of batches, channel capacity =
    number of workers); W processes perform them. Once the work is under way
    one worker is killed (SIGKILL) in the middle of a job: its transaction
    dies with it, queue_job's dead-job requeuer (run here as the runner would
    run it) puts the job back, and another worker performs it again. Every
    enrollment must be advanced exactly once and every job end done."""
    db = args.db
    create_database(db, "behavioral_email,behavioral_email_queue_job")
    # what an operator sets: the channel runs as many jobs at once as there are workers
    os.environ["ODOO_QUEUE_JOB_CHANNELS"] = f"root:{args.workers},{QUEUE_JOB_CHANNEL}:{args.workers}"
    import odoo
    from odoo import api
    reg = registry(db)
    from odoo.addons.queue_job.jobrunner.runner import Database
    with reg.cursor() as cr:
        env = api.Environment(cr, odoo.SUPERUSER_ID, {})
        env["ir.config_parameter"].set_param("behavioral_email.advance_batch_size", args.batch)
        sequence = build_welcome(env, args.contacts)
        # enrollment is not what is checked here: done inline (queue_job's own switch)
        env["behavioral.trigger"].with_context(queue_job__no_delay=True)._cron_enroll()
        enrolled = env["behavioral.enrollment"].search_count([("sequence_id", "=", sequence.id)])
        cr.commit()
        # the real cron, outside any test mode: it queues the jobs
        slots = env["behavioral.enrollment"]._cron_advance()
        cr.commit()
        cr.execute("SELECT count(*), array_agg(identity_key ORDER BY identity_key) FROM queue_job")
        queued, keys = cr.fetchone()
        print(f"{enrolled} enrollments due, batches of {args.batch}: the cron queued {queued} job(s) "
              f"in {slots} slot(s) {keys}; {args.workers} workers")

    context = multiprocessing.get_context("spawn")
    killed = None
    with context.Manager() as manager:
        results = manager.dict()
        procs, _ready = start_workers(context, db, args.workers, results, advance_by_jobs)
        runner_db = Database(db)  # queue_job's own requeuer, as its job runner runs it
        try:
            victim = procs[0] if args.workers > 1 else None
            while any(proc.is_alive() for proc in procs):
                if victim and victim.is_alive() and killed is None:
                    with reg.cursor() as cr:
                        cr.execute("""SELECT uuid FROM queue_job WHERE state = 'started' AND worker_pid = %s""",
                                   (victim.pid,))
                        row = cr.fetchone()
                    if row:
                        os.kill(victim.pid, signal.SIGKILL)
                        killed = row[0]
                        print(f"  worker 0 (pid {victim.pid}) killed in the middle of job {killed}")
                        continue
                runner_db.requeue_dead_jobs()
                time.sleep(0.02 if killed is None else 1)
        finally:
            runner_db.close()
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
        cr.execute("""SELECT state, count(*) FROM queue_job GROUP BY state""")
        job_states = dict(cr.fetchall())
        cr.execute("""SELECT state, retry FROM queue_job WHERE uuid = %s""", (killed,))
        killed_job = cr.fetchone()
        cr.execute("""SELECT count(DISTINCT identity_key) FROM queue_job""")
        slots_used = cr.fetchone()[0]
    for index in sorted(shares):
        pid, performed, failed, seconds, _retried = shares[index]
        print(f"  worker {index} (pid {pid}): performed {performed} job(s), {failed} failed, in {seconds:.1f}s")
    print(f"jobs {sum(job_states.values())} in {slots_used} slot(s), by state {job_states}")
    if killed:
        print(f"killed job {killed}: state {killed_job[0]}, performed {killed_job[1]} time(s)")
    print(f"traces {traces} (distinct enrollment/step: {distinct}), mails {mails}, enrollments done {done}")
    ok = (traces == distinct == mails == done == enrolled
          and set(job_states) == {"done"}
          and (not killed or (killed_job[0] == "done" and killed_job[1] > 1)))
    print("OK: every enrollment advanced exactly once, through jobs" if ok else "FAILED: duplicates, losses or jobs left")
    odoo.sql_db.close_db(db)
    subprocess.run(["dropdb", "--if-exists", db], check=False)
    return 0 if ok else 1


if __name__ == "__main__":
    main()
