from odoo import api, models

from .triggers.product_alert import ALERT_KINDS


class BehavioralSequenceStep(models.Model):
    _inherit = "behavioral.sequence.step"

    @api.model
    def _get_email_blocks(self):
        blocks = super()._get_email_blocks()
        blocks["alert_products"] = (
            self.env._("Back in stock / price drop products"),
            "behavioral_email_product_alerts.email_block_alert_products",
        )
        return blocks

    def _run_email(self, enrollments):
        """A product alert with nothing left to tell is skipped: the product
        sold out again, was unpublished or, after a price drop, costs as much
        as before. Read for the whole batch at once."""
        if self.sequence_id.trigger_type not in ALERT_KINDS:
            return super()._run_email(enrollments)
        stale = enrollments.filtered(lambda e: not e._get_alert_products())
        outcomes = {enrollment.id: {
            "state": "skipped",
            "state_msg": self.env._("Nothing to tell any more: the product is sold out again, "
                                    "no longer sold or back to its old price."),
        } for enrollment in stale}
        if enrollments - stale:
            outcomes.update(super()._run_email(enrollments - stale))
        return outcomes
