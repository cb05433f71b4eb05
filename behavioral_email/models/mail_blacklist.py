from odoo import api, models, tools
from odoo.tools import SQL


class MailBlacklist(models.Model):
    """Every blocklist change lands in the consent ledger (behavioral.consent):
    mass_mailing's unsubscribe pages and one-click route, ``_add`` / ``_remove``,
    the back office and imports all end in these three methods."""

    _inherit = "mail.blacklist"

    @api.model_create_multi
    def create(self, vals_list):
        emails = {tools.email_normalize(vals.get("email")) for vals in vals_list} - {False, None}
        existing = set()
        if emails:
            # mail.blacklist.create returns the existing rows of known addresses:
            # only the rows really created are a change
            self.env.cr.execute(SQL("SELECT email FROM mail_blacklist WHERE email IN %s", tuple(emails)))
            existing = {row[0] for row in self.env.cr.fetchall()}
        records = super().create(vals_list)
        self.env["behavioral.consent"]._record([
            {"email": record.email, "action": "blocklisted", "details": record.opt_out_reason_id.name or False}
            for record in records if record.active and record.email not in existing
        ])
        return records

    def write(self, vals):
        if "active" not in vals:
            return super().write(vals)
        before = {record.id: record.active for record in self.with_context(active_test=False)}
        res = super().write(vals)
        self.env["behavioral.consent"]._record([
            {"email": record.email,
             "action": "blocklisted" if record.active else "unblocklisted",
             "details": (record.opt_out_reason_id.name or False) if record.active else False}
            for record in self if record.active != before[record.id]
        ])
        return res

    def unlink(self):
        self.env["behavioral.consent"]._record([
            {"email": record.email, "action": "unblocklisted"} for record in self if record.active
        ])
        return super().unlink()
