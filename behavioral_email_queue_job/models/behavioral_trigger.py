from odoo import api, fields, models

from ..tools import enqueue_batch_jobs, identity_key, retry_on_concurrency, run_batch_job, use_jobs


class BehavioralTrigger(models.Model):
    """Detection and enrollment as queue jobs (see ``tools/batch_job.py``).

    * ``_cron_detect`` queues one job per detected kind with a running
      sequence (``_job_detect``, identity ``behavioral_email:detect:<kind>``):
      each kind's detection is one set-based statement.
    * ``_cron_enroll`` queues one job per batch of new triggers, in slots
      (``_job_enroll_batch``, identity ``behavioral_email:enroll:<slot>``).
    """

    _inherit = "behavioral.trigger"

    @api.model
    def _cron_detect(self):
        """Queue the detections; return [] (the jobs insert the triggers)."""
        if not use_jobs(self.env):
            return super()._cron_detect()
        self._enqueue_detect_jobs()
        return []

    @api.model
    def _enqueue_detect_jobs(self):
        """One job per detected kind, unless one already waits for it."""
        kinds = self._get_detectable_kinds()
        for kind in kinds:
            self.with_delay(
                identity_key=identity_key("detect", kind),
                description=self.env._("Behavioral Email: detect %(kind)s", kind=kind),
            )._job_detect(kind)
        return len(kinds)

    @api.model
    def _job_detect(self, kind):
        """Job: detect one kind now, then wake the enrollment cron."""
        with retry_on_concurrency():
            ids = self._detect_kind(kind, fields.Datetime.now())
        if ids:
            self._trigger_enroll_cron()
        return self.env._("%(count)s trigger(s) detected", count=len(ids))

    @api.model
    def _cron_enroll(self):
        """Queue the enrollment batches; return the number of job slots."""
        if not use_jobs(self.env):
            return super()._cron_enroll()
        return self._enqueue_enroll_jobs()

    @api.model
    def _enqueue_enroll_jobs(self):
        return enqueue_batch_jobs(self, "_job_enroll_batch", "enroll", self._get_enroll_work(),
                                  self._get_enroll_job_description)

    @api.model
    def _job_enroll_batch(self, slot):
        """Job: claim one batch of new triggers and enroll them."""
        return run_batch_job(self, "_job_enroll_batch", "enroll", self._get_enroll_work(), slot,
                             self._get_enroll_job_description)

    @api.model
    def _get_enroll_job_description(self, slot):
        return self.env._("Behavioral Email: enroll new triggers (slot %(slot)s)", slot=slot)
