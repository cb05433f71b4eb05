import re

from lxml import html

from odoo import api, fields, models
from odoo.exceptions import AccessError, ValidationError
from odoo.tools.rendering_tools import parse_inline_template, render_inline_template

from ...tools import is_concurrency_error
from ...tools.email_blocks import expand_blocks, get_block_problems, get_blocks

# step fields whose change is checked by rendering the email once
CHECKED_FIELDS = {"subject", "preview", "body_html", "body_arch"}

# products a product block shows unless its data-limit says otherwise
DEFAULT_PRODUCT_LIMIT = 3
MAX_PRODUCT_LIMIT = 12

# " [2]" that utm.source adds to keep names unique
UNIQUE_SUFFIX_RE = re.compile(r" \[\d+\]$")


def _get_qweb_code(body, allowed):
    """{(directive, expression)} of the QWeb in ``body``, but the allowed
    placeholders (``t-out`` of an expression in ``allowed``)."""
    if not body or "t-" not in body:
        return set()
    code = set()
    for node in html.fragment_fromstring(body, create_parent="div").iter():
        for name, value in node.attrib.items():
            if name.startswith("t-") and not (name == "t-out" and value.strip() in allowed):
                code.add((name, value.strip()))
    return code


def _get_inline_code(text, allowed):
    """{expression} of the ``{{ }}`` placeholders of ``text`` beyond ``allowed``."""
    if not text or "{{" not in text:
        return set()
    return {expression.strip() for _string, expression, _default in parse_inline_template(str(text))
            if expression and expression.strip() not in allowed}


class BehavioralSequenceStep(models.Model):
    """Step kind ``email``: its content, as marketers edit it.

    The body is edited in Odoo's mass-mailing editor (``body_arch``, the
    editor's own version; ``body_html``, the inlined version that is sent).
    Dynamic content comes as blocks (:mod:`..tools.email_blocks`) that the
    editor moves as one unit and cannot break, expanded into QWeb when the
    email is rendered (``mailing.mailing._render_template``). Saving content
    that would not render, or whose blocks were damaged, is refused
    (:meth:`_check_email_content`). The step's mailing is named after its
    sequence and step, which is also its UTM source.
    """

    _inherit = "behavioral.sequence.step"

    body_arch = fields.Html(related="mailing_id.body_arch", readonly=False)
    mailing_model_id = fields.Many2one(related="mailing_id.mailing_model_id")
    mailing_model_real = fields.Char(related="mailing_id.mailing_model_real")
    coupon_code = fields.Char(
        "Promo Code", help="The code the Promo code block of this email shows, e.g. an eCommerce "
                           "promotion or discount code. Without it the block shows nothing.")

    # ------------------------------------------------------------
    # ORM
    # ------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            # content written as HTML only (code, data files) is what the editor opens too
            if vals.get("body_html") and not vals.get("body_arch"):
                vals["body_arch"] = vals["body_html"]
        steps = super().create(vals_list)
        steps.filtered(lambda s: s.step_type == "email" and s.body_html)._check_email_content()
        return steps

    def write(self, vals):
        if vals.get("body_html") and "body_arch" not in vals:
            vals = dict(vals, body_arch=vals["body_html"])
        checked = CHECKED_FIELDS & set(vals)
        before = {step.id: {fname: step[fname] for fname in checked} for step in self} if checked else {}
        res = super().write(vals)
        if checked:
            self.filtered(lambda s: s.step_type == "email")._check_email_content(checked, before)
        if {"subject", "name", "sequence_id"} & set(vals):
            self._sync_mailing_names()
        return res

    def _sync_sequence_settings(self):
        super()._sync_sequence_settings()
        self._sync_mailing_names()

    def _sync_mailing_names(self):
        """Name each step's mailing (and so its UTM source) "<Sequence> – <Step>",
        the step being known by its subject, placeholders shown by their
        default value (or "…")."""
        for step in self.filtered("mailing_id"):
            title = "".join(
                string + (((default or "").strip() or "…") if expression else "")
                for string, expression, default in parse_inline_template(step.subject or "")
            ).strip() if step.subject else step.name
            name = f"{step.sequence_id.name} – {title}"
            if UNIQUE_SUFFIX_RE.sub("", step.mailing_id.name or "") != name:
                step.mailing_id.sudo().write({"name": name})

    # ------------------------------------------------------------
    # DYNAMIC BLOCKS
    # ------------------------------------------------------------

    @api.model
    def _get_email_blocks(self):
        """The dynamic blocks the emails may hold (extend with ``super()``).

        :return dict: {kind: (label, xmlid of the QWeb template rendering it
            with ``object``, the enrollment)}; the editor offers the matching
            snippets (views/behavioral_email_snippets.xml)
        """
        return {
            "header": (self.env._("Shop header"), "behavioral_email.email_block_header"),
            "cart_lines": (self.env._("Cart lines"), "behavioral_email.email_block_cart_lines"),
            "order_lines": (self.env._("Order lines"), "behavioral_email.email_block_order_lines"),
            "restore_cart": (self.env._("Restore cart button"), "behavioral_email.email_block_restore_cart"),
            "order_link": (self.env._("Order link"), "behavioral_email.email_block_order_link"),
            "invoice_link": (self.env._("Invoice link"), "behavioral_email.email_block_invoice_link"),
            "last_visited": (
                self.env._("Continue browsing button"), "behavioral_email.email_block_last_visited"),
            "recommended_products": (
                self.env._("Recommended products"), "behavioral_email.email_block_recommended_products"),
            "viewed_products": (self.env._("Viewed products"), "behavioral_email.email_block_viewed_products"),
            "coupon": (self.env._("Promo code"), "behavioral_email.email_block_coupon"),
            "review_request": (self.env._("Review request"), "behavioral_email.email_block_review_request"),
            "footer": (self.env._("Footer"), "behavioral_email.email_block_footer"),
        }

    @api.model
    def _get_email_block_options(self, kind, data):
        """The values a block's template receives, from the block's ``data-*``
        settings: validated here, never passed through as expressions."""
        options = {}
        if kind in ("recommended_products", "viewed_products"):
            try:
                limit = int(data.get("limit") or DEFAULT_PRODUCT_LIMIT)
            except ValueError:
                limit = DEFAULT_PRODUCT_LIMIT
            options["limit"] = str(min(max(limit, 1), MAX_PRODUCT_LIMIT))
            if "title" in data:
                # plain text, given to the template as a Python string literal
                options["title"] = repr(str(data["title"])[:200])
        return options

    @api.model
    def _expand_email_blocks(self, body):
        """``body`` with its dynamic blocks replaced by their QWeb templates,
        ready for ``mailing.mailing._render_template`` (engine ``qweb``).
        What any holder of a step's content (a variant...) renders through."""
        blocks = self._get_email_blocks()
        return expand_blocks(
            body, {kind: template for kind, (_label, template) in blocks.items()},
            self._get_email_block_options)

    # ------------------------------------------------------------
    # CONTENT CHECK
    # ------------------------------------------------------------

    def _check_email_content(self, fnames=CHECKED_FIELDS, before=None):
        """Refuse content that lost a block or no longer renders.

        Blocks are checked in both versions of the body (the editor's and the
        one sent). Then subject, preview, each block and the body are rendered
        for a sample enrollment: the latest of the sequence, or a made-up one
        (the current user, the shop's latest order) while there is none. What
        fails is refused when it rendered before the change, or when the
        sample is a real enrollment; a made-up sample lacks data real ones
        have (a trigger's payload...), so content that never rendered with it
        is not held against the marketer.
        Code (QWeb or inline expressions beyond the allowed placeholders)
        added to the fields being written is refused to users who are not
        template editors: the emails are rendered by the cron, as superuser.
        Code that was there already (a shipped email) may stay.

        :param set fnames: the content fields being written
        :param dict before: {step id: {field: value before the write}};
            nothing for new steps
        """
        before = before or {}
        self._check_email_code(fnames, before)
        for step in self.filtered("mailing_id"):
            error = step._get_email_content_error(before.get(step.id))
            if error:
                raise ValidationError(self.env._(
                    "The email “%(step)s” cannot be saved: %(error)s", step=step.display_name, error=error))

    def _get_email_content_error(self, old=None):
        """Why this step's content cannot be sent (a sentence), or False.

        :param dict old: the content fields before the change ({} or None
            for a new step)
        """
        self.ensure_one()
        blocks = self._get_email_blocks()
        labels = {kind: label for kind, (label, _template) in blocks.items()}
        messages = {
            "lost_kind": self.env._(
                "the dynamic block “%(block)s” lost its settings. Delete it and insert it again "
                "from the Shop content blocks."),
            "unknown": self.env._("“%(block)s” is not a dynamic block this email can show."),
            "nested": self.env._(
                "the dynamic block “%(block)s” was put inside another dynamic block. "
                "Move it out, next to the other one."),
            "lost_content": self.env._(
                "the dynamic block “%(block)s” was broken by the edit. Delete it and insert it again "
                "from the Shop content blocks."),
        }
        body, arch = self.body_html or "", self.body_arch or ""
        for source in (arch, body):
            for label, problem in get_block_problems(source, labels):
                return messages[problem] % {"block": label}
        if arch and body and arch != body:
            sent = [block["kind"] for block in get_blocks(body)]
            for block in get_blocks(arch):
                if block["kind"] in sent:
                    sent.remove(block["kind"])
                else:
                    return self.env._(
                        "the dynamic block “%(block)s” is missing from the email as it is sent. "
                        "Edit the email again and save it.", block=labels[block["kind"]])
        return self._get_email_render_error(old)

    def _may_write_email_code(self):
        return self.env.su or self.env.user.has_group("mail.group_mail_template_editor")

    def _check_email_code(self, fnames, before):
        if self._may_write_email_code():
            return
        Enrollment = self.env["behavioral.enrollment"]
        allowed = set(Enrollment.mail_allowed_qweb_expressions())
        for step in self.filtered("mailing_id"):
            old = before.get(step.id, {})
            added = set()
            for fname in fnames & {"body_html", "body_arch"}:
                added |= _get_qweb_code(step[fname], allowed) - _get_qweb_code(old.get(fname), allowed)
            for fname in fnames & {"subject", "preview"}:
                added |= _get_inline_code(step[fname], allowed) - _get_inline_code(old.get(fname), allowed)
            if added:
                group = self.env.ref("mail.group_mail_template_editor")
                raise AccessError(self.env._(
                    "Only members of %(group)s may write code in an email (%(code)s); use the dynamic "
                    "blocks and placeholders instead.",
                    group=group.name, code=", ".join(sorted(str(expression) for expression in added))[:200]))

    def _get_email_render_error(self, old=None):
        """Render subject, preview, each block and the body for a sample
        enrollment; the first error that counts (see
        :meth:`_check_email_content`), as a sentence, or False.

        Each try runs in a savepoint, and gets a sample of its own: a failed
        try rolls its savepoint back, which empties the cache, and with it
        the values of a made-up (unsaved) sample; the next tries would
        otherwise render for an enrollment with no customer, no sequence.
        """
        real = self._get_sample_enrollment()[1]
        mailing = self.mailing_id.sudo()
        context = mailing._render_eval_context()
        QWeb = self.env["ir.qweb"].sudo()
        labels = {kind: label for kind, (label, _template) in self._get_email_blocks().items()}
        old = old or {}

        def variables():
            return dict(context, object=self._get_sample_enrollment()[0])

        def render_inline(text):
            with self.env.cr.savepoint():
                render_inline_template(parse_inline_template(str(text or "")), variables())

        def render(source):
            with self.env.cr.savepoint():
                QWeb._render(html.fragment_fromstring(source, create_parent="div"), variables())

        def failure(renderer, source, old_source):
            """The error of rendering ``source`` if it counts, else None."""
            try:
                renderer(source)
                return None
            except Exception as exc:  # noqa: BLE001 - reported to the user
                if is_concurrency_error(exc):
                    raise
                error = self._describe_error(exc)
            if real:
                return error
            if old_source is None or old_source == source:
                return None  # never rendered with the made-up sample either
            try:
                renderer(old_source)
            except Exception as exc:  # noqa: BLE001 - the old content fails too: data, not the change
                if is_concurrency_error(exc):
                    raise
                return None
            return error

        for field in ("subject", "preview"):
            error = failure(render_inline, self[field], old.get(field))
            if error:
                return self.env._("the %(field)s does not render: %(error)s",
                                  field=self._fields[field].get_description(self.env)["string"].lower(),
                                  error=error)
        body = self.body_html or ""
        kinds = list(dict.fromkeys(block["kind"] for block in get_blocks(body)))
        for kind in kinds:
            source = self._expand_email_blocks(
                f'<div class="o_behavioral_block" data-behavioral-block="{kind}">'
                '<div class="o_behavioral_block_content"></div></div>')
            error = failure(render, source, None)
            if error:
                return self.env._("the dynamic block “%(block)s” does not render: %(error)s",
                                  block=labels[kind], error=error)
        old_body = old.get("body_html")
        error = failure(render, self._expand_email_blocks(body),
                        self._expand_email_blocks(old_body) if old_body else None)
        if error:
            return self.env._("the email does not render: %(error)s", error=error)
        return False

    def _get_sample_enrollment(self):
        """The enrollment the content is tried on, and whether it is a real
        one: the latest of the sequence, else an unsaved one for the current
        user (with the shop's latest order when the sequence is about orders).
        """
        self.ensure_one()
        Enrollment = self.env["behavioral.enrollment"].sudo()
        sequence = self.sequence_id
        sample = Enrollment.search([("sequence_id", "=", sequence.id)], order="id desc", limit=1)
        if sample:
            return sample, True
        values = {
            "sequence_id": sequence.id,
            "partner_id": self.env.user.partner_id.id,
            "company_id": (sequence.company_id or self.env.company).id,
            "step_id": self.id,
        }
        if sequence.source_model == "sale.order":
            order = self.env["sale.order"].sudo().search([], order="id desc", limit=1)
            values.update(order_id=order.id, res_model="sale.order", res_id=order.id)
        return Enrollment.new(values), False

    def _get_content_problem(self):
        problem = super()._get_content_problem()
        if problem or self.step_type != "email":
            return problem
        if not self.coupon_code and "coupon" in {block["kind"] for block in get_blocks(self.body_html)}:
            return self.env._("shows a promo code block but has no promo code: set it on the step.")
        return False
