"""Several Odoo workers advancing the same queue at once.

A TransactionCase shares one uncommitted transaction, so it cannot show two
real database sessions competing for the same rows. These tests run
scripts/concurrency_check.py: its own throwaway database, committed data,
and several processes running the advancing cron at the same moment.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_check(*args):
    db = f"behavioral_email_concurrency_{os.getpid()}"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "concurrency_check.py"), "--db", db, *args],
        capture_output=True, text=True, timeout=1800, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "OK: every enrollment advanced exactly once" in result.stdout
    return result.stdout


def test_carts_four_workers_one_killed_every_customer_one_email():
    """2 000 abandoned carts, 4 overlapping workers sharing batches of 200,
    each email with links tracked per cart (so the workers create tracked
    links and short codes at the same moment), one worker killed with
    SIGKILL in the middle of a batch: every customer ends with exactly one
    first email, and no enrollment failed."""
    out = run_check("--scenario", "carts", "--contacts", "2000", "--workers", "4",
                    "--batch", "200", "--kill")
    assert ("traces 2000 (distinct enrollment/step: 2000), mails 2000, "
            "customers with exactly one first email 2000, failed 0, other traces 0") in out, out
    assert "worker(s) [0] killed (SIGKILL) mid-batch" in out, out
    # the work was really shared: more than one surviving worker advanced enrollments
    shares = [int(m) for m in re.findall(r"worker \d+: advanced (\d+) ", out)]
    assert len([share for share in shares if share]) > 1, out


def test_welcome_parallel_workers_advance_each_enrollment_once():
    out = run_check("--scenario", "welcome", "--contacts", "400", "--workers", "3", "--batch", "20")
    assert ("traces 400 (distinct enrollment/step: 400), mails 400, "
            "customers with exactly one first email 400, failed 0, other traces 0") in out, out
