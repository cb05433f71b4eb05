from odoo import api, fields, models, tools
from odoo.tools import SQL

from .behavioral_consent import CTX_ERASURE


class MailingList(models.Model):
    """Mailing lists as the topics customers choose on their preference page.

    Two kinds of public lists:

    * topics of sequences (``behavioral_is_topic``): a customer receives the
      topic's sequences unless opted out of it; having no subscription row
      counts as subscribed (the consent check of marketing sequences works so);
    * newsletters: only their subscribers receive them; they may require a
      confirmation by email (``behavioral_double_opt_in``).

    Contacts added through ``contact_ids`` (the relation table, not
    mailing.subscription) are captured as newsletter_subscribed and recorded
    in the consent ledger.
    """

    _inherit = "mailing.list"

    behavioral_is_topic = fields.Boolean(
        "Sequence Topic",
        help="Customers receive the sequences of this topic unless they opt out of it. "
             "Other lists only reach their subscribers.")
    behavioral_public_name = fields.Char(
        "Name for Customers", translate=True,
        help="Shown on the customers' preference page instead of the list name.")
    behavioral_description = fields.Text(
        "Description for Customers", translate=True,
        help="What the customer receives from this topic, shown on the preference page.")
    behavioral_double_opt_in = fields.Boolean(
        "Double Opt-in",
        help="A customer subscribing from the website receives an email with a link to "
             "confirm; nothing is sent to them from this list until they follow it.")

    @api.model_create_multi
    def create(self, vals_list):
        lists = super().create(vals_list)
        if any(vals.get("contact_ids") for vals in vals_list):
            # contact_ids commands write the relation table, not mailing.subscription
            Subscription = self.env["mailing.subscription"]
            Subscription._behavioral_capture_linked("list_id", lists.ids, set())
            Subscription._behavioral_record_rows({}, Subscription._behavioral_get_rows("list_id", lists.ids))
        return lists

    def write(self, vals):
        if "contact_ids" not in vals or self.env.context.get(CTX_ERASURE):
            return super().write(vals)
        Subscription = self.env["mailing.subscription"]
        before_ids = Subscription._behavioral_get_ids("list_id", self.ids)
        before = Subscription._behavioral_get_rows("list_id", self.ids)
        res = super().write(vals)
        Subscription._behavioral_capture_linked("list_id", self.ids, before_ids)
        Subscription._behavioral_record_rows(before, Subscription._behavioral_get_rows("list_id", self.ids))
        return res

    def _behavioral_get_label(self):
        self.ensure_one()
        return self.behavioral_public_name or self.name

    # ------------------------------------------------------------
    # PREFERENCE PAGE
    # ------------------------------------------------------------

    @api.model
    def _behavioral_get_states(self, email):
        """Subscription state of an address on every list where it has a row.

        Matches the consent check of the sequences: one opted-out row is
        enough to be opted out.

        :return dict: {list id: 'subscribed' | 'unsubscribed' | 'pending'}
        """
        email = tools.email_normalize(email)
        if not email:
            return {}
        self.env.flush_all()
        self.env.cr.execute(SQL(
            """SELECT sub.list_id, bool_or(sub.opt_out), bool_or(sub.behavioral_pending_since IS NOT NULL)
                 FROM mailing_subscription sub
                 JOIN mailing_contact contact ON contact.id = sub.contact_id
                WHERE contact.email_normalized = %s
                GROUP BY sub.list_id""", email))
        states = {}
        for list_id, any_opt_out, any_pending in self.env.cr.fetchall():
            if any_pending:
                states[list_id] = "pending"
            else:
                states[list_id] = "unsubscribed" if any_opt_out else "subscribed"
        return states

    @api.model
    def _behavioral_get_offered(self, email):
        """Lists a customer may choose from: the public ones, and the lists
        where the address already has a subscription."""
        states = self._behavioral_get_states(email)
        lists = self.sudo().search(["|", ("is_public", "=", True), ("id", "in", list(states))])
        return lists.sorted(lambda l: (not l.behavioral_is_topic, l._behavioral_get_label().lower(), l.id))

    def _behavioral_is_subscribed(self, states):
        """Whether the address whose ``states`` are given receives this list."""
        self.ensure_one()
        state = states.get(self.id)
        if state is None:
            return self.behavioral_is_topic
        return state == "subscribed"

    def _behavioral_set_subscriptions(self, partner, wanted):
        """Subscribe the partner's address to the lists of ``wanted`` mapped to
        True, opt it out of those mapped to False; only real changes are
        written (and so land in the consent ledger).

        :param dict wanted: {mailing.list record: bool}
        """
        email = partner.email_normalized
        if not email or not wanted:
            return
        states = self._behavioral_get_states(email)
        Contact = self.env["mailing.contact"].sudo().with_context(active_test=False)
        contacts = Contact.search([("email_normalized", "=", email)])
        to_subscribe = [mlist for mlist, on in wanted.items()
                        if on and not mlist._behavioral_is_subscribed(states) and states.get(mlist.id) != "pending"]
        to_unsubscribe = [mlist for mlist, on in wanted.items()
                          if not on and (mlist._behavioral_is_subscribed(states) or states.get(mlist.id) == "pending")]
        if not to_subscribe and not to_unsubscribe:
            return
        if not contacts:
            contacts = Contact.create({"name": partner.name, "email": partner.email})
        Subscription = self.env["mailing.subscription"].sudo()
        subscriptions = contacts.subscription_ids
        create_vals = []
        for mlist in to_subscribe:
            rows = subscriptions.filtered(lambda s, l=mlist: s.list_id == l)
            if rows:
                rows.write({"opt_out": False})
            else:
                create_vals.append({"contact_id": contacts[0].id, "list_id": mlist.id, "opt_out": False})
        for mlist in to_unsubscribe:
            rows = subscriptions.filtered(lambda s, l=mlist: s.list_id == l)
            if rows:
                rows.write({"opt_out": True, "behavioral_pending_since": False})
            else:
                create_vals.append({"contact_id": contacts[0].id, "list_id": mlist.id, "opt_out": True})
        Subscription.create(create_vals)
