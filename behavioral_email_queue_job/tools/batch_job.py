"""One batch per job: the behavioral email crons on OCA queue_job.

Without this addon a cron claims a batch (``FOR UPDATE SKIP LOCKED``),
processes it, commits and claims the next one until nothing is left
(``behavioral_email.tools.process_in_batches``); several cron workers share
the rows. With it, the cron only counts what is due and queues jobs, each of
which runs ONE claim + process cycle of the very same unit of work
(``BatchWork``) and is committed by queue_job when it succeeds; the job
runners of any number of servers run them in parallel.

* The claim stays the exactly-once mechanism: two jobs never hold the same
  rows, and a row moved on by a committed job is no longer claimable.
* Jobs are queued per *slot*: at most ``SLOTS_PER_CAPACITY`` times the
  channel's capacity, each with the identity key ``behavioral_email:<work>:<slot>``,
  so that a cron running again while its jobs still wait adds none.
  A job that claimed a full batch queues the next job of its slot (it
  becomes visible when the job commits): the slots drain the queue,
  however long it is, and stop by themselves when it is empty.
* A job that fails or is killed commits nothing: its rows are released and
  claimed again by its retry (queue_job requeues a killed job) or by another
  slot. A conflict with a concurrent transaction is retried after a
  jittered pause, as the cron loop does.
"""
import logging
import math
from contextlib import contextmanager
from datetime import timedelta

from odoo import fields
from odoo.tools import SQL

from odoo.addons.behavioral_email.tools import can_commit, is_concurrency_error
from odoo.addons.queue_job.exception import RetryableJobError
from odoo.addons.queue_job.jobrunner import runner
from odoo.addons.queue_job.jobrunner.channels import ChannelManager
from odoo.addons.queue_job.utils import must_run_without_delay

_logger = logging.getLogger(__name__)

CHANNEL = "root.behavioral_email"
CHANNEL_XMLID = "behavioral_email_queue_job.channel_behavioral_email"
# jobs queued per job the channel runs at once: while one runs, the next one
# of the same capacity is ready for the runner
SLOTS_PER_CAPACITY = 2
# pause before retrying a batch that met a concurrent transaction (seconds)
CONCURRENCY_RETRY_SECONDS = (1, 5)
# our jobs waiting longer than this: no job runner takes them
STALLED_AFTER = timedelta(minutes=15)


def use_jobs(env):
    """Whether the crons hand their batches to jobs.

    Not in a transaction that is never committed (tests, the demo, the
    benchmarks): jobs stored there would never reach a runner, so the cron
    does the work itself, as without queue_job. Nor when queue_job is told to
    run jobs at once (``QUEUE_JOB__NO_DELAY``, context ``queue_job__no_delay``):
    then the cron's own loop is the way to do it now. Nor when the jobs
    queued before still wait after ``STALLED_AFTER`` (see :func:`jobs_stalled`).
    """
    return can_commit(env) and not must_run_without_delay(env) and not jobs_stalled(env)


def jobs_stalled(env):
    """Whether our jobs have been waiting for ``STALLED_AFTER``:
    no job runner takes them (queue_job not loaded server-wide, runner
    stopped, channel paused). The crons then do the work themselves, so
    that emails still go out, and say so in the log; the waiting jobs find
    nothing left to do once a runner takes them."""
    env.cr.execute(SQL(
        """SELECT min(COALESCE(eta, date_created)) FROM queue_job
            WHERE state = 'pending' AND identity_key LIKE %s AND COALESCE(eta, date_created) < %s""",
        identity_key("%", "%"), fields.Datetime.now() - STALLED_AFTER))
    since = env.cr.fetchone()[0]
    if since:
        _logger.warning(
            "behavioral_email: its queue jobs wait since %s: is the job runner running "
            "(server_wide_modules = web,queue_job), is channel %s running? "
            "The crons do the work themselves meanwhile.", since, CHANNEL)
    return bool(since)


def get_channel_capacity(env):
    """How many jobs of the channel the job runner runs at once.

    With server-wide channels (the ``[queue_job] channels`` option or
    ``ODOO_QUEUE_JOB_CHANNELS``), the capacity given there to the channel, or
    to ``root`` when the channel is not listed. Releases of queue_job that
    configure channels per database instead (when no server-wide channels
    are set) give the channel record an effective capacity: that one.
    """
    channels = runner._channels()  # pylint: disable=protected-access
    if channels:
        capacities = {config["name"]: config.get("capacity")
                      for config in ChannelManager.parse_simple_config(channels)}
        for name in (CHANNEL, CHANNEL.removeprefix("root."), "root"):
            if capacities.get(name):
                return capacities[name]
        return 1
    channel = env.ref(CHANNEL_XMLID, raise_if_not_found=False)
    if channel and "effective_capacity" in channel._fields:
        return max(channel.sudo().effective_capacity, 1)
    return 1


def identity_key(work_name, slot):
    return f"behavioral_email:{work_name}:{slot}"


def enqueue_batch_job(model, method, work_name, slot, description):
    """Queue the job of one slot, unless one is already waiting for it."""
    delayable = model.with_delay(identity_key=identity_key(work_name, slot), description=description)
    getattr(delayable, method)(slot)


def enqueue_batch_jobs(model, method, work_name, work, description):
    """Queue one job per batch due, at most ``SLOTS_PER_CAPACITY`` times the
    channel's capacity; return how many slots were asked for."""
    model.env.flush_all()  # the count is SQL: it must see pending writes
    due = work.count_remaining()
    if not due:
        return 0
    slots = min(math.ceil(due / work.size), SLOTS_PER_CAPACITY * get_channel_capacity(model.env))
    for slot in range(slots):
        enqueue_batch_job(model, method, work_name, slot, description(slot))
    _logger.info("behavioral_email: %s %s job slot(s) for %s due", slots, work_name, due)
    return slots


@contextmanager
def retry_on_concurrency():
    """A conflict with a concurrent transaction is the batch's bad luck, not
    its fault: queue_job rolls the job back and retries it after a pause."""
    try:
        yield
    except Exception as exc:
        if is_concurrency_error(exc):
            raise RetryableJobError(
                f"concurrent update ({exc.__class__.__name__}), retried",
                seconds=CONCURRENCY_RETRY_SECONDS,  # a (min, max) range: queue_job picks at random
            ) from exc
        raise


def run_batch_job(model, method, work_name, work, slot, description):
    """Run one claim + process cycle; queue the slot's next job when the
    batch was full. Returns the job's result text."""
    with retry_on_concurrency():
        records, full = work.claim()
        if records:
            work.process(records)
    if full:
        # becomes visible to the runners when this job commits
        enqueue_batch_job(model, method, work_name, slot, description(slot))
        return model.env._("%(count)s record(s) processed, the next batch is queued", count=len(records))
    return model.env._("%(count)s record(s) processed, nothing left", count=len(records))
