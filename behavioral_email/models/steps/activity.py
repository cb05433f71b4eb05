from datetime import timedelta

from odoo import fields, models


class BehavioralSequenceStep(models.Model):
    """Step kind ``activity``: a to-do (``mail.activity``) for a salesperson.

    Scheduled on the enrollment's order when it has one, else on the
    customer; assigned to the order's salesperson, else the customer's, else
    the step's fallback user. The summary may use placeholders
    ({{ object.partner_id.name }}; object is the enrollment). One ``create``
    for the group; the assignees are notified as for any activity.
    """

    _inherit = "behavioral.sequence.step"

    step_type = fields.Selection(selection_add=[("activity", "Activity")], ondelete={"activity": "cascade"})
    activity_type_id = fields.Many2one(
        "mail.activity.type", string="Activity Type", ondelete="restrict",
        default=lambda self: self.env.ref("mail.mail_activity_data_todo", raise_if_not_found=False))
    activity_summary = fields.Char(
        "Summary", translate=True, help="e.g. Call {{ object.partner_id.name }} about their cart")
    activity_note = fields.Html("Note", translate=True)
    activity_due_days = fields.Integer(
        "Due In (days)", default=1, help="Days between the step and the activity's due date.")
    activity_user_id = fields.Many2one(
        "res.users", string="Fallback Assignee", ondelete="set null",
        domain="[('share', '=', False)]",
        help="Assigned when neither the order nor the customer has a salesperson.")

    def _get_content_problem(self):
        if self.step_type != "activity":
            return super()._get_content_problem()
        if not self.activity_type_id:
            return self.env._("has no activity type.")
        if not (self.activity_summary or "").strip():
            return self.env._("has no summary.")
        return False

    # ------------------------------------------------------------
    # EXECUTION
    # ------------------------------------------------------------

    def _run_activity(self, enrollments):
        enrollments = enrollments.sudo()
        summaries = self.env["mail.render.mixin"].sudo().with_context(lang=None)._render_template(
            self.activity_summary or "", "behavioral.enrollment", enrollments.ids, engine="inline_template")
        due = (fields.Datetime.now() + timedelta(days=self.activity_due_days)).date()
        models_ids = {
            "sale.order": self.env["ir.model"]._get_id("sale.order"),
            "res.partner": self.env["ir.model"]._get_id("res.partner"),
        }
        outcomes = {}
        vals_list = []
        for enrollment in enrollments:
            order = enrollment.order_id
            user = order.user_id or enrollment.partner_id.user_id or self.activity_user_id
            if not user:
                outcomes[enrollment.id] = {
                    "state": "failed", "failure_type": "activity_no_user",
                    "state_msg": self.env._("Nobody to assign the activity to: set a fallback assignee."),
                }
                continue
            target = order or enrollment.partner_id
            vals_list.append((enrollment, {
                "res_model_id": models_ids[target._name],
                "res_id": target.id,
                "activity_type_id": self.activity_type_id.id,
                "summary": summaries[enrollment.id],
                "note": self.activity_note or False,
                "user_id": user.id,
                "date_deadline": due,
            }))
        activities = self.env["mail.activity"].sudo().create([vals for _enrollment, vals in vals_list])
        for (enrollment, _vals), activity in zip(vals_list, activities):
            outcomes[enrollment.id] = {
                "state": "sent", "activity_id": activity.id, "subject": activity.summary,
                "state_msg": self.env._("Assigned to %(user)s", user=activity.user_id.name),
            }
        return outcomes


class BehavioralTrace(models.Model):
    _inherit = "behavioral.trace"

    failure_type = fields.Selection(
        selection_add=[("activity_no_user", "No one to assign")], ondelete={"activity_no_user": "set null"})
    activity_id = fields.Many2one("mail.activity", string="Activity", ondelete="set null", readonly=True)
