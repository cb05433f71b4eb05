import logging
from ast import literal_eval
from datetime import timedelta

import lxml.html
from markupsafe import Markup

from odoo import api, fields, models, tools
from odoo.addons.link_tracker.tools.html import find_links_with_urls_and_labels
from odoo.exceptions import UserError, ValidationError
from odoo.osv import expression
from odoo.tools import SQL, is_html_empty
from odoo.tools.mail import URL_SKIP_PROTOCOL_REGEX
from odoo.tools.misc import file_open

from ..tools import is_concurrency_error

_logger = logging.getLogger(__name__)

# local links that must stay as they are: mass_mailing turns them into
# recipient-specific links when the mail is sent
UNTRACKED_LINKS = ["/unsubscribe_from_list", "/view", "/cards"]

DELAY_UNITS = {
    "minutes": lambda n: timedelta(minutes=n),
    "hours": lambda n: timedelta(hours=n),
    "days": lambda n: timedelta(days=n),
    "weeks": lambda n: timedelta(weeks=n),
}


class BehavioralSequenceStep(models.Model):
    """One email of a sequence.

    The content lives on a technical ``mailing.mailing`` (``mailing_id``),
    created with the step and hidden from the Email Marketing app: that is what
    gives every email of the step mass_mailing's tracking (opens, clicks, link
    tracker with UTM), its unsubscribe page and List-Unsubscribe headers, and
    lets the step be rendered by Odoo's own renderer.

    Timing: the first step runs ``delay`` after the trigger (e.g. when the cart
    became abandoned); every later step ``delay`` after the previous step
    actually ran.
    """

    _name = "behavioral.sequence.step"
    _description = "Behavioral Sequence Step"
    _order = "sequence_id, sequence, id"

    sequence_id = fields.Many2one(
        "behavioral.sequence", required=True, ondelete="cascade", index=True)
    sequence = fields.Integer("Order", default=10)
    name = fields.Char(compute="_compute_name", store=True, readonly=False)
    delay_value = fields.Integer("Delay", required=True)
    delay_unit = fields.Selection(
        [("minutes", "Minutes"), ("hours", "Hours"), ("days", "Days"), ("weeks", "Weeks")],
        default="days", required=True)
    condition_domain = fields.Char(
        "Condition", default="[]",
        help="Checked on the source document (cart, order or contact) when the step is due: "
             "if it does not match, this email is skipped and the sequence goes on.")
    mailing_id = fields.Many2one(
        "mailing.mailing", string="Email", ondelete="restrict", copy=False, readonly=True)
    subject = fields.Char(related="mailing_id.subject", readonly=False)
    preview = fields.Char(related="mailing_id.preview", readonly=False)
    body_html = fields.Html(related="mailing_id.body_html", readonly=False)
    company_id = fields.Many2one(related="sequence_id.company_id", store=True)
    # statistics
    trace_ids = fields.One2many("behavioral.trace", "step_id")
    sent_count = fields.Integer(compute="_compute_statistics")
    opened_count = fields.Integer(compute="_compute_statistics")
    clicked_count = fields.Integer(compute="_compute_statistics")
    failed_count = fields.Integer(compute="_compute_statistics")

    @api.depends("mailing_id.subject")
    def _compute_name(self):
        for step in self:
            step.name = step.mailing_id.subject or step.name or self.env._("New email")

    def _compute_statistics(self):
        data = self.env["behavioral.trace"]._read_group(
            [("step_id", "in", self.ids)], ["step_id", "state"], ["__count"])
        sent, failed = {}, {}
        for step, state, count in data:
            if state == "sent":
                sent[step] = count
            elif state in ("failed", "canceled"):
                failed[step] = failed.get(step, 0) + count
        mailing_data = self.env["mailing.trace"].sudo()._read_group(
            [("mass_mailing_id", "in", self.mailing_id.ids)],
            ["mass_mailing_id"], ["open_datetime:count", "links_click_datetime:count"])
        opened = {m.id: o for m, o, _c in mailing_data}
        clicked = {m.id: c for m, _o, c in mailing_data}
        for step in self:
            step.sent_count = sent.get(step, 0)
            step.failed_count = failed.get(step, 0)
            step.opened_count = opened.get(step.mailing_id.id, 0)
            step.clicked_count = clicked.get(step.mailing_id.id, 0)

    @api.constrains("delay_value")
    def _check_delay(self):
        if any(step.delay_value < 0 for step in self):
            raise ValidationError(self.env._("A step delay cannot be negative."))

    @api.constrains("condition_domain")
    def _check_condition(self):
        for step in self:
            try:
                domain = literal_eval(step.condition_domain or "[]")
                self.env[step.sequence_id.source_model].sudo().search_count(domain, limit=1)
            except Exception as exc:
                raise ValidationError(self.env._(
                    "The condition of step %(step)s is not a valid domain: %(error)s",
                    step=step.display_name, error=exc)) from exc

    # ------------------------------------------------------------
    # ORM
    # ------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        content_fields = ("subject", "preview", "body_html")
        mailing_vals_list = []
        for vals in vals_list:
            mailing_vals_list.append({f: vals.pop(f) for f in content_fields if f in vals})
        mailings = self.env["mailing.mailing"].sudo().create([
            self._prepare_mailing_values(mvals) for mvals in mailing_vals_list
        ])
        for vals, mailing in zip(vals_list, mailings):
            vals["mailing_id"] = mailing.id
        steps = super().create(vals_list)
        steps._sync_mailing()
        return steps

    @api.ondelete(at_uninstall=False)
    def _unlink_except_waiting_enrollments(self):
        waiting = self.env["behavioral.enrollment"].sudo().search_count([
            ("step_id", "in", self.ids), ("state", "in", ("running", "failed")),
        ])
        if waiting:
            raise UserError(self.env._(
                "%(count)s enrollment(s) are waiting for this step. Pause the sequence and stop "
                "them, or keep the step and change its content instead.", count=waiting))

    def unlink(self):
        mailings = self.mailing_id
        res = super().unlink()
        # Keep the mailings that already sent something: their traces are the history.
        mailings.sudo().filtered(lambda m: not m.mailing_trace_ids).unlink()
        return res

    def copy_data(self, default=None):
        vals_list = super().copy_data(default=default)
        for step, vals in zip(self, vals_list):
            vals.update(subject=step.subject, preview=step.preview, body_html=step.body_html)
        return vals_list

    @api.model
    def _prepare_mailing_values(self, content):
        return {
            "subject": content.get("subject") or self.env._("New email"),
            "preview": content.get("preview") or False,
            "body_html": content.get("body_html") or False,
            "mailing_model_id": self.env["ir.model"]._get_id("behavioral.enrollment"),
            # the mailing itself never selects recipients: the sequence does
            "mailing_domain": "[(0, '=', 1)]",
            "use_in_behavioral": True,
            "reply_to_mode": "new",
            "keep_archives": False,
            "lang": "{{ object.partner_id.lang }}",
        }

    def _sync_mailing(self):
        """Mirror the sequence's sender and campaign on the steps' mailings."""
        for step in self:
            sequence = step.sequence_id
            vals = {
                "campaign_id": sequence.campaign_id.id,
                "email_from": sequence.email_from or step.mailing_id.email_from,
                "reply_to": sequence.reply_to or sequence.email_from or step.mailing_id.reply_to,
            }
            if any(step.mailing_id[f] != v for f, v in vals.items() if f != "campaign_id") \
                    or step.mailing_id.campaign_id.id != vals["campaign_id"]:
                step.mailing_id.sudo().write(vals)

    # ------------------------------------------------------------
    # TOOLS
    # ------------------------------------------------------------

    def _get_delay(self):
        self.ensure_one()
        return DELAY_UNITS[self.delay_unit](self.delay_value)

    def _get_content_problem(self):
        """Why this step cannot be sent as it is (a sentence), or False."""
        self.ensure_one()
        if not self.mailing_id or not (self.subject or "").strip():
            return self.env._("has no subject.")
        if not self.mailing_id.email_from:
            return self.env._("has no sender: set the sequence's Send From address.")
        if is_html_empty(self.body_html):
            return self.env._("has no content.")
        return False

    def _get_next_step(self):
        self.ensure_one()
        steps = self.sequence_id.step_ids.sorted()
        index = list(steps).index(self)
        return steps[index + 1] if index + 1 < len(steps) else self.browse()

    # ------------------------------------------------------------
    # EXECUTION
    # ------------------------------------------------------------

    def _execute(self, enrollments):
        """Run this step for these enrollments (all due, all on this step).

        :return dict: {enrollment id: behavioral.trace values}, one per enrollment
        """
        self.ensure_one()
        sequence = self.sequence_id
        outcomes = {}
        Source = self.env[sequence.source_model].sudo().with_context(active_test=False)
        # the source document must still exist
        existing = set(Source.browse(enrollments.mapped("res_id")).exists().ids)
        for enrollment in enrollments.filtered(lambda e: e.res_id not in existing):
            outcomes[enrollment.id] = {
                "state": "canceled", "failure_type": "source_missing",
                "state_msg": self.env._("The %(model)s this enrollment is about was deleted.",
                               model=Source._description),
            }
        # condition on the source document
        condition = literal_eval(self.condition_domain or "[]")
        if condition:
            pending = enrollments.filtered(lambda e: e.id not in outcomes)
            matching = set(Source.search(
                expression.AND([condition, [("id", "in", pending.mapped("res_id"))]])).ids)
            for enrollment in pending.filtered(lambda e: e.res_id not in matching):
                outcomes[enrollment.id] = {
                    "state": "skipped", "state_msg": self.env._("The step condition did not match."),
                }
        pending = enrollments.filtered(lambda e: e.id not in outcomes)
        # consent, checked at send time for the whole group
        failures = sequence._get_consent_failures(pending.partner_id)
        labels = dict(self.env["behavioral.trace"]._fields["failure_type"]._description_selection(self.env))
        for enrollment in pending.filtered(lambda e: e.partner_id.id in failures):
            failure = failures[enrollment.partner_id.id]
            outcomes[enrollment.id] = {
                "state": "canceled", "failure_type": failure, "state_msg": labels.get(failure),
            }
        pending = pending.filtered(lambda e: e.id not in outcomes)
        if pending:
            outcomes.update(self._send_emails(pending))
        return outcomes

    def _send_emails(self, enrollments):
        """Render this step for every enrollment and queue the mails.

        Rendering uses the step's mailing (Odoo's renderer, in batch); links are
        made trackable in one pass for the whole batch; the mails are created in
        one ``create`` and left to Odoo's mail queue.
        """
        mailing = self.mailing_id.sudo()
        enrollments._ensure_order_tokens()
        rendered, errors = self._render_batch(enrollments)
        outcomes = {
            enrollment_id: {"state": "failed", "failure_type": "render", "state_msg": error}
            for enrollment_id, error in errors.items()
        }
        if not rendered:
            return outcomes
        bodies = self._shorten_links_batch({rid: values["body"] for rid, values in rendered.items()})
        transactional = self.sequence_id.consent_mode == "transactional"
        base_url = mailing.get_base_url()
        with file_open("mass_mailing/static/src/scss/mass_mailing_mail.scss", "r") as fd:
            styles = Markup("<style>%s</style>") % fd.read()
        to_send = enrollments.filtered(lambda e: e.id in rendered)
        mail_values = []
        for enrollment in to_send:
            values = rendered[enrollment.id]
            body = bodies[enrollment.id]
            if not transactional and "/unsubscribe_from_list" not in body:
                body = tools.mail.append_content_to_html(body, self._get_unsubscribe_footer(base_url), plaintext=False)
            body = mailing._prepend_preview(Markup(body), values.get("preview") or "")
            body = self.env["ir.qweb"]._render(
                "mass_mailing.mass_mailing_mail_layout",
                {"body": body, "mailing_style": styles},
                minimal_qcontext=True, raise_if_not_found=False,
            ) or body
            # replies go to the sequence's reply-to address, not to a thread
            message_id = tools.mail.generate_tracking_message_id("reply_to")
            partner = enrollment.partner_id
            mail_values.append({
                "subject": values["subject"],
                "body_html": body,
                "email_from": mailing.email_from,
                "reply_to": mailing.reply_to or mailing.email_from,
                "recipient_ids": [(4, partner.id)],
                "model": "behavioral.enrollment",
                "res_id": enrollment.id,
                "mailing_id": mailing.id,
                "mail_server_id": mailing.mail_server_id.id,
                "auto_delete": not mailing.keep_archives,
                "is_notification": False,
                "message_type": "email_outgoing",
                "message_id": message_id,
                "references": message_id,
                "headers": repr({"X-Odoo-Behavioral-Sequence": str(self.sequence_id.id)}),
                "mailing_trace_ids": [(0, 0, {
                    "trace_type": "mail",
                    "email": partner.email_normalized,
                    "mass_mailing_id": mailing.id,
                    "message_id": message_id,
                    "model": "behavioral.enrollment",
                    "res_id": enrollment.id,
                })],
            })
        mails = self.env["mail.mail"].sudo().create(mail_values)
        for enrollment, mail in zip(to_send, mails):
            outcomes[enrollment.id] = {
                "state": "sent",
                "subject": rendered[enrollment.id]["subject"],
                "mail_mail_id": mail.id,
                "mail_mail_id_int": mail.id,
                "mailing_trace_id": mail.mailing_trace_ids[:1].id,
            }
        # let the mail queue pick them up now rather than at its next tick
        self.env.ref("mail.ir_cron_mail_scheduler_action").sudo()._trigger()
        return outcomes

    def _render_batch(self, enrollments):
        """Render subject, preview and body for all enrollments at once.

        When the batch render fails, every enrollment is rendered alone so that
        one bad record (or a broken template) fails only where it breaks.

        :return tuple: ({enrollment id: {'subject', 'preview', 'body'}},
                        {enrollment id: error message})
        """
        mailing = self.mailing_id.sudo().with_context(lang=None, behavioral_render_batch=True)
        try:
            with self.env.cr.savepoint():
                return self._render_ids(mailing, enrollments.ids), {}
        except Exception as exc:  # noqa: BLE001 - isolate the failing records below
            if is_concurrency_error(exc):
                raise
            _logger.info("behavioral_email: batch render of step %s failed, rendering one by one", self.id)
        rendered, errors = {}, {}
        for enrollment_id in enrollments.ids:
            try:
                with self.env.cr.savepoint():
                    rendered.update(self._render_ids(mailing, [enrollment_id]))
            except Exception as exc:  # noqa: BLE001 - recorded on the trace
                if is_concurrency_error(exc):
                    raise
                _logger.warning("behavioral_email: step %s does not render for enrollment %s: %s",
                                self.id, enrollment_id, exc)
                errors[enrollment_id] = self.env._("The email could not be rendered: %s", self._describe_error(exc))
        return rendered, errors

    @api.model
    def _describe_error(self, exc):
        """The root cause of a rendering error, in one line."""
        root = exc
        while root.__cause__ is not None or root.__context__ is not None:
            root = root.__cause__ or root.__context__
        return f"{type(root).__name__}: {root}".splitlines()[0][:500]

    @api.model
    def _render_ids(self, mailing, res_ids):
        subjects = mailing._render_field("subject", res_ids, compute_lang=True)
        bodies = mailing._render_field(
            "body_html", res_ids, compute_lang=True,
            options={"post_process": True, "preserve_comments": True})
        previews = mailing._render_field("preview", res_ids, compute_lang=True) if mailing.preview else {}
        for res_id in res_ids:
            if not (subjects[res_id] or "").strip():
                raise ValueError(self.env._("the subject renders empty"))
        return {
            res_id: {"subject": subjects[res_id], "body": bodies[res_id], "preview": previews.get(res_id)}
            for res_id in res_ids
        }

    def _shorten_links_batch(self, bodies):
        """Replace the links of all bodies by tracked short links.

        Same result as mass_mailing's per-mail shortening, but with one
        ``link.tracker.search_or_create`` call for the whole batch.
        """
        mailing = self.mailing_id.sudo()
        tracker_vals = mailing._get_link_tracker_values()
        base_url = self.env["ir.config_parameter"].sudo().get_param("web.base.url")
        short_prefix = base_url + "/r/"
        parsed = {}
        all_vals = []
        for res_id, html in bodies.items():
            if not html or is_html_empty(html):
                continue
            root = lxml.html.fromstring(html)
            nodes, urls_and_labels = find_links_with_urls_and_labels(
                root, base_url, skip_regex=rf"^{URL_SKIP_PROTOCOL_REGEX}",
                skip_prefix=short_prefix, skip_list=UNTRACKED_LINKS)
            if nodes:
                parsed[res_id] = (root, nodes, len(all_vals))
                # a title given up front spares link.tracker from fetching
                # every new URL over HTTP (one request per cart restore link)
                all_vals += [dict(tracker_vals, title=item["label"] or item["url"], **item)
                             for item in urls_and_labels]
        if not all_vals:
            return dict(bodies)
        trackers = self.env["link.tracker"].sudo().search_or_create(all_vals)
        short_urls = self._get_short_urls(trackers)
        result = dict(bodies)
        for res_id, (root, nodes, start) in parsed.items():
            for node, tracker in zip(nodes, trackers[start:start + len(nodes)]):
                node.set("href", short_urls[tracker.id])
            result[res_id] = Markup(lxml.html.tostring(root, encoding="unicode", method="xml"))
        return result

    @api.model
    def _get_short_urls(self, trackers):
        """{tracker id: short url}, read in one query (link.tracker computes
        each code with a query of its own)."""
        if not trackers:
            return {}
        self.env["link.tracker.code"].flush_model(["link_id", "code"])
        self.env.cr.execute(SQL(
            """SELECT DISTINCT ON (link_id) link_id, code FROM link_tracker_code
                WHERE link_id IN %s ORDER BY link_id, id DESC""", tuple(set(trackers.ids))))
        codes = dict(self.env.cr.fetchall())
        prefix = trackers[:1].short_url_host
        return {tracker_id: prefix + code for tracker_id, code in codes.items()}

    @api.model
    def _get_unsubscribe_footer(self, base_url):
        return Markup(
            '<div style="margin:16px 0 0 0;text-align:center;font-size:12px;color:#888888;">'
            '<a href="%s/unsubscribe_from_list" style="color:#888888;">%s</a></div>'
        ) % (base_url, self.env._("Unsubscribe"))
