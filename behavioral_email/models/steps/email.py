import logging

import lxml.html
from markupsafe import Markup

from odoo import api, fields, models, tools
from odoo.addons.link_tracker.tools.html import find_links_with_urls_and_labels
from odoo.tools import SQL, is_html_empty
from odoo.tools.mail import URL_SKIP_PROTOCOL_REGEX
from odoo.tools.misc import file_open

from ...tools import backoff_sleep, is_concurrency_error, shared_rows_env

_logger = logging.getLogger(__name__)

# local links that must stay as they are: mass_mailing turns them into
# recipient-specific links when the mail is sent; the preference page link is
# personal (signed for the customer), a tracked copy of it would be a leak
UNTRACKED_LINKS = ["/unsubscribe_from_list", "/view", "/cards", "/email-preferences", "/my/email-preferences"]

CONTENT_FIELDS = ("subject", "preview", "body_html")

# attempts at creating a batch's tracked links in their own transaction
LINK_ATTEMPTS = 5


class BehavioralSequenceStep(models.Model):
    """Step kind ``email``: an email rendered for each customer and queued in
    Odoo's mail queue.

    The content lives on a technical ``mailing.mailing`` (``mailing_id``),
    created with the step and hidden from the Email Marketing app: that is what
    gives every email of the step mass_mailing's tracking (opens, clicks, link
    tracker with UTM), its unsubscribe page and List-Unsubscribe headers, and
    lets the step be rendered by Odoo's own renderer.
    """

    _inherit = "behavioral.sequence.step"

    step_type = fields.Selection(selection_add=[("email", "Email")], ondelete={"email": "cascade"})
    mailing_id = fields.Many2one(
        "mailing.mailing", string="Email", ondelete="restrict", copy=False, readonly=True)
    subject = fields.Char(related="mailing_id.subject", readonly=False)
    preview = fields.Char(related="mailing_id.preview", readonly=False)
    body_html = fields.Html(related="mailing_id.body_html", readonly=False)
    opened_count = fields.Integer(compute="_compute_statistics")
    clicked_count = fields.Integer(compute="_compute_statistics")

    @api.depends("mailing_id.subject")
    def _compute_name(self):
        emails = self.filtered(lambda s: s.step_type == "email")
        for step in emails:
            step.name = step.mailing_id.subject or step.name or self.env._("New email")
        super(BehavioralSequenceStep, self - emails)._compute_name()

    def _compute_statistics(self):
        super()._compute_statistics()
        mailing_data = self.env["mailing.trace"].sudo()._read_group(
            [("mass_mailing_id", "in", self.mailing_id.ids)],
            ["mass_mailing_id"], ["open_datetime:count", "links_click_datetime:count"])
        opened = {m.id: o for m, o, _c in mailing_data}
        clicked = {m.id: c for m, _o, c in mailing_data}
        for step in self:
            step.opened_count = opened.get(step.mailing_id.id, 0)
            step.clicked_count = clicked.get(step.mailing_id.id, 0)

    # ------------------------------------------------------------
    # ORM
    # ------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        contents = [{f: vals.pop(f) for f in CONTENT_FIELDS if f in vals} for vals in vals_list]
        default_type = self.default_get(["step_type"]).get("step_type")
        email_indexes = [i for i, vals in enumerate(vals_list)
                         if vals.get("step_type", default_type) == "email"]
        mailings = self.env["mailing.mailing"].sudo().create([
            self._prepare_mailing_values(contents[i]) for i in email_indexes
        ])
        for i, mailing in zip(email_indexes, mailings):
            vals_list[i]["mailing_id"] = mailing.id
        steps = super().create(vals_list)
        steps._sync_sequence_settings()
        return steps

    def unlink(self):
        mailings = self.mailing_id
        res = super().unlink()
        # Keep the mailings that already sent something: their traces are the history.
        mailings.sudo().filtered(lambda m: not m.mailing_trace_ids).unlink()
        return res

    def copy_data(self, default=None):
        vals_list = super().copy_data(default=default)
        for step, vals in zip(self, vals_list):
            if step.step_type == "email":
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

    def _sync_sequence_settings(self):
        """Mirror the sequence's sender and campaign on the steps' mailings."""
        super()._sync_sequence_settings()
        for step in self.filtered("mailing_id"):
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

    @api.model
    def _get_cadence_kinds(self):
        kinds = super()._get_cadence_kinds()
        kinds["email"] = {"quiet", "cap", "engagement"}
        return kinds

    # -- holdout: an email reaches the customer, so the control group skips it --
    @api.model
    def _get_message_kinds(self):
        return super()._get_message_kinds() | {"email"}
    # --

    def _get_content_problem(self):
        if self.step_type != "email":
            return super()._get_content_problem()
        if not self.mailing_id or not (self.subject or "").strip():
            return self.env._("has no subject.")
        if not self.mailing_id.email_from:
            return self.env._("has no sender: set the sequence's Send From address.")
        if is_html_empty(self.body_html):
            return self.env._("has no content.")
        return False

    # ------------------------------------------------------------
    # EXECUTION
    # ------------------------------------------------------------

    def _run_email(self, enrollments):
        """Check consent at send time for the whole group, then render and
        queue the emails of those who may receive them."""
        outcomes = {}
        failures = self.sequence_id._get_consent_failures(enrollments.partner_id)
        labels = dict(self.env["behavioral.trace"]._fields["failure_type"]._description_selection(self.env))
        for enrollment in enrollments.filtered(lambda e: e.partner_id.id in failures):
            failure = failures[enrollment.partner_id.id]
            outcomes[enrollment.id] = {
                "state": "canceled", "failure_type": failure, "state_msg": labels.get(failure),
            }
        pending = enrollments.filtered(lambda e: e.id not in outcomes)
        # -- A/B variants (behavioral_step_variant.py): each customer's group is
        # sent with its variant's mailing, recorded on the trace --
        if pending and self.variant_ids:
            for variant, group in self._split_by_variant(pending):
                group_outcomes = self._send_emails(group, mailing=variant.mailing_id)
                for outcome in group_outcomes.values():
                    outcome["variant_id"] = variant.id
                outcomes.update(group_outcomes)
            return outcomes
        # --
        if pending:
            outcomes.update(self._send_emails(pending))
        return outcomes

    def _send_emails(self, enrollments, mailing=None):
        """Render this step for every enrollment and queue the mails.

        Rendering uses the step's mailing, or ``mailing`` (an A/B variant's),
        with Odoo's renderer, in batch; links are made trackable in one pass
        for the whole batch; the mails are created in one ``create`` and left
        to Odoo's mail queue.
        """
        mailing = (mailing or self.mailing_id).sudo()
        enrollments._ensure_order_tokens()
        rendered, errors = self._render_batch(enrollments, mailing=mailing)
        outcomes = {
            enrollment_id: {"state": "failed", "failure_type": "render", "state_msg": error}
            for enrollment_id, error in errors.items()
        }
        if not rendered:
            return outcomes
        bodies = self._shorten_links_batch(
            {rid: values["body"] for rid, values in rendered.items()}, mailing=mailing)
        styles = self._get_mail_styles()
        to_send = enrollments.filtered(lambda e: e.id in rendered)
        mail_values = []
        for enrollment in to_send:
            values = rendered[enrollment.id]
            body = self._add_preference_footer(enrollment, bodies[enrollment.id])  # why, "Manage preferences"
            body = self._wrap_body(body, values.get("preview"), styles)
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
                # kept so that staff can see what the customer received
                "body_html": rendered[enrollment.id]["body"],
                "mail_mail_id": mail.id,
                "mail_mail_id_int": mail.id,
                "mailing_trace_id": mail.mailing_trace_ids[:1].id,
            }
        # let the mail queue pick them up now rather than at its next tick
        self.env.ref("mail.ir_cron_mail_scheduler_action").sudo()._trigger()
        return outcomes

    def _get_mail_styles(self):
        with file_open("mass_mailing/static/src/scss/mass_mailing_mail.scss", "r") as fd:
            return Markup("<style>%s</style>") % fd.read()

    def _wrap_body(self, body, preview, styles):
        """A rendered body as it is mailed: unsubscribe footer (marketing),
        preview text and mass mailing's layout."""
        mailing = self.mailing_id.sudo()
        if self.sequence_id.consent_mode != "transactional" and "/unsubscribe_from_list" not in body:
            body = tools.mail.append_content_to_html(
                body, self._get_unsubscribe_footer(mailing.get_base_url()), plaintext=False)
        body = mailing._prepend_preview(Markup(body), preview or "")
        return self.env["ir.qweb"]._render(
            "mass_mailing.mass_mailing_mail_layout",
            {"body": body, "mailing_style": styles},
            minimal_qcontext=True, raise_if_not_found=False,
        ) or body

    def _render_batch(self, enrollments, mailing=None):
        """Render subject, preview and body for all enrollments at once, with
        the step's mailing or ``mailing``.

        When the batch render fails, every enrollment is rendered alone so that
        one bad record (or a broken template) fails only where it breaks.

        :return tuple: ({enrollment id: {'subject', 'preview', 'body'}},
                        {enrollment id: error message})
        """
        mailing = (mailing or self.mailing_id).sudo().with_context(lang=None, behavioral_render_batch=True)
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

    def _shorten_links_batch(self, bodies, mailing=None):
        """Replace the links of all bodies by tracked short links (with the
        UTM values of the step's mailing, or of ``mailing``).

        Same result as mass_mailing's per-mail shortening, but with one
        ``link.tracker.search_or_create`` call for the whole batch.
        """
        mailing = (mailing or self.mailing_id).sudo()
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
        short_urls = self._get_tracked_links(all_vals)
        result = dict(bodies)
        for res_id, (root, nodes, start) in parsed.items():
            for node, short_url in zip(nodes, short_urls[start:start + len(nodes)]):
                node.set("href", short_url)
            result[res_id] = Markup(lxml.html.tostring(root, encoding="unicode", method="xml"))
        return result

    @api.model
    def _get_tracked_links(self, vals_list):
        """Short URLs of the tracked links described by ``vals_list``, in order.

        Tracked links and their random short codes are rows that every worker
        creates on the fly; two workers drawing the same code at once collide
        on its unique index. They are therefore created in a short transaction
        of their own, committed at once (harmless if the batch is rolled back
        later: a tracked link is a shared lookup row), and a collision is
        retried after a jittered pause; codes committed by another worker are
        then seen and avoided. A collision that keeps coming back is raised as
        a concurrency error, so the batch is retried whole, never failed.
        """
        for attempt in range(1, LINK_ATTEMPTS + 1):
            try:
                with shared_rows_env(self.env) as env:
                    trackers = env["link.tracker"].sudo().search_or_create(
                        [dict(vals) for vals in vals_list])
                    short_urls = self._read_short_urls(env, trackers)
                return [short_urls[tracker_id] for tracker_id in trackers.ids]
            except Exception as exc:
                if not is_concurrency_error(exc) or attempt == LINK_ATTEMPTS:
                    raise
                _logger.info("behavioral_email: tracked link conflict (%s), retrying", exc.__class__.__name__)
                backoff_sleep(attempt)
        return []

    @api.model
    def _read_short_urls(self, env, trackers):
        """{tracker id: short url}, read in one query (link.tracker computes
        each code with a query of its own)."""
        if not trackers:
            return {}
        env["link.tracker.code"].flush_model(["link_id", "code"])
        env.cr.execute(SQL(
            """SELECT DISTINCT ON (link_id) link_id, code FROM link_tracker_code
                WHERE link_id IN %s ORDER BY link_id, id DESC""", tuple(set(trackers.ids))))
        codes = dict(env.cr.fetchall())
        prefix = trackers[:1].short_url_host
        return {tracker_id: prefix + code for tracker_id, code in codes.items()}

    @api.model
    def _get_unsubscribe_footer(self, base_url):
        return Markup(
            '<div style="margin:16px 0 0 0;text-align:center;font-size:12px;color:#888888;">'
            '<a href="%s/unsubscribe_from_list" style="color:#888888;">%s</a></div>'
        ) % (base_url, self.env._("Unsubscribe"))
