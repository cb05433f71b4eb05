"""Website visits of known customers, as SQL fragments shared by the
detections that read ``website.track`` (product views, page visits).

A visit counts once its visitor is linked to a contact: Odoo moves the
visits a visitor made anonymously to the customer's visitor when they log in
(``website.visitor._merge_visitor``). The websites' public users and the
internal users are never customers here.
"""
from odoo.tools import SQL

# over rows of known_visits(): the visitor of the latest visit
LAST_VISITOR = SQL("(array_agg(visitor_id ORDER BY visit_datetime DESC, visitor_id DESC))[1]")


def known_visits(columns, read_from, until, condition, joins=None):
    """SELECT of the visits made after ``read_from`` and until ``until``
    (included) by visitors linked to a contact, that meet ``condition``.

    The tracks are aliased ``track``, their visitor ``visitor``. The rows
    hold ``partner_id``, ``visitor_id`` and ``visit_datetime``, then
    ``columns``; ``joins`` (SQL) come before the conditions. Only the visits
    of the period are read (index on ``visit_datetime``, see
    ``website_track.py``).
    """
    return SQL(
        """SELECT visitor.partner_id, track.visitor_id, track.visit_datetime, %(columns)s
             FROM website_track track
             JOIN website_visitor visitor ON visitor.id = track.visitor_id
             %(joins)s
            WHERE track.visit_datetime > %(read_from)s
              AND track.visit_datetime <= %(until)s
              AND visitor.partner_id IS NOT NULL
              AND %(condition)s""",
        columns=columns, joins=joins or SQL(), read_from=read_from, until=until, condition=condition)


def customer_to_email(partner_id):
    """WHERE conditions: the contact aliased ``partner`` (its id is the SQL
    ``partner_id``) is a customer to email: active, with an email address,
    neither a website's public user nor an internal user."""
    return SQL(
        """partner.active
           AND COALESCE(partner.email, '') != ''
           AND NOT EXISTS (
               SELECT 1 FROM website w JOIN res_users u ON u.id = w.user_id
                WHERE u.partner_id = %(partner_id)s)
           AND NOT EXISTS (
               SELECT 1 FROM res_users internal
                WHERE internal.partner_id = %(partner_id)s AND NOT internal.share)""",
        partner_id=partner_id)


def visiting_customers(source):
    """FROM and WHERE of a detection on visits: the rows of ``source`` (a
    table or CTE name; rows with ``partner_id`` and ``visitor_id``) joined to
    their contact ``partner``, their ``visitor`` and its ``website``, kept
    where the contact is a customer to email (:func:`customer_to_email`)."""
    source = SQL.identifier(source)
    return SQL(
        """FROM %(source)s
           JOIN res_partner partner ON partner.id = %(source)s.partner_id
           JOIN website_visitor visitor ON visitor.id = %(source)s.visitor_id
           LEFT JOIN website ON website.id = visitor.website_id
          WHERE %(customer)s""",
        source=source, customer=customer_to_email(SQL("%s.partner_id", source)))
