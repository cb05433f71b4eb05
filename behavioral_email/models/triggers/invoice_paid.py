from odoo import api, fields, models
from odoo.tools import SQL


class BehavioralTrigger(models.Model):
    """``invoice_paid``: a customer invoice became paid (or in payment).

    Captured by ``account.move._invoice_paid_hook``, which accounting calls
    when an invoice moves to paid (a payment registered, a bank statement
    line reconciled, a zero invoice posted). One trigger per invoice: an
    invoice going from *in payment* to *paid* adds nothing. The payload
    names the sale order it invoices, if any (``order_id``).
    """

    _inherit = "behavioral.trigger"

    trigger_type = fields.Selection(
        selection_add=[("invoice_paid", "Invoice paid")], ondelete={"invoice_paid": "cascade"})

    @api.model
    def _get_trigger_kinds(self):
        kinds = super()._get_trigger_kinds()
        kinds["invoice_paid"] = {"model": "account.move", "goal": "none", "settings": ["website_id"]}
        return kinds

    @api.model
    def _capture_invoice_paid(self, invoices):
        invoices = invoices.filtered(
            lambda m: m.move_type == "out_invoice" and m.state == "posted"
            and m.payment_state in ("paid", "in_payment") and m.partner_id)
        if not invoices:
            return []
        now = fields.Datetime.now()
        public = set(self._get_public_partner_ids())
        vals_list = []
        for invoice in invoices.filtered(lambda m: m.partner_id.id not in public):
            orders = invoice.invoice_line_ids.sale_line_ids.order_id.sorted("id")
            vals_list.append({
                "trigger_type": "invoice_paid",
                "partner_id": invoice.partner_id.id,
                "res_model": "account.move",
                "res_id": invoice.id,
                "occurred_at": now,
                "dedupe_key": f"invoice_paid:{invoice.id}",
                "company_id": invoice.company_id.id,
                "payload": {
                    "order_id": orders[:1].id or False,
                    "website_id": orders[:1].website_id.id or False,
                    "amount_total": invoice.amount_total,
                    "currency": invoice.currency_id.name,
                },
            })
        return self._insert_triggers(vals_list)


class BehavioralEnrollment(models.Model):
    """What the emails of an ``invoice_paid`` sequence show: the paid
    invoice (the enrollment's source document) and its portal link."""

    _inherit = "behavioral.enrollment"

    invoice_id = fields.Many2one(
        "account.move", string="Paid Invoice", compute="_compute_invoice_id",
        help="The invoice whose payment started this enrollment, for email templates "
             "(e.g. <t t-out=\"object.invoice_id.name\"/>).")
    invoice_portal_url = fields.Char(
        compute="_compute_invoice_portal_url",
        help="Link to the paid invoice in the customer portal, with its access token.")

    @api.depends("res_model", "res_id")
    def _compute_invoice_id(self):
        for enrollment in self:
            # a test send for a customer without invoices has no source (res_id 0)
            enrollment.invoice_id = (
                enrollment.res_id if enrollment.res_model == "account.move" and enrollment.res_id else False)

    @api.depends("invoice_id")
    def _compute_invoice_portal_url(self):
        invoices = self.invoice_id.sudo()
        # the portal link carries the invoice's token: given to those that
        # have none in one statement (get_portal_url would write one by one)
        missing = invoices.filtered(lambda m: not m.access_token)
        if missing.ids:
            self.env.cr.execute(SQL(
                "UPDATE account_move SET access_token = gen_random_uuid()::text "
                "WHERE id IN %s AND access_token IS NULL", tuple(missing.ids)))
            missing.invalidate_recordset(["access_token"])
        for enrollment in self:
            invoice = enrollment.invoice_id.sudo()
            enrollment.invoice_portal_url = (
                f"{invoice.get_base_url()}{invoice.get_portal_url()}" if invoice else False)

    @api.model
    def mail_allowed_qweb_expressions(self):
        return super().mail_allowed_qweb_expressions() + ("object.invoice_id.name",)
