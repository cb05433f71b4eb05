import calendar
import logging
from ast import literal_eval
from datetime import datetime, time, timedelta

from odoo import api, fields, models
from odoo.exceptions import ValidationError
from odoo.tools import SQL

_logger = logging.getLogger(__name__)

# the documents whose dates a sequence may follow, and how to reach the customer
ANNIVERSARY_MODELS = {
    "res.partner": "id",
    "sale.order": "partner_id",
}


def sql_month_day(column):
    """``MMDD`` of a date or timestamp column as a number (May 17: 517).

    Immutable, so that an index on it can serve the yearly detection; the
    indexes of the shipped fields (``res.partner.init``) use this very
    expression.
    """
    return SQL("(EXTRACT(MONTH FROM %s) * 100 + EXTRACT(DAY FROM %s))", column, column)


class BehavioralTrigger(models.Model):
    """``date_anniversary``: a date of a contact or an order comes round, or
    is N days away or past (a birthday, a first-order anniversary, a renewal).

    Detected per running sequence: one INSERT reading the chosen date field
    (validated against the model's fields, written with
    ``SQL.identifier``) for the days of the entry window. Yearly dates match
    on month and day; a February 29 is celebrated on February 28 in the
    other years. One trigger per sequence, document and year (or once): the
    key holds them all, so a rerun adds nothing.

    The shipped sequences follow the contact's ``behavioral_birthday`` and
    ``behavioral_first_order_date``: the latter is a stored field computed
    from the confirmed orders (``models/res_partner.py``) rather than a
    subquery here, so that it is a date field like any other and the same
    month-and-day index serves both. Dates are read in UTC.
    """

    _inherit = "behavioral.trigger"

    trigger_type = fields.Selection(
        selection_add=[("date_anniversary", "Date anniversary")], ondelete={"date_anniversary": "cascade"})

    @api.model
    def _get_trigger_kinds(self):
        kinds = super()._get_trigger_kinds()
        kinds["date_anniversary"] = {
            "model": "res.partner",
            "goal": "none",
            "settings": ["anniversary_model", "anniversary_field_id", "anniversary_offset_days",
                         "anniversary_recurrence"],
        }
        return kinds

    @api.model
    def _detect_date_anniversary(self, now):
        sequences = self.env["behavioral.sequence"].sudo().search([
            ("state", "=", "running"), ("trigger_type", "=", "date_anniversary"),
        ])
        self.env.flush_all()
        created = []
        for sequence in sequences:
            problem = sequence._get_anniversary_problem()
            if problem:
                _logger.warning("behavioral_email: sequence %s skipped: %s", sequence.id, problem)
                continue
            created += self._detect_anniversaries_of(sequence, now)
        return created

    @api.model
    def _get_anniversary_days(self, sequence, now):
        """The days whose start lies in the sequence's entry window, each with
        the date a document must hold to be due that day.

        :return list: (day the trigger occurs, date it is about)
        """
        first = now - timedelta(hours=sequence.entry_window_hours)
        day = first.date() if datetime.combine(first.date(), time.min) >= first else first.date() + timedelta(days=1)
        offset = timedelta(days=sequence.anniversary_offset_days)
        if sequence.anniversary_offset_direction == "before":
            offset = -offset
        days = []
        while day <= now.date():
            days.append((day, day - offset))
            day += timedelta(days=1)
        return days

    @api.model
    def _detect_anniversaries_of(self, sequence, now):
        """One INSERT of the triggers ``sequence`` is due for now."""
        model_name = sequence.anniversary_model
        Model = self.env[model_name]
        field = sequence.anniversary_field_id
        column = SQL.identifier("rec", field.name)
        yearly = sequence.anniversary_recurrence == "yearly"
        rows = []
        for day, target in self._get_anniversary_days(sequence, now):
            occurs = datetime.combine(day, time.min)
            rows.append(SQL("(%s::int, %s::date, %s::timestamp)",
                            target.month * 100 + target.day, target, occurs))
            if yearly and (target.month, target.day) == (2, 28) and not calendar.isleap(target.year):
                # born on February 29: celebrated on February 28 in common years
                rows.append(SQL("(229, %s::date, %s::timestamp)", target, occurs))
        if not rows:
            return []
        if yearly:
            match = SQL("%s = v.md AND EXTRACT(YEAR FROM %s) < EXTRACT(YEAR FROM v.target)",
                        sql_month_day(column), column)
            year = SQL("EXTRACT(YEAR FROM v.target)::int::text")
        else:
            match = SQL("%s::date = v.target", column)
            year = SQL("'once'")
        partner = SQL.identifier("rec", ANNIVERSARY_MODELS[model_name])
        domain = literal_eval(sequence.filter_domain or "[]")
        source_filter = SQL("rec.id IN %s", Model.sudo()._search(domain).subselect()) if domain else SQL("TRUE")
        self.env.cr.execute(SQL(
            """
            INSERT INTO behavioral_trigger
                (trigger_type, partner_id, res_model, res_id, occurred_at, payload,
                 dedupe_key, company_id, state, create_uid, create_date, write_uid, write_date)
            SELECT 'date_anniversary', partner.id, %(model)s, rec.id, v.occurs,
                   jsonb_build_object(
                       'sequence_id', %(sequence)s,
                       'field', %(fname)s,
                       'date', %(column)s::date,
                       'anniversary', v.target,
                       'years', EXTRACT(YEAR FROM v.target)::int - EXTRACT(YEAR FROM %(column)s)::int),
                   'date_anniversary:' || %(sequence)s || ':' || %(model)s || '.' || %(fname)s
                       || ':' || rec.id || ':' || %(year)s,
                   rec.company_id, %(common)s
              FROM %(table)s rec
              JOIN (VALUES %(rows)s) AS v(md, target, occurs) ON %(match)s
              JOIN res_partner partner ON partner.id = %(partner)s
             WHERE %(column)s IS NOT NULL
               AND partner.active
               AND COALESCE(partner.email, '') != ''
               AND partner.id NOT IN %(public)s
               AND %(source_filter)s
            ON CONFLICT (dedupe_key) DO NOTHING
            RETURNING id
            """,
            model=model_name, sequence=sequence.id, fname=field.name, column=column, year=year,
            common=self._prepare_detected_values(), table=SQL.identifier(Model._table),
            rows=SQL(", ").join(rows), match=match, partner=partner,
            public=tuple(self._get_public_partner_ids()) or (0,), source_filter=source_filter,
        ))
        return [row[0] for row in self.env.cr.fetchall()]

    def _filter_date_anniversary(self, sequence, refuse):
        """Triggers are detected for one sequence: the others ignore them."""
        return self.filtered(lambda t: (t.payload or {}).get("sequence_id") == sequence.id)


class BehavioralSequence(models.Model):
    _inherit = "behavioral.sequence"

    anniversary_model = fields.Selection(
        [("res.partner", "Contact"), ("sale.order", "Sales Order")], string="Date Of", default="res.partner",
        help="Whose date the sequence follows: the contact's own (a birthday) or an order's.")
    anniversary_field_id = fields.Many2one(
        "ir.model.fields", string="Date Field", ondelete="set null",
        domain="[('model', '=', anniversary_model), ('ttype', 'in', ('date', 'datetime')), ('store', '=', True)]",
        help="The date (or date and time) field the sequence follows, e.g. the contact's Birthday.")
    anniversary_offset_days = fields.Integer(
        "Offset (days)", help="Start this many days before or after the date; 0 for the day itself.")
    anniversary_offset_direction = fields.Selection(
        [("before", "before"), ("after", "after")], string="Offset Direction", default="before", required=True)
    anniversary_recurrence = fields.Selection(
        [("yearly", "Every year"), ("once", "Once")], string="Recurrence", default="yearly", required=True,
        help="Every year: on the anniversary of the date (birthdays, anniversaries). "
             "Once: on the date itself (a renewal, an event).")

    @api.depends("trigger_type", "anniversary_model")
    def _compute_source_model(self):
        super()._compute_source_model()
        for sequence in self.filtered(lambda s: s.trigger_type == "date_anniversary"):
            sequence.source_model = sequence.anniversary_model or "res.partner"

    @api.onchange("anniversary_model")
    def _onchange_anniversary_model(self):
        if self.anniversary_field_id.model != self.anniversary_model:
            self.anniversary_field_id = False

    @api.constrains("trigger_type", "anniversary_model", "anniversary_field_id", "anniversary_offset_days")
    def _check_anniversary_settings(self):
        for sequence in self.filtered(lambda s: s.trigger_type == "date_anniversary"):
            problem = sequence._get_anniversary_problem()
            if problem:
                raise ValidationError(self.env._("Sequence %(name)s: %(problem)s", name=sequence.name, problem=problem))
        # the filters now apply to the documents of the chosen model
        self._check_domains()

    def _get_anniversary_problem(self):
        """Why the chosen date cannot be followed (a sentence), or False.

        The field must be a stored date or datetime column of the chosen
        model: detection writes its name into SQL.
        """
        self.ensure_one()
        field = self.anniversary_field_id
        if self.anniversary_model not in ANNIVERSARY_MODELS:
            return self.env._("choose whose date the sequence follows.")
        if not field:
            return self.env._("choose the date field the sequence follows.")
        model_field = self.env[self.anniversary_model]._fields.get(field.name)
        if field.model != self.anniversary_model or not model_field or not model_field.store \
                or model_field.type not in ("date", "datetime") or model_field.company_dependent:
            return self.env._("%(field)s is not a stored date field of %(model)s.",
                              field=field.field_description, model=self.env[self.anniversary_model]._description)
        if self.anniversary_offset_days < 0 or self.anniversary_offset_days > 366:
            return self.env._("the offset must be between 0 and 366 days.")
        return False
