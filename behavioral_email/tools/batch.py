import logging
import random
import threading
import time
from contextlib import contextmanager
from typing import Callable, NamedTuple

from psycopg2 import errors

from odoo import api
from odoo.service.model import PG_CONCURRENCY_EXCEPTIONS_TO_RETRY

_logger = logging.getLogger(__name__)

# consecutive transient failures after which a cron run gives up (the next
# run, or another worker, takes over: nothing is marked failed)
MAX_CONCURRENCY_RETRIES = 5

# Unique constraints of rows that any worker may create on the fly while
# sending (short link codes, tracked links, UTM records). Two workers creating
# the same row at the same moment is a race between transactions, not a fault
# of the records being processed: the unit of work is retried.
SHARED_UNIQUE_CONSTRAINTS = frozenset({
    "link_tracker_code_code",
    "utm_source_unique_name",
    "utm_medium_unique_name",
    "utm_campaign_unique_name",
    "mail_blacklist_unique_email",
    "mailing_subscription_unique_contact_list",
})


def can_commit(env):
    """Whether a cron may commit between batches: never under tests, where the
    whole test runs in one transaction that is rolled back at its end."""
    return not (getattr(threading.current_thread(), "testing", False) or env.registry.in_test_mode())


def is_concurrency_error(exc):
    """A transient conflict with another transaction: serialization failure,
    deadlock, lock timeout (Odoo's cursors run in REPEATABLE READ), or a
    unique violation on a shared lookup row another worker created at the
    same moment. The unit of work must be retried in a new transaction; it
    says nothing about the records."""
    if isinstance(exc, PG_CONCURRENCY_EXCEPTIONS_TO_RETRY):
        return True
    if isinstance(exc, errors.UniqueViolation):
        return getattr(exc.diag, "constraint_name", None) in SHARED_UNIQUE_CONSTRAINTS
    # the ORM may wrap the database error; look at what caused it
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and is_concurrency_error(cause)


def backoff_sleep(attempt, base=0.05, cap=2.0):
    """Sleep before retry number ``attempt`` (1, 2, ...): exponential with full
    jitter, so that workers that collided once do not collide again."""
    time.sleep(random.uniform(0, min(cap, base * (2 ** attempt))))  # noqa: S311 - jitter, not security


class BatchWork(NamedTuple):
    """The unit of work of a batch cron, as :func:`process_in_batches` runs it.

    Handed out by the crons (``_get_enroll_work``, ``_get_advance_work``) so
    that something else may run the same batches another way, e.g. one batch
    per job on a job queue, with the same claim as the exactly-once guard.
    """

    claim: Callable  # claim() -> (records locked FOR UPDATE SKIP LOCKED, full batch)
    process: Callable  # process(records)
    count_remaining: Callable  # count_remaining() -> int
    size: int  # records per batch


def process_in_batches(env, claim, process, count_remaining):
    """The loop of a batch cron: claim a batch, process it, report progress,
    commit, and start again until nothing is left.

    :param claim: ``claim()`` returns the next batch, rows locked (``FOR UPDATE
        SKIP LOCKED``), and whether it was a full batch: ``(records, full)``
    :param process: ``process(records)`` does the work
    :param count_remaining: ``count_remaining()`` for the progress report
    :return int: number of records processed

    A batch is one transaction: it is committed whole, or, when it meets a
    concurrent transaction (see :func:`is_concurrency_error`), rolled back
    whole and claimed again in a new transaction after a jittered pause, where
    the rows another worker already moved on are no longer claimable.
    """
    done = retries = 0
    while True:
        try:
            records, full = claim()
            if records:
                process(records)
                done += len(records)
                env["ir.cron"]._notify_progress(done=done, remaining=count_remaining())
        except Exception as exc:
            if not (is_concurrency_error(exc) and can_commit(env)):
                raise
            retries += 1
            # the batch is redone from scratch in a new transaction
            env.cr.rollback()  # pylint: disable=invalid-commit
            env.invalidate_all()
            if retries > MAX_CONCURRENCY_RETRIES:
                _logger.warning("behavioral_email: giving up this run after %s concurrent updates", retries)
                return done
            _logger.info("behavioral_email: batch met a concurrent update (%s), retrying", exc.__class__.__name__)
            backoff_sleep(retries)
            continue
        retries = 0
        if can_commit(env):
            # One batch is one unit of work: once committed it is never
            # redone, so a crash later on cannot send or enroll twice.
            env.cr.commit()  # pylint: disable=invalid-commit
        env.invalidate_all()
        if not full:
            return done


@contextmanager
def shared_rows_env(env):
    """An environment in which to create shared lookup rows (tracked links,
    UTM records) in a short transaction of their own, committed at once.

    Such rows are harmless if the batch that asked for them is rolled back
    later, and committing them at once means another worker sees them instead
    of racing to create the same ones. Under tests, where nothing may commit,
    the current transaction is used (inside a savepoint).
    """
    if not can_commit(env):
        with env.cr.savepoint():
            yield env
        return
    with env.registry.cursor() as cr:
        # committed when the block exits without error (Cursor.__exit__)
        yield api.Environment(cr, env.uid, env.context)


def run_isolated(records, method, on_error):
    """Call ``records.<method>()`` as one batch; if the batch fails as a whole,
    call it record by record so that only the records that fail alone are
    lost to the batch, and hand each of them to ``on_error(record, exc)``.

    Each attempt runs in a savepoint, so a failure leaves nothing half-written.
    Concurrency errors are not the records' fault: they are raised for the
    whole batch to be retried (see ``process_in_batches``).
    """
    cr = records.env.cr
    try:
        with cr.savepoint():
            getattr(records, method)()
        return
    except Exception as exc:  # noqa: BLE001 - retried record by record below
        if is_concurrency_error(exc):
            raise
        _logger.exception("behavioral_email: %s on %s records failed, retrying one by one", method, len(records))
    records.env.invalidate_all()
    for record in records:
        try:
            with cr.savepoint():
                getattr(record, method)()
        except Exception as exc:  # noqa: BLE001 - handed to on_error, which records it
            if is_concurrency_error(exc):
                raise
            _logger.exception("behavioral_email: %s failed on %s", method, record)
            records.env.invalidate_all()
            on_error(record, exc)
