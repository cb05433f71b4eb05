"""Several Odoo workers advancing the same queue at once.

A TransactionCase shares one uncommitted transaction, so it cannot show two
real database sessions competing for the same rows. This test runs
scripts/concurrency_check.py: its own throwaway database, committed data,
and several processes running the advancing cron at the same moment.
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_parallel_workers_advance_each_enrollment_once():
    db = f"behavioral_email_concurrency_{os.getpid()}"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "concurrency_check.py"),
         "--db", db, "--contacts", "400", "--workers", "3", "--batch", "20"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "OK: every enrollment advanced exactly once" in result.stdout
    assert "traces 400 (distinct enrollment/step: 400), mails 400, enrollments done 400" in result.stdout
    # the work was really shared: more than one worker advanced enrollments
    shares = [line for line in result.stdout.splitlines()
              if line.strip().startswith("worker") and "advanced 0 " not in line]
    assert len(shares) > 1, result.stdout
