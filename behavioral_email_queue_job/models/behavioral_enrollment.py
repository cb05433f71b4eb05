from odoo import api, models

from ..tools import enqueue_batch_jobs, run_batch_job, use_jobs


class BehavioralEnrollment(models.Model):
    """Due steps as queue jobs (see ``tools/batch_job.py``): ``_cron_advance``
    queues one job per batch of due enrollments, in slots
    (``_job_advance_batch``, identity ``behavioral_email:advance:<slot>``)."""

    _inherit = "behavioral.enrollment"

    @api.model
    def _cron_advance(self):
        """Queue the due batches; return the number of job slots."""
        if not use_jobs(self.env):
            return super()._cron_advance()
        return self._enqueue_advance_jobs()

    @api.model
    def _enqueue_advance_jobs(self):
        return enqueue_batch_jobs(self, "_job_advance_batch", "advance", self._get_advance_work(),
                                  self._get_advance_job_description)

    @api.model
    def _job_advance_batch(self, slot):
        """Job: claim one batch of due enrollments and run their step."""
        return run_batch_job(self, "_job_advance_batch", "advance", self._get_advance_work(), slot,
                             self._get_advance_job_description)

    @api.model
    def _get_advance_job_description(self, slot):
        return self.env._("Behavioral Email: run due steps (slot %(slot)s)", slot=slot)
