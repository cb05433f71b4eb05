"""A/B variants of an email step, and the step's A/B settings beside them.

The settings (metric, minimum sample, confidence, winner) extend
``behavioral.sequence.step`` here rather than in its own file: they only mean
something next to the variants they decide between.
"""
import logging
from collections import defaultdict

from markupsafe import Markup

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import SQL, email_split, formataddr, is_html_empty

from ..tools import stats

_logger = logging.getLogger(__name__)

CONTENT_FIELDS = ("subject", "preview", "body_html")
MAX_VARIANTS = 5

AB_METRICS = [
    ("open", "Open rate"),
    ("click", "Click rate"),
    ("conversion", "Conversion rate"),
    ("revenue", "Revenue per recipient"),
]
# behavioral.report measure counting the successes of each rate metric
METRIC_MEASURES = {"open": "opened", "click": "clicked", "conversion": "converted"}
AB_CONFIDENCES = [("0.9", "90 %"), ("0.95", "95 %"), ("0.99", "99 %")]


class BehavioralStepVariant(models.Model):
    """One version of an email step (subject, preview, body, sender name) in
    an A/B test.

    Each variant owns a hidden ``mailing.mailing``, made the way the step's
    own is (``models/steps/email.py``), so that its emails are rendered,
    tracked and unsubscribed from exactly like the step's. A step with
    variants sends only its variants: each customer gets the variant their
    enrollment and the step hash to (:meth:`_split_by_variant`, weighted by
    ``weight``), recorded on the trace (``variant_id``); once the step has a
    ``winner_variant_id``, everyone gets the winner.

    No state: ``is_winner`` says whether the step chose this variant, which
    :meth:`_cron_pick_winners` decides.
    """

    _name = "behavioral.step.variant"
    _description = "Behavioral Step Variant"
    _inherit = ["behavioral.kpi.mixin"]
    _order = "step_id, sequence, id"
    _kpi_key = "variant_id"

    step_id = fields.Many2one(
        "behavioral.sequence.step", string="Step", required=True, ondelete="cascade", index=True)
    sequence_id = fields.Many2one(related="step_id.sequence_id", store=True, index=True)
    company_id = fields.Many2one(related="step_id.company_id", store=True)
    sequence = fields.Integer("Order", default=10)
    name = fields.Char(required=True)
    weight = fields.Integer(
        default=50, required=True,
        help="Share of the customers who get this variant, relative to the other variants' weights.")
    share = fields.Float("Share", compute="_compute_share", help="Share of the customers it goes to.")
    mailing_id = fields.Many2one("mailing.mailing", string="Email", ondelete="restrict", copy=False, readonly=True)
    subject = fields.Char(related="mailing_id.subject", readonly=False)
    preview = fields.Char(related="mailing_id.preview", readonly=False)
    body_html = fields.Html(related="mailing_id.body_html", readonly=False)
    sender_name = fields.Char(
        help="Name the email comes from, with the sequence's address. Leave empty for the sequence's own.")
    is_winner = fields.Boolean("Winner", compute="_compute_is_winner")

    @api.constrains("weight")
    def _check_weight(self):
        if any(variant.weight <= 0 for variant in self):
            raise ValidationError(self.env._("A variant's weight must be positive."))

    @api.constrains("step_id")
    def _check_step(self):
        for step in self.step_id:
            if step.step_type != "email":
                raise ValidationError(self.env._("Only email steps have variants."))
            if len(step.variant_ids) > MAX_VARIANTS:
                raise ValidationError(self.env._(
                    "Step %(step)s has %(count)s variants: an A/B test compares %(max)s at most.",
                    step=step.display_name, count=len(step.variant_ids), max=MAX_VARIANTS))

    @api.model
    def _get_letter_name(self, index):
        return self.env._("Variant %(letter)s", letter=chr(ord("A") + min(index, 25)))

    @api.depends("weight", "step_id.variant_ids.weight")
    def _compute_share(self):
        for variant in self:
            total = sum(variant.step_id.variant_ids.mapped("weight"))
            variant.share = variant.weight / total if total else 0.0

    @api.depends("step_id.winner_variant_id")
    def _compute_is_winner(self):
        for variant in self:
            variant.is_winner = variant.step_id.winner_variant_id == variant

    # ------------------------------------------------------------
    # ORM
    # ------------------------------------------------------------

    @api.model
    def default_get(self, fields_list):
        """A new variant offers the step's current content."""
        defaults = super().default_get(fields_list)
        step = self.env["behavioral.sequence.step"].browse(
            defaults.get("step_id") or self.env.context.get("default_step_id")).exists()
        if step:
            if "name" in fields_list and not defaults.get("name"):
                defaults["name"] = self._get_letter_name(len(step.variant_ids))
            for fname in CONTENT_FIELDS:
                if fname in fields_list and not defaults.get(fname):
                    defaults[fname] = step[fname]
        return defaults

    @api.model_create_multi
    def create(self, vals_list):
        Step = self.env["behavioral.sequence.step"]
        contents = []
        next_letter = defaultdict(int)
        for vals in vals_list:
            step = Step.browse(vals.get("step_id"))
            content = {fname: vals.pop(fname) for fname in CONTENT_FIELDS if fname in vals}
            for fname in CONTENT_FIELDS:
                # what the form leaves out comes from the step
                if not content.get(fname) and step:
                    content[fname] = step[fname]
            contents.append(content)
            if not vals.get("name") and step:
                index = len(step.variant_ids) + next_letter[step.id]
                vals["name"] = self._get_letter_name(index)
                next_letter[step.id] += 1
        mailings = self.env["mailing.mailing"].sudo().create([
            Step._prepare_mailing_values(content) for content in contents])
        for vals, mailing in zip(vals_list, mailings):
            vals["mailing_id"] = mailing.id
        variants = super().create(vals_list)
        variants._sync_mailing_settings()
        return variants

    def write(self, vals):
        res = super().write(vals)
        if "sender_name" in vals:
            self._sync_mailing_settings()
        return res

    @api.ondelete(at_uninstall=False)
    def _unlink_except_testing(self):
        running = self.filtered(lambda v: v.step_id.sequence_id.state == "running" and v.kpi_sent)
        if running:
            raise UserError(self.env._(
                "Variant %(name)s has already been sent by a running sequence: pause the sequence first.",
                name=running[0].name))

    def unlink(self):
        mailings = self.mailing_id
        res = super().unlink()
        # keep the mailings that sent something: their traces are the history
        mailings.sudo().filtered(lambda m: not m.mailing_trace_ids).unlink()
        return res

    def copy_data(self, default=None):
        vals_list = super().copy_data(default=default)
        for variant, vals in zip(self, vals_list):
            vals.update({fname: variant[fname] for fname in CONTENT_FIELDS})
        return vals_list

    def _sync_mailing_settings(self):
        """The sequence's campaign, sender address and reply-to on each
        variant's mailing, the sender shown under the variant's own name."""
        for variant in self.filtered("mailing_id"):
            sequence = variant.step_id.sequence_id
            mailing = variant.mailing_id
            email_from = sequence.email_from or mailing.email_from
            addresses = email_split(email_from or "")
            if variant.sender_name and addresses:
                email_from = formataddr((variant.sender_name, addresses[0]))
            vals = {
                "campaign_id": sequence.campaign_id.id,
                "email_from": email_from,
                "reply_to": sequence.reply_to or sequence.email_from or mailing.reply_to,
            }
            if mailing.campaign_id.id != vals["campaign_id"] or any(
                    mailing[fname] != value for fname, value in vals.items() if fname != "campaign_id"):
                mailing.sudo().write(vals)

    # ------------------------------------------------------------
    # WINNER
    # ------------------------------------------------------------

    @api.model
    def _cron_pick_winners(self):
        """Decide the A/B tests that can be decided.

        Every step with variants and no winner yet, of a running or paused
        sequence, is judged on its own metric (:func:`stats.decide_winner`):
        the numbers of all those steps come from one query on
        ``behavioral.report``. A decided step sends its winner to everyone
        from then on, and the decision is posted on its sequence.
        """
        steps = self.env["behavioral.sequence.step"].sudo().search([
            ("winner_variant_id", "=", False),
            ("variant_ids", "!=", False),
            ("sequence_id.state", "in", ("running", "paused")),
        ])
        steps = steps.filtered(lambda s: len(s.variant_ids) >= 2)
        numbers = self._get_ab_numbers(steps)
        decided = self.env["behavioral.sequence.step"]
        for step in steps:
            arms = [numbers.get(variant.id) or self._make_arm(variant, step.ab_metric, {})
                    for variant in step.variant_ids.sorted()]
            decision = stats.decide_winner(arms, step.ab_metric, step.ab_confidence, step.ab_min_sample)
            if decision.winner:
                step._set_winner(self.browse(decision.winner), decision, arms)
                decided |= step
        return decided

    @api.model
    def _get_ab_numbers(self, steps):
        """{variant id: stats.Arm} for the variants of ``steps``, counting
        the emails they sent, in one query."""
        if not steps:
            return {}
        self.env.flush_all()
        self.env.cr.execute(SQL(
            """SELECT r.variant_id, count(*), sum(r.opened), sum(r.clicked), sum(r.converted),
                      sum(r.revenue), sum(r.revenue * r.revenue), sum(r.unsubscribed), sum(r.bounced)
                 FROM behavioral_report r
                WHERE r.step_id IN %s AND r.variant_id IS NOT NULL AND r.sent = 1
                GROUP BY r.variant_id""", tuple(steps.ids)))
        rows = {row[0]: row[1:] for row in self.env.cr.fetchall()}
        metrics = {variant.id: step.ab_metric for step in steps for variant in step.variant_ids}
        return {
            variant_id: self._make_arm(self.browse(variant_id), metrics[variant_id], dict(zip(
                ("n", "opened", "clicked", "converted", "total", "total_sq", "unsubscribed", "bounced"), row)))
            for variant_id, row in rows.items() if variant_id in metrics
        }

    @api.model
    def _make_arm(self, variant, metric, values):
        return stats.Arm(
            key=variant.id,
            n=values.get("n") or 0,
            successes=values.get(METRIC_MEASURES.get(metric)) or 0,
            total=float(values.get("total") or 0.0),
            total_sq=float(values.get("total_sq") or 0.0),
            unsubscribed=values.get("unsubscribed") or 0,
            bounced=values.get("bounced") or 0,
        )


class BehavioralSequenceStep(models.Model):
    """A/B settings of an email step; see :class:`BehavioralStepVariant`."""

    _name = "behavioral.sequence.step"
    _inherit = ["behavioral.sequence.step", "behavioral.kpi.mixin"]
    _kpi_key = "step_id"

    variant_ids = fields.One2many(
        "behavioral.step.variant", "step_id", string="Variants", copy=True,
        help="With variants, the step sends only its variants, each to its share of the customers.")
    variant_count = fields.Integer(compute="_compute_variant_count")
    ab_metric = fields.Selection(
        AB_METRICS, string="Winning Metric", default="click", required=True,
        help="What makes a variant win: the share of recipients who open, click or order, "
             "or the net revenue per recipient.")
    ab_min_sample = fields.Integer(
        "Minimum Sample", default=100, required=True,
        help="Emails each variant must have sent before a winner can be chosen.")
    ab_confidence = fields.Float(
        "Confidence", default=0.95, required=True,
        help="How sure the difference must be: 0.90, 0.95 or 0.99.")
    ab_confidence_choice = fields.Selection(
        AB_CONFIDENCES, string="Confidence Level", compute="_compute_ab_confidence_choice",
        inverse="_inverse_ab_confidence_choice")
    winner_variant_id = fields.Many2one(
        "behavioral.step.variant", string="Winner", readonly=True, copy=False, ondelete="set null",
        domain="[('step_id', '=', id)]")
    ab_decided_at = fields.Datetime("Decided On", readonly=True, copy=False)
    ab_decision = fields.Text("Decision", readonly=True, copy=False)

    @api.depends("variant_ids")
    def _compute_variant_count(self):
        for step in self:
            step.variant_count = len(step.variant_ids)

    @api.depends("ab_confidence")
    def _compute_ab_confidence_choice(self):
        for step in self:
            step.ab_confidence_choice = min(
                (key for key, _label in AB_CONFIDENCES), key=lambda key: abs(float(key) - step.ab_confidence))

    def _inverse_ab_confidence_choice(self):
        for step in self:
            step.ab_confidence = float(step.ab_confidence_choice or 0.95)

    @api.constrains("ab_confidence", "ab_min_sample")
    def _check_ab_settings(self):
        for step in self:
            if round(step.ab_confidence, 4) not in (0.9, 0.95, 0.99):
                raise ValidationError(self.env._("The A/B confidence is 0.90, 0.95 or 0.99."))
            if step.ab_min_sample < 2:
                raise ValidationError(self.env._("Each variant needs a minimum sample of at least 2 emails."))

    def _compute_statistics(self):
        """Opens and clicks of a step count its variants' emails too."""
        super()._compute_statistics()
        with_variants = self.filtered("variant_ids")
        if not with_variants:
            return
        data = self.env["mailing.trace"].sudo()._read_group(
            [("mass_mailing_id", "in", with_variants.variant_ids.mailing_id.ids)],
            ["mass_mailing_id"], ["open_datetime:count", "links_click_datetime:count"])
        step_of = {variant.mailing_id: variant.step_id for variant in with_variants.variant_ids}
        for mailing, opened, clicked in data:
            step = step_of[mailing]
            step.opened_count += opened
            step.clicked_count += clicked

    # ------------------------------------------------------------
    # ORM
    # ------------------------------------------------------------

    def unlink(self):
        mailings = self.variant_ids.mailing_id
        res = super().unlink()
        # variants go with their step (cascade): keep only the mailings that sent something
        mailings.sudo().exists().filtered(lambda m: not m.mailing_trace_ids).unlink()
        return res

    def _sync_sequence_settings(self):
        super()._sync_sequence_settings()
        self.variant_ids._sync_mailing_settings()

    # ------------------------------------------------------------
    # TOOLS
    # ------------------------------------------------------------

    def _get_content_problem(self):
        if self.step_type != "email" or not self.variant_ids:
            return super()._get_content_problem()
        if len(self.variant_ids) < 2:
            return self.env._("has a single variant: add a second one to compare, or remove it.")
        for variant in self.variant_ids:
            if not (variant.subject or "").strip():
                return self.env._("has a variant without subject (%(name)s).", name=variant.name)
            if not variant.mailing_id.email_from:
                return self.env._("has no sender: set the sequence's Send From address.")
            if is_html_empty(variant.body_html):
                return self.env._("has a variant without content (%(name)s).", name=variant.name)
        return False

    def _split_by_variant(self, enrollments):
        """Group the enrollments by the variant each gets.

        A customer's variant is drawn from the hash of their enrollment and
        this step (:func:`stats.pick_weighted`), so a retry, a second cron
        worker or a restart always gives the same one; the variants' weights
        cut the draw. Once the step has a winner, everyone gets it.

        :return list: [(variant, enrollments)]
        """
        self.ensure_one()
        if self.winner_variant_id:
            return [(self.winner_variant_id, enrollments)]
        weighted = [(variant, variant.weight) for variant in self.variant_ids.sorted()]
        groups = defaultdict(list)
        for enrollment in enrollments:
            groups[stats.pick_weighted(f"{enrollment.id}:{self.id}", weighted)].append(enrollment.id)
        return [(variant, enrollments.browse(ids)) for variant, ids in groups.items()]

    def _set_winner(self, winner, decision, arms):
        """Make ``winner`` the step's email for everyone, and say why on the
        sequence's chatter."""
        self.ensure_one()
        message = self._format_decision(winner, decision, arms)
        self.write({
            "winner_variant_id": winner.id,
            "ab_decided_at": fields.Datetime.now(),
            "ab_decision": message["text"],
        })
        self.sequence_id.message_post(body=message["html"], subtype_xmlid="mail.mt_note")
        _logger.info("behavioral_email: step %s: variant %s wins", self.id, winner.id)

    def _format_decision(self, winner, decision, arms):
        """The decision in words and as a table of every variant's numbers."""
        self.ensure_one()
        metric_label = dict(self._fields["ab_metric"]._description_selection(self.env))[self.ab_metric]
        by_id = {variant.id: variant for variant in self.variant_ids}
        revenue = self.ab_metric == "revenue"
        currency = self.env.company.currency_id
        test = self.env._("Welch's t-test") if revenue else self.env._("Two-proportion z-test")

        def score(arm):
            value = stats.arm_value(arm, self.ab_metric)
            if revenue:
                return self.env._("%(value)s per recipient", value=currency.format(value))
            rate = f"{value * 100:.1f}"
            return self.env._("%(rate)s %% (%(count)s of %(sent)s)", rate=rate, count=arm.successes, sent=arm.n)

        def p_text(p_value):
            return "< 0.0001" if p_value < 0.0001 else f"{p_value:.4f}"

        comparisons = ", ".join(
            self.env._("against %(other)s p = %(p)s", other=by_id[c.key].name, p=p_text(c.p_value))
            for c in decision.comparisons)
        threshold = f"{decision.alpha:.4g}"
        if len(decision.comparisons) > 1:
            alpha = f"{1 - self.ab_confidence:.2g}"
            threshold = self.env._(
                "%(threshold)s (%(alpha)s shared among %(count)s comparisons)",
                threshold=threshold, alpha=alpha, count=len(decision.comparisons))
        confidence = f"{self.ab_confidence * 100:g}"
        text = self.env._(
            "Step “%(step)s”: %(winner)s wins on %(metric)s with %(score)s. "
            "%(test)s at %(confidence)s %% confidence: %(comparisons)s, each below %(threshold)s. "
            "Every customer now gets %(winner)s.",
            step=self.display_name, winner=winner.name, metric=metric_label.lower(), score=score(
                next(arm for arm in arms if arm.key == winner.id)),
            test=test, confidence=confidence, comparisons=comparisons,
            threshold=threshold)
        rows = Markup("").join(
            Markup("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>") % (
                by_id[arm.key].name + (" ✔" if arm.key == winner.id else ""),
                arm.n, score(arm),
                f"{(arm.unsubscribed / arm.n * 100 if arm.n else 0):.1f} %",
                f"{(arm.bounced / arm.n * 100 if arm.n else 0):.1f} %")
            for arm in arms)
        html = Markup(
            "<p>%s</p><table class='table table-sm'><thead><tr><th>%s</th><th>%s</th><th>%s</th>"
            "<th>%s</th><th>%s</th></tr></thead><tbody>%s</tbody></table>"
        ) % (text, self.env._("Variant"), self.env._("Sent"), metric_label,
             self.env._("Unsubscribed"), self.env._("Bounced"), rows)
        return {"text": text, "html": html}
