import logging
from ast import literal_eval
from collections import defaultdict
from contextlib import closing
from datetime import timedelta

from psycopg2 import IntegrityError

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.osv import expression
from odoo.tools import SQL

from ..tools import stats
from .behavioral_enrollment import CONSENT_EXITS

_logger = logging.getLogger(__name__)


class BehavioralSequence(models.Model):
    """A sequence of timed steps started by one kind of trigger.

    States (``state``):

    * ``draft``: being built; triggers are ignored. Default, and the state of
      every shipped sequence so that installing the addon emails nobody.
    * ``running``: new triggers enroll, due steps run. Set by
      :meth:`action_start`, which refuses a sequence without steps or with an
      email step that has no subject or body.
    * ``paused``: nobody enrolls and no step runs; running enrollments keep
      their place and resume on :meth:`action_start`. Set by
      :meth:`action_pause`.
    """

    _name = "behavioral.sequence"
    _description = "Behavioral Email Sequence"
    _inherit = ["mail.thread", "behavioral.kpi.mixin"]
    _order = "sequence, id"
    _kpi_key = "sequence_id"

    name = fields.Char(required=True, translate=True, tracking=True)
    active = fields.Boolean(default=True)
    sequence = fields.Integer(default=10)
    description = fields.Text(translate=True)
    company_id = fields.Many2one(
        "res.company", default=lambda self: self.env.company, index=True,
        help="Leave empty to run the sequence for every company.")
    state = fields.Selection(
        [("draft", "Draft"), ("running", "Running"), ("paused", "Paused")],
        default="draft", required=True, index=True, tracking=True, copy=False)
    trigger_type = fields.Selection(
        selection="_selection_trigger_type", string="Trigger", required=True, tracking=True)
    source_model = fields.Char(compute="_compute_source_model")
    trigger_settings = fields.Char(
        compute="_compute_source_model",
        help="Technical: the settings the trigger kind offers, for the form.")
    # filters
    website_id = fields.Many2one(
        "website", ondelete="cascade",
        help="Only carts and orders of this website. Leave empty for every website.")
    entry_window_hours = fields.Integer(
        "Entry Window (hours)", default=72, required=True,
        help="A trigger older than this never enrolls. Starting a sequence on a "
             "shop with years of history therefore emails nobody about old carts.")
    filter_domain = fields.Char(
        "Source Filter", default="[]",
        help="Only source documents (cart, order or contact) matching this domain enroll.")
    partner_domain = fields.Char(
        "Customer Filter", default="[]",
        help="Only customers matching this domain enroll.")
    goal = fields.Selection(
        [("none", "None")],
        compute="_compute_goal", store=True, readonly=False, required=True, precompute=True,
        help="When the goal is met the enrollment ends and no further step is sent. "
             "For carts: that cart, or any later order of the customer, is confirmed.")
    reentry = fields.Selection(
        [("document", "Once per source document"),
         ("partner", "Once per customer, ever"),
         ("not_running", "Again once the previous enrollment ended"),
         ("always", "Every trigger")],
        string="Re-entry", default="document", required=True,
        help="May the same customer enroll again?")
    consent_mode = fields.Selection(
        [("marketing", "Marketing: skip blocklisted, opted-out and bounced"),
         ("subscribed", "Subscribers only: the topic lists below"),
         ("transactional", "Transactional: service messages only")],
        string="Consent", default="marketing", required=True, tracking=True,
        help="Marketing emails are never sent to blocklisted addresses, to customers "
             "opted out of the sequence's topics or to bouncing addresses. "
             "Transactional sequences (e.g. an order receipt) ignore the blocklist: "
             "use them only for messages the customer needs.")
    mailing_list_ids = fields.Many2many(
        "mailing.list", string="Topics",
        help="Mailing lists standing for the topics of this sequence: customers "
             "opted out of any of them receive nothing from it.")
    # -- customer preferences (preference page) --
    reason_text = fields.Char(
        "Why the Customer Receives It", translate=True,
        help="One sentence at the bottom of every email of the sequence, beside the "
             "“Manage preferences” link, e.g. “You receive this email because you left "
             "items in your cart.”")
    # --
    # sending
    email_from = fields.Char(
        "Send From", compute="_compute_email_from", store=True, readonly=False, precompute=True)
    reply_to = fields.Char()
    campaign_id = fields.Many2one(
        "utm.campaign", string="UTM Campaign", ondelete="restrict", copy=False,
        help="Links in the emails carry this campaign, so that orders can be attributed.")
    step_ids = fields.One2many("behavioral.sequence.step", "sequence_id", string="Steps", copy=True)
    # cadence across sequences
    priority = fields.Integer(
        default=10, required=True, tracking=True,
        help="When a customer's frequency cap allows fewer emails than are due, the steps of "
             "the sequences with the lowest number go first; the others wait, never dropped.")
    exclude_sequence_ids = fields.Many2many(
        "behavioral.sequence", "behavioral_sequence_exclusion_rel", "sequence_id", "excluded_id",
        string="Excludes", domain="[('id', '!=', id)]",
        help="A customer running through this sequence does not enter these ones "
             "(e.g. the cart series excludes browse abandonment).")
    # statistics
    step_count = fields.Integer(compute="_compute_statistics")
    enrollment_count = fields.Integer(compute="_compute_statistics")
    running_count = fields.Integer("Running Enrollments", compute="_compute_statistics")
    failed_count = fields.Integer(
        "Failed Enrollments", compute="_compute_statistics",
        help="Enrollments stopped by an error; Retry Failed puts them back in the queue.")
    trace_count = fields.Integer("Emails", compute="_compute_statistics")
    converted_count = fields.Integer(
        "Conversions", compute="_compute_statistics",
        help="Enrollments whose goal was reached after at least one email.")
    currency_id = fields.Many2one("res.currency", compute="_compute_statistics")
    revenue = fields.Monetary(
        compute="_compute_statistics",
        help="Total (untaxed) of the orders that converted the enrollments.")
    # -- measurement: holdout, attribution and results (report/behavioral_report*.py) --
    holdout_percent = fields.Integer(
        "Holdout (%)", default=0, tracking=True,
        help="Share of the entrants kept as a control group: they go through the sequence "
             "like the others but are sent nothing, so that the sequence's true lift can be "
             "measured. Drawn at random per customer, 0 to 50.")
    attribution_click_days = fields.Integer(
        "Attribution After a Click (days)", default=5, required=True,
        help="An order placed this many days after a click in one of the sequence's emails "
             "is credited to it, unless a later email was opened or clicked.")
    attribution_open_days = fields.Integer(
        "Attribution After an Open (days)", default=1, required=True,
        help="An order placed this many days after one of the sequence's emails was opened "
             "is credited to it, unless a later email was opened or clicked.")
    measure_window_days = fields.Integer(
        "Measurement Window (days)", default=30, required=True,
        help="The orders a customer confirms within this many days after entering are their "
             "results in the holdout and customer comparisons, whatever email they came from.")
    holdout_treatment_count = fields.Integer("Emailed Group", compute="_compute_holdout_results")
    holdout_control_count = fields.Integer("Holdout Group", compute="_compute_holdout_results")
    holdout_treatment_converted = fields.Integer(compute="_compute_holdout_results")
    holdout_control_converted = fields.Integer(compute="_compute_holdout_results")
    holdout_treatment_conversion = fields.Float("Emailed Conversion", compute="_compute_holdout_results")
    holdout_control_conversion = fields.Float("Holdout Conversion", compute="_compute_holdout_results")
    holdout_treatment_rpe = fields.Monetary(
        "Emailed Revenue per Entrant", compute="_compute_holdout_results", currency_field="kpi_currency_id")
    holdout_control_rpe = fields.Monetary(
        "Holdout Revenue per Entrant", compute="_compute_holdout_results", currency_field="kpi_currency_id")
    holdout_lift = fields.Float(
        "Lift", compute="_compute_holdout_results",
        help="Conversion of the emailed group minus the holdout's, with its 95 % confidence "
             "interval (Newcombe's hybrid score interval).")
    holdout_lift_low = fields.Float(compute="_compute_holdout_results")
    holdout_lift_high = fields.Float(compute="_compute_holdout_results")
    holdout_relative_lift = fields.Float(
        "Relative Lift", compute="_compute_holdout_results",
        help="How much more the emailed group converts than the holdout, relative to the holdout, "
             "with its 95 % confidence interval (Katz log interval of the ratio).")
    holdout_relative_lift_low = fields.Float(compute="_compute_holdout_results")
    holdout_relative_lift_high = fields.Float(compute="_compute_holdout_results")
    holdout_has_relative_lift = fields.Boolean(compute="_compute_holdout_results")
    holdout_incremental_revenue = fields.Monetary(
        "Incremental Revenue", compute="_compute_holdout_results", currency_field="kpi_currency_id",
        help="Net revenue the emails added: the difference of revenue per entrant between the "
             "groups times the emailed entrants, with its 95 % confidence interval (Welch).")
    holdout_incremental_revenue_low = fields.Monetary(
        compute="_compute_holdout_results", currency_field="kpi_currency_id")
    holdout_incremental_revenue_high = fields.Monetary(
        compute="_compute_holdout_results", currency_field="kpi_currency_id")
    holdout_significant = fields.Boolean(
        compute="_compute_holdout_results", help="The lift's interval leaves out zero.")
    engaged_entrant_count = fields.Integer("Engaged", compute="_compute_customer_results")
    engaged_repeat_rate = fields.Float("Engaged Repeat Purchase", compute="_compute_customer_results")
    engaged_order_value = fields.Monetary(
        "Engaged Average Order", compute="_compute_customer_results", currency_field="kpi_currency_id")
    unengaged_entrant_count = fields.Integer("Not Engaged", compute="_compute_customer_results")
    unengaged_repeat_rate = fields.Float("Not Engaged Repeat Purchase", compute="_compute_customer_results")
    unengaged_order_value = fields.Monetary(
        "Not Engaged Average Order", compute="_compute_customer_results", currency_field="kpi_currency_id")
    control_entrant_count = fields.Integer("Holdout", compute="_compute_customer_results")
    control_repeat_rate = fields.Float("Holdout Repeat Purchase", compute="_compute_customer_results")
    control_order_value = fields.Monetary(
        "Holdout Average Order", compute="_compute_customer_results", currency_field="kpi_currency_id")
    # --

    @api.model
    def _selection_trigger_type(self):
        return self.env["behavioral.trigger"]._fields["trigger_type"]._description_selection(self.env)

    @api.depends("trigger_type")
    def _compute_source_model(self):
        Trigger = self.env["behavioral.trigger"]
        for sequence in self:
            info = Trigger._get_kind_info(sequence.trigger_type)
            sequence.source_model = info.get("model")
            sequence.trigger_settings = " ".join(info.get("settings", []))

    @api.depends("trigger_type")
    def _compute_goal(self):
        Trigger = self.env["behavioral.trigger"]
        goals = dict(self._fields["goal"]._description_selection(self.env))
        for sequence in self:
            goal = Trigger._get_kind_info(sequence.trigger_type).get("goal", "none")
            sequence.goal = goal if goal in goals else "none"

    @api.depends("company_id")
    def _compute_email_from(self):
        for sequence in self:
            if not sequence.email_from:
                company = sequence.company_id or self.env.company
                sequence.email_from = company.email_formatted or self.env.user.email_formatted

    def _compute_statistics(self):
        Enrollment = self.env["behavioral.enrollment"]
        enrollments = dict(Enrollment._read_group(
            [("sequence_id", "in", self.ids)], ["sequence_id"], ["__count"]))
        by_state = defaultdict(int)
        for sequence, state, count in Enrollment._read_group(
                [("sequence_id", "in", self.ids), ("state", "in", ("running", "failed"))],
                ["sequence_id", "state"], ["__count"]):
            by_state[sequence, state] = count
        traces = dict(self.env["behavioral.trace"]._read_group(
            [("sequence_id", "in", self.ids), ("state", "=", "sent")], ["sequence_id"], ["__count"]))
        conversions = {}
        if self.ids:
            self.env.flush_all()
            self.env.cr.execute(SQL(
                """SELECT e.sequence_id, count(*), sum(so.amount_untaxed)
                     FROM behavioral_enrollment e
                     JOIN sale_order so ON so.id = e.converted_order_id
                    WHERE e.sequence_id IN %s
                    GROUP BY e.sequence_id""", tuple(self.ids)))
            conversions = {sequence_id: (count, amount) for sequence_id, count, amount in self.env.cr.fetchall()}
        for sequence in self:
            sequence.currency_id = (sequence.company_id or self.env.company).currency_id
            sequence.converted_count, sequence.revenue = conversions.get(sequence.id, (0, 0.0))
            sequence.step_count = len(sequence.step_ids)
            sequence.enrollment_count = enrollments.get(sequence, 0)
            sequence.running_count = by_state[sequence, "running"]
            sequence.failed_count = by_state[sequence, "failed"]
            sequence.trace_count = traces.get(sequence, 0)

    # -- measurement --
    def _compute_holdout_results(self):
        results = self.env["behavioral.report.entrant"].sudo()._get_holdout_results(self)
        for sequence in self:
            sequence.update(results[sequence.id])

    def _compute_customer_results(self):
        results = self.env["behavioral.report.entrant"].sudo()._get_customer_results(self)
        for sequence in self:
            sequence.update(results[sequence.id])

    @api.constrains("holdout_percent", "attribution_click_days", "attribution_open_days", "measure_window_days")
    def _check_measurement(self):
        for sequence in self:
            if not 0 <= sequence.holdout_percent <= 50:
                raise ValidationError(self.env._("The holdout is 0 to 50 % of the entrants."))
            if min(sequence.attribution_click_days, sequence.attribution_open_days) < 0 \
                    or sequence.measure_window_days < 1:
                raise ValidationError(self.env._(
                    "Attribution windows cannot be negative and the measurement window is at least a day."))

    def _is_holdout(self, partner_id):
        """Whether this customer is in the sequence's control group: drawn
        from the hash of the sequence and the customer, so that a customer
        who enters again stays in the same group."""
        self.ensure_one()
        return bool(self.holdout_percent) and \
            stats.hash_fraction(f"holdout:{self.id}:{partner_id}") * 100 < self.holdout_percent
    # --

    @api.constrains("filter_domain", "partner_domain", "trigger_type")
    def _check_domains(self):
        for sequence in self:
            for fname, model in (("filter_domain", sequence.source_model), ("partner_domain", "res.partner")):
                try:
                    domain = literal_eval(sequence[fname] or "[]")
                    self.env[model].sudo().search_count(domain, limit=1)
                except Exception as exc:
                    raise ValidationError(self.env._(
                        "The %(field)s of sequence %(sequence)s is not a valid domain: %(error)s",
                        field=self._fields[fname].string, sequence=sequence.name, error=exc)) from exc

    @api.constrains("entry_window_hours")
    def _check_windows(self):
        for sequence in self:
            if sequence.entry_window_hours <= 0:
                raise ValidationError(self.env._("The entry window must be at least one hour."))

    @api.constrains("consent_mode", "mailing_list_ids")
    def _check_consent_mode(self):
        for sequence in self:
            if sequence.consent_mode == "subscribed" and not sequence.mailing_list_ids:
                raise ValidationError(self.env._(
                    "Sequence %(name)s sends to subscribers only: choose the topic lists they subscribe to.",
                    name=sequence.name))

    # ------------------------------------------------------------
    # ORM
    # ------------------------------------------------------------

    def _check_transactional_right(self, vals_list):
        """Only administrators may bypass marketing consent."""
        if any(vals.get("consent_mode") == "transactional" for vals in vals_list) \
                and not self.env.su and not self.env.user.has_group("behavioral_email.group_behavioral_manager"):
            raise AccessError(self.env._("Only Behavioral Email administrators can make a sequence transactional."))

    @api.model_create_multi
    def create(self, vals_list):
        self._check_transactional_right(vals_list)
        sequences = super().create(vals_list)
        for sequence in sequences.filtered(lambda s: not s.campaign_id):
            sequence.campaign_id = self.env["utm.campaign"].sudo().create({"name": sequence.name})
        sequences.step_ids._sync_sequence_settings()
        return sequences

    @api.ondelete(at_uninstall=False)
    def _unlink_except_running(self):
        if any(sequence.state == "running" for sequence in self):
            raise UserError(self.env._("Pause a sequence before deleting it."))

    def unlink(self):
        # through the ORM, so that the steps' own checks and clean-up run
        # (a running sequence is refused by _unlink_except_running)
        self.filtered(lambda s: s.state != "running").step_ids.unlink()
        return super().unlink()

    def write(self, vals):
        if vals.get("active") is False:
            # an archived sequence must not go on sending in the background
            self.filtered(lambda s: s.state == "running").action_pause()
        self._check_transactional_right([vals])
        if "trigger_type" in vals and any(
                s.state == "running" and s.trigger_type != vals["trigger_type"] for s in self):
            raise UserError(self.env._("Pause the sequence before changing its trigger."))
        res = super().write(vals)
        if {"email_from", "reply_to", "campaign_id", "name"} & set(vals):
            self.step_ids._sync_sequence_settings()
        return res

    def copy_data(self, default=None):
        vals_list = super().copy_data(default=default)
        for sequence, vals in zip(self, vals_list):
            vals.setdefault("name", self.env._("%s (copy)", sequence.name))
        return vals_list

    def copy(self, default=None):
        """Copied steps follow the copies of their parents, not the originals."""
        copies = super().copy(default=default)
        for original, copied in zip(self, copies):
            mapping = dict(zip(original.step_ids.sorted(), copied.step_ids.sorted()))
            for step, new_step in mapping.items():
                if step.parent_id in mapping:
                    new_step.parent_id = mapping[step.parent_id]
        return copies

    # ------------------------------------------------------------
    # ACTIONS
    # ------------------------------------------------------------

    def action_start(self):
        for sequence in self:
            if not sequence.step_ids:
                raise UserError(self.env._(
                    "Sequence “%(name)s” has no step: add at least one email before starting it.",
                    name=sequence.name))
            for step in sequence.step_ids:
                problem = step._get_content_problem()
                if problem:
                    raise UserError(self.env._(
                        "Sequence “%(name)s” cannot start: step %(step)s %(problem)s",
                        name=sequence.name, step=step.display_name, problem=problem))
        self.write({"state": "running"})
        # Wake the crons now rather than at their next tick: carts may already be idle.
        self.env.ref("behavioral_email.ir_cron_behavioral_detect").sudo()._trigger()
        self.env["behavioral.enrollment"]._trigger_advance_cron()
        return True

    def action_pause(self):
        self.filtered(lambda s: s.state == "running").write({"state": "paused"})
        return True

    def action_draft(self):
        if any(s.running_count for s in self):
            raise UserError(self.env._("A sequence with running enrollments can only be paused."))
        self.write({"state": "draft"})
        return True

    def action_view_enrollments(self):
        self.ensure_one()
        return self.env["behavioral.enrollment"]._action_view(
            [("sequence_id", "=", self.id)], {"default_sequence_id": self.id})

    def action_view_conversions(self):
        self.ensure_one()
        orders = self.env["behavioral.enrollment"].search([
            ("sequence_id", "=", self.id), ("converted_order_id", "!=", False),
        ]).converted_order_id
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Orders converted by %s", self.name),
            "res_model": "sale.order",
            "view_mode": "list,form",
            "domain": [("id", "in", orders.ids)],
        }

    def action_view_failed(self):
        self.ensure_one()
        action = self.env["behavioral.enrollment"]._action_view(
            [("sequence_id", "=", self.id), ("state", "=", "failed")],
            {"default_sequence_id": self.id, "search_default_group_by_failure_type": 1})
        action["name"] = self.env._("Failed enrollments of %s", self.name)
        return action

    def action_retry_failed(self):
        failed = self.env["behavioral.enrollment"].search([
            ("sequence_id", "in", self.ids), ("state", "=", "failed")])
        if failed:
            failed.action_retry()
        return True

    def action_view_traces(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("behavioral_email.behavioral_trace_action")
        action["domain"] = [("sequence_id", "=", self.id)]
        return action

    def action_preview(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Preview of %(sequence)s", sequence=self.name),
            "res_model": "behavioral.sequence.preview",
            "view_mode": "form",
            "target": "new",
            "context": {"default_sequence_id": self.id},
        }

    # -- measurement: the sequence's reports --
    def _action_report(self, xmlid):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(xmlid)
        action["domain"] = [("sequence_id", "=", self.id)]
        action["display_name"] = self.env._("%(report)s: %(sequence)s", report=action["name"], sequence=self.name)
        action["context"] = {}
        return action

    def action_view_funnel(self):
        return self._action_report("behavioral_email.behavioral_report_funnel_action")

    def action_view_analysis(self):
        return self._action_report("behavioral_email.behavioral_report_action")

    def action_view_entrants(self):
        return self._action_report("behavioral_email.behavioral_report_entrant_action")

    def action_view_attributed_orders(self):
        return self._action_report("behavioral_email.behavioral_report_order_action")
    # --

    # ------------------------------------------------------------
    # TOOLS
    # ------------------------------------------------------------

    def _get_consent_failures(self, partners):
        """Which of these partners may not receive this sequence's emails.

        Set-based: a fixed number of queries whatever the number of partners.

        :return dict: {partner id: failure_type} for the refused partners only;
            failure types follow mailing.trace (mail_bl, mail_optout,
            mail_bounce, mail_email_missing, mail_email_invalid).
        """
        self.ensure_one()
        failures = {}
        partners = partners.sudo()
        partners.fetch(["email", "email_normalized", "message_bounce"])
        emails = {}
        for partner in partners:
            if not partner.email:
                failures[partner.id] = "mail_email_missing"
            elif not partner.email_normalized:
                failures[partner.id] = "mail_email_invalid"
            else:
                emails[partner.id] = partner.email_normalized
        if self.consent_mode == "transactional" or not emails:
            return failures
        cr = self.env.cr
        self.env.flush_all()
        cr.execute(SQL(
            "SELECT email FROM mail_blacklist WHERE active AND email IN %s",
            tuple(set(emails.values()))))
        blacklisted = {row[0] for row in cr.fetchall()}
        opted_out = set()
        subscribed = set()
        if self.mailing_list_ids:
            cr.execute(SQL(
                """SELECT contact.email_normalized, bool_or(sub.opt_out), bool_or(NOT sub.opt_out)
                     FROM mailing_subscription sub
                     JOIN mailing_contact contact ON contact.id = sub.contact_id
                    WHERE sub.list_id IN %s AND contact.email_normalized IN %s
                    GROUP BY contact.email_normalized""",
                tuple(self.mailing_list_ids.ids), tuple(set(emails.values()))))
            for email, any_opt_out, any_subscribed in cr.fetchall():
                if any_opt_out:
                    opted_out.add(email)
                elif any_subscribed:
                    subscribed.add(email)
        bounce_limit = int(self.env["ir.config_parameter"].sudo().get_param(
            "behavioral_email.bounce_limit", 1)) or 1
        for partner in partners:
            email = emails.get(partner.id)
            if not email:
                continue
            if email in blacklisted:
                failures[partner.id] = "mail_bl"
            elif email in opted_out:
                failures[partner.id] = "mail_optout"
            elif self.consent_mode == "subscribed" and email not in subscribed:
                failures[partner.id] = "mail_optout"
            elif partner.message_bounce >= bounce_limit:
                failures[partner.id] = "mail_bounce"
        # -- customer preferences: guests per their website's policy (res.partner) --
        for partner_id in partners.filtered(lambda p: p.id not in failures)._behavioral_guest_refused():
            failures[partner_id] = "no_consent"
        # --
        return failures

    def _get_reentry_key(self, trigger):
        self.ensure_one()
        if self.reentry == "document":
            return f"doc:{trigger.res_model},{trigger.res_id}"
        if self.reentry == "partner":
            return f"partner:{trigger.partner_id.id}"
        if self.reentry == "not_running":
            return f"running:{trigger.partner_id.id}"
        return f"trigger:{trigger.id}"

    def _enroll_triggers(self, triggers, notes):
        """Enroll the triggers this sequence accepts.

        Every refusal is written in ``notes`` ({trigger id: [message]}).
        The cost is a fixed number of queries per sequence and batch.
        """
        self.ensure_one()
        now = fields.Datetime.now()
        first_step = self.step_ids.sorted()[:1]
        Enrollment = self.env["behavioral.enrollment"].sudo()

        def refuse(trigger, reason):
            notes[trigger.id].append(f"{self.name}: {reason}")

        accepted_ids = []
        oldest = now - timedelta(hours=self.entry_window_hours)
        if self.env.context.get("behavioral_dry_run"):
            # a preview replays past triggers as if each had just happened
            oldest = min(triggers.mapped("occurred_at") or [now])
        for trigger in triggers:
            payload = trigger.payload or {}
            if not first_step:
                refuse(trigger, self.env._("the sequence has no step"))
            elif self.company_id and trigger.company_id and trigger.company_id != self.company_id:
                continue
            elif trigger.occurred_at < oldest:
                refuse(trigger, self.env._("older than the entry window"))
            elif not trigger.partner_id:
                refuse(trigger, self.env._("no customer"))
            elif self.website_id and payload.get("website_id") and payload["website_id"] != self.website_id.id:
                continue
            else:
                accepted_ids.append(trigger.id)
        accepted = triggers.browse(accepted_ids)
        # the kind's own enrollment rules (thresholds, counts, properties)
        kind_filter = getattr(type(accepted), f"_filter_{self.trigger_type}", None)
        if kind_filter and accepted:
            accepted = kind_filter(accepted, self, refuse)
        if not accepted:
            return Enrollment

        # source documents: still there, and matching the filter
        model = self.source_model
        res_ids = set(accepted.mapped("res_id"))
        domain = expression.AND([literal_eval(self.filter_domain or "[]"), [("id", "in", list(res_ids))]])
        matching = set(self.env[model].sudo().with_context(active_test=False).search(domain).ids)
        # customers: matching the filter, not internal users
        partners = accepted.partner_id
        pdomain = expression.AND([
            literal_eval(self.partner_domain or "[]"),
            [("id", "in", partners.ids)],
        ])
        matching_partners = self.env["res.partner"].sudo().search(pdomain)
        internal = partners.sudo().user_ids.filtered(lambda u: not u.share).partner_id
        consent = self._get_consent_failures(matching_partners - internal)
        failure_labels = dict(self.env["behavioral.trace"]._fields["failure_type"]._description_selection(self.env))

        candidate_ids = []
        for trigger in accepted:
            if trigger.res_id not in matching:
                refuse(trigger, self.env._("the source document is gone or does not match the filter"))
            elif trigger.partner_id in internal:
                refuse(trigger, self.env._("the customer is an internal user"))
            elif trigger.partner_id not in matching_partners:
                refuse(trigger, self.env._("the customer does not match the filter"))
            else:
                candidate_ids.append(trigger.id)
        candidates = accepted.browse(candidate_ids)

        # ---- EXCLUSIONS: running through a sequence that excludes this one
        candidates = self._filter_excluded(candidates, refuse)
        # ---- end of EXCLUSIONS

        # goal already met (e.g. the cart was ordered meanwhile)
        if self.goal != "none" and candidates:
            reached = Enrollment._get_goal_reached(self.goal, [
                (trigger.id, trigger.partner_id.id, trigger._get_order_id(), trigger._get_goal_since(),
                 trigger.payload or {})
                for trigger in candidates
            ])
            for trigger in candidates.filtered(lambda t: t.id in reached):
                refuse(trigger, self.env._("goal already reached"))
            candidates = candidates.filtered(lambda t: t.id not in reached)

        # re-entry rule, against existing enrollments and within the batch
        keys = {trigger.id: self._get_reentry_key(trigger) for trigger in candidates}
        refused_vals = []
        existing = set(Enrollment.search([
            ("sequence_id", "=", self.id), ("dedupe_key", "in", list(keys.values())),
        ]).mapped("dedupe_key"))
        vals_list = []
        for trigger in candidates:
            key = keys[trigger.id]
            if key in existing:
                refuse(trigger, self.env._("already enrolled (re-entry rule)"))
                continue
            existing.add(key)
            failure = consent.get(trigger.partner_id.id)
            if failure:
                # Kept as an exited enrollment with a canceled trace, so that
                # the refusal and its reason show in the sequence's results.
                refuse(trigger, self.env._("no consent (%s)", failure_labels.get(failure)))
                refused_vals.append(dict(
                    self._prepare_enrollment_values(trigger, key),
                    state="exited",
                    exit_reason=CONSENT_EXITS.get(failure, "no_email"),
                    dedupe_key=False if key.startswith("running:") else key,
                    _failure=failure,
                ))
                continue
            vals_list.append(dict(
                self._prepare_enrollment_values(trigger, key),
                step_id=first_step.id,
                next_due=trigger.occurred_at + first_step._get_delay(),
            ))
        enrollments = self._create_enrollments(vals_list, notes)
        failures = [vals.pop("_failure") for vals in refused_vals]
        refused = self._create_enrollments(refused_vals, notes)
        failure_by_trigger = dict(zip([vals["trigger_id"] for vals in refused_vals], failures))
        self.env["behavioral.trace"].sudo().create([{
            "enrollment_id": enrollment.id,
            "step_id": first_step.id,
            "state": "canceled",
            "failure_type": failure_by_trigger[enrollment.trigger_id.id],
            "state_msg": failure_labels.get(failure_by_trigger[enrollment.trigger_id.id]),
            "executed_at": now,
        } for enrollment in refused])
        return enrollments

    def _filter_excluded(self, triggers, refuse):
        """The triggers whose customer is not running through a sequence that
        excludes this one; the others are refused with a note. One query."""
        self.ensure_one()
        if not triggers:
            return triggers
        excluding = self.sudo().search([("exclude_sequence_ids", "in", self.id), ("id", "!=", self.id)])
        if not excluding:
            return triggers
        running = self.env["behavioral.enrollment"].sudo()._read_group(
            [("sequence_id", "in", excluding.ids), ("state", "=", "running"),
             ("partner_id", "in", triggers.partner_id.ids)],
            ["partner_id", "sequence_id"])
        blocking = {partner.id: sequence for partner, sequence in running}
        for trigger in triggers.filtered(lambda t: t.partner_id.id in blocking):
            refuse(trigger, self.env._("running through %(sequence)s, which excludes this sequence",
                                       sequence=blocking[trigger.partner_id.id].name))
        return triggers.filtered(lambda t: t.partner_id.id not in blocking)

    def _dry_run_enroll(self, triggers):
        """Who these triggers would enroll, through the same checks as
        :meth:`_enroll_triggers`, in a savepoint that is always rolled back:
        nothing is created, no email is queued.

        :return tuple: ({trigger id: partner id} of those who would enter,
                        {trigger id: [refusal notes]})
        """
        self.ensure_one()
        notes = defaultdict(list)
        with closing(self.env.cr.savepoint()):
            enrollments = self.with_context(behavioral_dry_run=True)._enroll_triggers(triggers, notes)
            entered = {enrollment.trigger_id.id: enrollment.partner_id.id for enrollment in enrollments}
        self.env.invalidate_all()
        return entered, notes

    def _get_default_path(self):
        """The steps a customer meets when every first branch is taken."""
        self.ensure_one()
        path = self.env["behavioral.sequence.step"]
        step = self.step_ids.sorted()[:1]
        while step and step not in path:
            path |= step
            step = step._get_next_step()
        return path

    def _prepare_enrollment_values(self, trigger, key):
        self.ensure_one()
        return {
            "sequence_id": self.id,
            "trigger_id": trigger.id,
            "partner_id": trigger.partner_id.id,
            "res_model": trigger.res_model,
            "res_id": trigger.res_id,
            "order_id": trigger._get_order_id(),
            "goal_since": trigger._get_goal_since(),
            "payload": trigger.payload or {},
            "dedupe_key": key,
            "company_id": (self.company_id or trigger.company_id).id,
            "is_holdout": self._is_holdout(trigger.partner_id.id),  # measurement
        }

    def _create_enrollments(self, vals_list, notes):
        """Create enrollments; a row refused by the database (a concurrent
        worker enrolled the same key) is noted and skipped, not fatal."""
        Enrollment = self.env["behavioral.enrollment"].sudo()
        if not vals_list:
            return Enrollment
        try:
            with self.env.cr.savepoint():
                return Enrollment.create(vals_list)
        except IntegrityError:
            _logger.info("behavioral_email: concurrent enrollment detected, retrying one by one")
        created = Enrollment
        for vals in vals_list:
            try:
                with self.env.cr.savepoint():
                    created |= Enrollment.create(vals)
            except IntegrityError:
                notes[vals["trigger_id"]].append(
                    f"{self.name}: " + self.env._("already enrolled (re-entry rule)"))
        return created
