"""Net revenue of sale orders, as SQL fragments shared by the reports, the
customer lifetime values and the A/B decisions."""
from odoo.tools import SQL


def order_money_join(alias):
    """A ``LEFT JOIN LATERAL ... AS money`` computing, for the sale.order
    aliased ``alias``, in the company's currency:

    * ``money.amount``: its untaxed total;
    * ``money.refunded``: the untaxed amount of the posted credit notes issued
      against it, later: credit-note lines that come from the order's lines
      (a reversal of the order's invoice, or a credit note made from the
      order, keeps that link), plus the credit notes that reverse one of its
      invoices without such lines (counted in full against each order of
      that invoice: rare in a shop, where an invoice is one order);
    * ``money.cost``: the cost of its goods at the products' cost price,
      when every storable or consumable product on it has one (else NULL:
      unknown, and no margin is shown). ``sale_margin`` is not needed.

    Net revenue is ``money.amount - money.refunded``; the margin keeps the
    order's cost share: ``net * (1 - cost / amount)``, so that a refunded
    order gives its margin back too.
    """
    so = SQL.identifier(alias)
    return SQL(
        """LEFT JOIN LATERAL (
            SELECT %(so)s.amount_untaxed / COALESCE(NULLIF(%(so)s.currency_rate, 0), 1) AS amount,
                   COALESCE((
                       SELECT sum(aml.balance)
                         FROM sale_order_line sol
                         JOIN sale_order_line_invoice_rel rel ON rel.order_line_id = sol.id
                         JOIN account_move_line aml ON aml.id = rel.invoice_line_id
                         JOIN account_move am ON am.id = aml.move_id
                        WHERE sol.order_id = %(so)s.id
                          AND am.move_type = 'out_refund' AND am.state = 'posted'
                   ), 0) + COALESCE((
                       SELECT sum(-refund.amount_untaxed_signed)
                         FROM account_move refund
                        WHERE refund.move_type = 'out_refund' AND refund.state = 'posted'
                          AND refund.reversed_entry_id IN (
                              SELECT aml.move_id
                                FROM sale_order_line sol
                                JOIN sale_order_line_invoice_rel rel ON rel.order_line_id = sol.id
                                JOIN account_move_line aml ON aml.id = rel.invoice_line_id
                               WHERE sol.order_id = %(so)s.id)
                          AND NOT EXISTS (
                              SELECT 1
                                FROM account_move_line line
                                JOIN sale_order_line_invoice_rel rel ON rel.invoice_line_id = line.id
                               WHERE line.move_id = refund.id)
                   ), 0) AS refunded,
                   (SELECT CASE WHEN bool_and(pt.type != 'consu'
                                               OR COALESCE((pp.standard_price ->> %(so)s.company_id::text)::numeric, 0) > 0)
                                THEN sum(sol.product_uom_qty
                                         * COALESCE((pp.standard_price ->> %(so)s.company_id::text)::numeric, 0))
                           END
                      FROM sale_order_line sol
                      JOIN product_product pp ON pp.id = sol.product_id
                      JOIN product_template pt ON pt.id = pp.product_tmpl_id
                     WHERE sol.order_id = %(so)s.id AND sol.display_type IS NULL
                   ) AS cost
        ) money ON TRUE""", so=so)


# with order_money_join(): the order's net revenue, and its margin (NULL
# where the cost is unknown)
NET_REVENUE = SQL("(money.amount - money.refunded)")
MARGIN = SQL(
    """CASE WHEN money.cost IS NOT NULL AND money.amount > 0
            THEN %s * (1 - money.cost / money.amount) END""", NET_REVENUE)


def confirmed_orders_join(alias, condition, margin=False):
    """A ``LEFT JOIN LATERAL ... AS alias`` summing up the confirmed orders
    (sale.order aliased ``so``) that meet ``condition`` (SQL):
    ``alias.order_count``, ``alias.revenue`` (their net revenue, NULL when
    there is none) and, with ``margin``, ``alias.margin`` (NULL unless some
    order's cost is known)."""
    return SQL(
        """LEFT JOIN LATERAL (
            SELECT count(*) AS order_count, sum(%(net)s) AS revenue%(margin)s
              FROM sale_order so
              %(money)s
             WHERE so.state = 'sale' AND %(condition)s
        ) %(alias)s ON TRUE""",
        net=NET_REVENUE, margin=SQL(", sum(%s) AS margin", MARGIN) if margin else SQL(),
        money=order_money_join("so"), condition=condition, alias=SQL.identifier(alias))
