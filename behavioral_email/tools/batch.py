import logging
import threading

_logger = logging.getLogger(__name__)


def run_isolated(records, method, on_error):
    """Call ``records.<method>()`` as one batch; if the batch fails as a whole,
    call it record by record so that only the records that fail alone are
    lost to the batch, and hand each of them to ``on_error(record, exc)``.

    Each attempt runs in a savepoint, so a failure leaves nothing half-written.
    """
    cr = records.env.cr
    try:
        with cr.savepoint():
            getattr(records, method)()
        return
    except Exception:  # noqa: BLE001 - retried record by record below
        _logger.exception("behavioral_email: %s on %s records failed, retrying one by one", method, len(records))
    records.env.invalidate_all()
    for record in records:
        try:
            with cr.savepoint():
                getattr(record, method)()
        except Exception as exc:  # noqa: BLE001 - handed to on_error, which records it
            _logger.exception("behavioral_email: %s failed on %s", method, record)
            records.env.invalidate_all()
            on_error(record, exc)


def can_commit(env):
    """Whether a cron may commit between batches: never under tests, where the
    whole test runs in one transaction that is rolled back at its end."""
    return not (getattr(threading.current_thread(), "testing", False) or env.registry.in_test_mode())
