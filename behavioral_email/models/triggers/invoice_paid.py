from odoo import api, fields, models


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
