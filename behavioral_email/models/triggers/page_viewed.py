import hashlib
import re
from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import ValidationError
from odoo.tools import SQL

from ...tools.visits import LAST_VISITOR, known_visits, visiting_customers

URL_PATTERN_MAX_LENGTH = 200


class BehavioralTrigger(models.Model):
    """``page_viewed``: content or category engagement.

    A known customer visited pages whose address contains the sequence's URL
    pattern (``/shop/category/``, ``/blog/``...) at least N times within a
    window. Page visits are website's own records: every request for a tracked
    page writes a ``website.track`` row with its ``url``
    (``website.visitor._handle_webpage_dispatch``). Views made anonymously
    count once the visitor logs in (``website.visitor._merge_visitor``);
    visitors without a contact, the websites' public users and internal users
    are never customers here.

    Detected in bulk, one INSERT per distinct (pattern, minimum visits, window)
    of the running sequences, reading the visits of the window only. Each
    trigger stands for N fresh visits: visits up to the customer's previous
    trigger for the same settings are not counted again, so that a customer
    who keeps coming back is signalled once per N new visits, not at every
    visit. The source document is the customer's ``website.visitor``; the
    payload holds the visited paths (most recent first), the number of
    visits and ``goal_since``, the first of those visits.
    """

    _inherit = "behavioral.trigger"

    trigger_type = fields.Selection(
        selection_add=[("page_viewed", "Pages visited")], ondelete={"page_viewed": "cascade"})

    @api.model
    def _get_trigger_kinds(self):
        kinds = super()._get_trigger_kinds()
        kinds["page_viewed"] = {
            "model": "website.visitor",
            "goal": "none",
            "settings": ["website_id", "page_url_pattern", "page_min_visits", "page_window_hours"],
        }
        return kinds

    @api.model
    def _detect_page_viewed(self, now):
        # (pattern, minimum visits, window hours) -> the longest entry window that needs it
        windows = self._get_detection_windows(
            "page_viewed", lambda sequence: [sequence._get_page_view_settings()])
        created = []
        self.env.flush_all()
        for (pattern, min_visits, window_hours), entry_hours in windows.items():
            window_start = now - timedelta(hours=window_hours)
            self.env.cr.execute(SQL(
                """
                WITH signalled AS (
                    -- the customers' previous trigger for these settings, if recent
                    SELECT partner_id, max(occurred_at) AS occurred_at
                      FROM behavioral_trigger
                     WHERE trigger_type = 'page_viewed'
                       AND occurred_at > %(window_start)s
                       AND payload->>'signature' = %(signature)s
                     GROUP BY partner_id
                ), visits AS (
                    -- matching visits of known visitors in the window, not yet signalled
                    %(visits)s
                ), per_url AS (
                    SELECT partner_id, path, count(*) AS visits,
                           min(visit_datetime) AS first_visit, max(visit_datetime) AS last_visit,
                           %(last_visitor)s AS visitor_id
                      FROM visits
                     GROUP BY partner_id, path
                ), engaged AS (
                    SELECT partner_id, sum(visits) AS visits,
                           min(first_visit) AS first_visit, max(last_visit) AS last_visit,
                           (array_agg(visitor_id ORDER BY last_visit DESC))[1] AS visitor_id,
                           (array_agg(path ORDER BY last_visit DESC, path))[1:%(max_paths)s] AS paths
                      FROM per_url
                     GROUP BY partner_id
                    HAVING sum(visits) >= %(min_visits)s AND max(last_visit) > %(oldest)s
                )
                INSERT INTO behavioral_trigger
                    (trigger_type, partner_id, res_model, res_id, occurred_at, payload,
                     dedupe_key, company_id, state, create_uid, create_date, write_uid, write_date)
                SELECT 'page_viewed', engaged.partner_id, 'website.visitor', engaged.visitor_id,
                       engaged.last_visit,
                       jsonb_build_object(
                           'paths', to_jsonb(engaged.paths),
                           'visit_count', engaged.visits,
                           'last_visit', engaged.last_visit,
                           'goal_since', engaged.first_visit,
                           'website_id', visitor.website_id,
                           'url_pattern', %(pattern)s,
                           'min_visits', %(min_visits)s,
                           'window_hours', %(window)s,
                           'signature', %(signature)s),
                       'page_viewed:' || engaged.partner_id || ':'
                           || to_char(engaged.last_visit, 'YYYYMMDDHH24MISSUS') || ':' || %(signature)s,
                       website.company_id, %(common)s
                %(customers)s
                ON CONFLICT (dedupe_key) DO NOTHING
                RETURNING id
                """,
                visits=known_visits(
                    # the path only: the host is whatever the browser asked for
                    SQL("regexp_replace(track.url, '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*', '') AS path"),
                    window_start, now,
                    SQL("""track.url ILIKE %s
                           AND (signalled.occurred_at IS NULL OR track.visit_datetime > signalled.occurred_at)""",
                        self._get_url_like(pattern)),
                    joins=SQL("LEFT JOIN signalled ON signalled.partner_id = visitor.partner_id")),
                last_visitor=LAST_VISITOR, customers=visiting_customers("engaged"),
                window_start=window_start, oldest=now - timedelta(hours=entry_hours), pattern=pattern,
                min_visits=min_visits,
                window=window_hours, max_paths=10, common=self._prepare_detected_values(),
                signature=self._get_page_view_signature(pattern, min_visits, window_hours),
            ))
            created += [row[0] for row in self.env.cr.fetchall()]
        return created

    @api.model
    def _get_url_like(self, pattern):
        """ILIKE operand matching addresses that contain ``pattern`` literally."""
        escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"%{escaped}%"

    @api.model
    def _get_page_view_signature(self, pattern, min_visits, window_hours):
        """Short stable digest of the settings a trigger was detected for."""
        return hashlib.sha1(f"{pattern}|{min_visits}|{window_hours}".encode()).hexdigest()[:16]

    def _filter_page_viewed(self, sequence, refuse):
        """Visits detected for another sequence's settings are not this
        sequence's business (no note: it is not a refusal)."""
        signature = self._get_page_view_signature(*sequence._get_page_view_settings())
        return self.filtered(lambda t: (t.payload or {}).get("signature") == signature)


class BehavioralSequence(models.Model):
    _inherit = "behavioral.sequence"

    page_url_pattern = fields.Char(
        "Page Address Contains",
        help="Visits count when the page address contains this text, e.g. /shop/category/ or /blog/. "
             "Only pages the website tracks are recorded (Track option of the page).")
    page_min_visits = fields.Integer(
        "Minimum Visits", default=3,
        help="Number of matching page visits within the window that starts the sequence.")
    page_window_hours = fields.Integer(
        "Visit Window (hours)", default=168,
        help="The visits must all fall within this many hours.")

    @api.constrains("trigger_type", "page_url_pattern", "page_min_visits", "page_window_hours")
    def _check_page_view_settings(self):
        for sequence in self:
            if sequence.page_min_visits < 1 or sequence.page_window_hours < 1:
                raise ValidationError(self.env._(
                    "Sequence %(name)s: the minimum visits and the visit window must be at least 1.",
                    name=sequence.name))
            if sequence.trigger_type != "page_viewed":
                continue
            pattern = sequence.page_url_pattern or ""
            if not pattern.startswith("/") or len(pattern) > URL_PATTERN_MAX_LENGTH \
                    or re.search(r"[\s\x00-\x1f\x7f]", pattern):
                raise ValidationError(self.env._(
                    "Sequence %(name)s: the page address must start with / and hold no spaces "
                    "(at most %(max)s characters), e.g. /shop/category/.",
                    name=sequence.name, max=URL_PATTERN_MAX_LENGTH))

    def _get_page_view_settings(self):
        """(URL pattern, minimum visits, window hours) of this sequence."""
        self.ensure_one()
        return (self.page_url_pattern or "", self.page_min_visits, self.page_window_hours)


class BehavioralEnrollment(models.Model):
    _inherit = "behavioral.enrollment"

    def _get_last_visited_path(self, default="/shop"):
        """Path of the last page visited among those that triggered the
        sequence, for a "pick up where you left off" link; ``default`` when
        there is none or it is not a path of this website."""
        self.ensure_one()
        paths = (self.payload or {}).get("paths")
        path = paths[0] if isinstance(paths, list) and paths else None
        if not isinstance(path, str) or not path.startswith("/") or path.startswith("//") or "\\" in path:
            return default
        return path
