from odoo import Command, fields, models


class BehavioralSequenceStep(models.Model):
    """Step kind ``tag``: add tags to the customer, or remove them (contact
    tags, ``res.partner.category``), for segmentation elsewhere in Odoo.
    One ``write`` for the group."""

    _inherit = "behavioral.sequence.step"

    step_type = fields.Selection(selection_add=[("tag", "Tag")], ondelete={"tag": "cascade"})
    tag_action = fields.Selection(
        [("add", "Add"), ("remove", "Remove")], string="Tag Action", default="add", required=True)
    tag_ids = fields.Many2many(
        "res.partner.category", "behavioral_sequence_step_tag_rel", "step_id", "category_id", string="Tags")

    def _get_content_problem(self):
        if self.step_type != "tag":
            return super()._get_content_problem()
        if not self.tag_ids:
            return self.env._("has no tag.")
        return False

    def _run_tag(self, enrollments):
        partners = enrollments.partner_id.sudo()
        if self.tag_action == "add":
            commands = [Command.link(tag.id) for tag in self.tag_ids]
            message = self.env._("Tags added: %(tags)s", tags=", ".join(self.tag_ids.mapped("name")))
        else:
            commands = [Command.unlink(tag.id) for tag in self.tag_ids]
            message = self.env._("Tags removed: %(tags)s", tags=", ".join(self.tag_ids.mapped("name")))
        partners.write({"category_id": commands})
        return {enrollment.id: {"state": "sent", "state_msg": message} for enrollment in enrollments}
