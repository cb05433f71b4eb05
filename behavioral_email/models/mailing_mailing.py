from lxml import html
from markupsafe import Markup

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import safe_eval


class MailingMailing(models.Model):
    _inherit = "mailing.mailing"

    use_in_behavioral = fields.Boolean(
        "Used in Behavioral Sequences", readonly=True, copy=False, index=True,
        help="Technical mailing holding the content and tracking of a sequence step; "
             "it is sent by the sequence, never on its own.")

    def _render_template(self, template_src, model, res_ids, engine="inline_template",
                         add_context=None, options=None):
        """Expand the dynamic blocks of a sequence step's body (see
        ``behavioral.sequence.step._expand_email_blocks``) wherever it is
        rendered: sending, test emails, "view in browser"."""
        if engine == "qweb" and template_src and len(self) == 1 and self.use_in_behavioral:
            template_src = self.env["behavioral.sequence.step"]._expand_email_blocks(template_src)
        return super()._render_template(
            template_src, model, res_ids, engine=engine, add_context=add_context, options=options)

    @api.model
    def _render_template_qweb(self, template_src, model, res_ids, add_context=None, options=None):
        """Render a sequence step's QWeb body for a whole batch, compiling it once.

        Core renders (and so compiles) the template once per record; for a
        step sent to hundreds of customers that compilation is most of the
        cost. Only used for the sequences' own batches (context key
        ``behavioral_render_batch``), run by the cron as superuser; anything
        else goes through core unchanged. Errors are raised as core raises
        them, so callers handle both the same way.
        """
        if not (self.env.context.get("behavioral_render_batch") and template_src and res_ids
                and self.env.is_superuser()
                and self._has_unsafe_expression_template_qweb(template_src, model)):
            return super()._render_template_qweb(
                template_src, model, res_ids, add_context=add_context, options=options)
        variables = self._render_eval_context()
        if add_context:
            variables.update(**add_context)
        ir_qweb = self.env["ir.qweb"].with_context(**(options or {}))
        template = html.fragment_fromstring(template_src, create_parent="div")
        ir_qweb = ir_qweb._prepare_environment(variables)
        safe_eval.check_values(variables)
        functions, def_name = ir_qweb._compile(template)
        render = functions[def_name]
        results = {}
        for record in self.env[model].browse(res_ids):
            values = dict(variables, object=record)
            try:
                rendered = Markup("".join(render(ir_qweb, values)))
            except Exception as exc:
                raise UserError(self.env._(
                    "Failed to render QWeb template for %(record)s: %(error)s",
                    record=record.display_name, error=exc)) from exc
            # drop the <div> wrapper added to parse several root nodes
            results[record.id] = rendered[5:-6]
        return results
