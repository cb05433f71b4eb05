from odoo import api, fields, models


class BehavioralTrigger(models.Model):
    """``newsletter_subscribed``: a contact subscribed to a mailing list.

    Captured wherever a subscription starts: ``mailing.subscription`` created
    or switched back from opted out (the website's subscribe form, the
    preference page, the back office), and mailing contacts added to lists
    through ``list_ids`` / ``contact_ids`` (``mailing.contact``,
    ``mailing.list``). Contact imports are not subscriptions happening now and
    are not captured.

    The customer is the contact (res.partner) with the subscriber's email,
    created when there is none (without a ``partner_created`` trigger of its
    own: the subscription is the signal). One trigger per subscription and
    subscribing transaction: a re-subscription after an opt-out is a new
    trigger, which the sequence's re-entry rule (once per subscription by
    default) lets through or not.
    """

    _inherit = "behavioral.trigger"

    trigger_type = fields.Selection(
        selection_add=[("newsletter_subscribed", "Newsletter subscription")],
        ondelete={"newsletter_subscribed": "cascade"})

    @api.model
    def _get_trigger_kinds(self):
        kinds = super()._get_trigger_kinds()
        kinds["newsletter_subscribed"] = {"model": "mailing.subscription", "goal": "none", "settings": []}
        return kinds

    @api.model
    def _capture_newsletter_subscribed(self, subscriptions):
        subscriptions = subscriptions.filtered(
            lambda s: not s.opt_out and s.contact_id.email_normalized and s.list_id.active)
        if not subscriptions:
            return []
        partners = self._get_subscriber_partners(subscriptions.contact_id)
        now = fields.Datetime.now()
        # same transaction, same key: a subscription seen by two hooks counts once
        stamp = self.env.cr.now().strftime("%Y%m%d%H%M%S%f")
        return self._insert_triggers([{
            "trigger_type": "newsletter_subscribed",
            "partner_id": partners[subscription.contact_id.email_normalized],
            "res_model": "mailing.subscription",
            "res_id": subscription.id,
            "occurred_at": now,
            "dedupe_key": f"newsletter_subscribed:{subscription.id}:{stamp}",
            "payload": {
                "list_id": subscription.list_id.id,
                "list_name": subscription.list_id.name,
                "contact_id": subscription.contact_id.id,
            },
        } for subscription in subscriptions])

    @api.model
    def _get_subscriber_partners(self, contacts):
        """The contact (res.partner) of each subscriber's email, found or
        created: {normalized email: partner id}. Never a public user."""
        Partner = self.env["res.partner"].sudo()
        by_email = {}
        for contact in contacts:
            by_email.setdefault(contact.email_normalized, contact)
        public = self._get_public_partner_ids()
        found = {}
        for partner in Partner.search([
            ("email_normalized", "in", list(by_email)), ("id", "not in", public),
        ], order="id"):
            found.setdefault(partner.email_normalized, partner.id)
        missing = [email for email in by_email if email not in found]
        created = Partner.with_context(behavioral_no_capture=True).create([{
            "name": by_email[email].name or by_email[email].email,
            "email": by_email[email].email,
        } for email in missing])
        found.update(zip(missing, created.ids))
        return found
