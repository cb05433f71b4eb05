from odoo import fields, models, tools
from odoo.tools import SQL

# stage keys sort in funnel order: grouped bars come out in this order
FUNNEL_STAGES = [
    ("1_entered", "Entered"),
    ("2_sent", "Emailed"),
    ("3_delivered", "Delivered"),
    ("4_opened", "Opened"),
    ("5_clicked", "Clicked"),
    ("6_converted", "Ordered"),
]


class BehavioralReportFunnel(models.Model):
    """The funnel of a sequence: how many of its entrants reached each stage,
    counting each enrollment once per stage (whatever the number of emails).

    Built on ``behavioral.report``; holdout entrants are left out (they are
    sent nothing: the holdout comparison is on the sequence's Results tab).
    ``value`` is the number of entrants; graph it as bars grouped by ``stage``.
    """

    _name = "behavioral.report.funnel"
    _description = "Behavioral Email Funnel"
    _auto = False
    _order = "sequence_id, stage"
    _rec_name = "stage"

    sequence_id = fields.Many2one("behavioral.sequence", readonly=True)
    company_id = fields.Many2one("res.company", readonly=True)
    stage = fields.Selection(FUNNEL_STAGES, readonly=True)
    value = fields.Integer("Customers", readonly=True)

    def init(self):
        # behavioral_report is (re)built first: its module comes first in report/__init__.py
        tools.drop_view_if_exists(self.env.cr, self._table)
        self.env.cr.execute(SQL(
            """CREATE VIEW %(table)s AS (
                WITH per_enrollment AS (
                    SELECT e.id AS enrollment_id, e.sequence_id, s.company_id,
                           COALESCE(max(r.sent), 0) AS sent,
                           COALESCE(max(r.delivered), 0) AS delivered,
                           COALESCE(max(r.opened), 0) AS opened,
                           COALESCE(max(r.clicked), 0) AS clicked,
                           COALESCE(max(r.converted), 0) AS converted
                      FROM behavioral_enrollment e
                      JOIN behavioral_sequence s ON s.id = e.sequence_id
                      LEFT JOIN behavioral_report r ON r.enrollment_id = e.id
                     WHERE NOT COALESCE(e.is_holdout, FALSE)
                     GROUP BY e.id, e.sequence_id, s.company_id
                )
                -- one row per enrollment and stage, 1 where it reached the stage
                SELECT p.sequence_id * 10 + stages.position AS id, p.sequence_id, p.company_id,
                       stages.stage, sum(stages.reached) AS value
                  FROM per_enrollment p
                 CROSS JOIN LATERAL (VALUES
                       (1, '1_entered', 1),
                       (2, '2_sent', p.sent),
                       (3, '3_delivered', p.delivered),
                       (4, '4_opened', p.opened),
                       (5, '5_clicked', p.clicked),
                       (6, '6_converted', p.converted)
                  ) AS stages(position, stage, reached)
                 GROUP BY p.sequence_id, p.company_id, stages.position, stages.stage
            )""", table=SQL.identifier(self._table)))
