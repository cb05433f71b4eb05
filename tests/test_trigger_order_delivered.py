"""Trigger kind ``order_delivered`` (bridge behavioral_email_stock): every
delivery of an order is validated. Skipped where the bridge is not installed."""
import unittest
from datetime import timedelta
from unittest.mock import patch

from freezegun import freeze_time
from lxml import html

from odoo.tests import Form
from odoo.tests.common import tagged

from .common import NOW, BehavioralCommon


@tagged("standard", "post_install", "-at_install", "behavioral_email")
class TestOrderDelivered(BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if "behavioral_email_stock" not in cls.env.registry._init_modules:
            raise unittest.SkipTest("behavioral_email_stock (Inventory bridge) is not installed")
        cls.sequence = cls.env.ref("behavioral_email_stock.sequence_review_after_delivery")
        cls.sequence.write({"state": "draft"})

    # ------------------------------------------------------------
    # HELPERS
    # ------------------------------------------------------------

    def sell(self, partner, at=NOW, website=True, qty=2):
        order = self.env["sale.order"].create({
            "partner_id": partner.id,
            "website_id": self.website.id if website else False,
            "order_line": [(0, 0, {"product_id": self.tree.id, "product_uom_qty": qty})],
        })
        self.confirm(order, at)
        return order

    def deliver(self, order, at, qty=None, backorder=True):
        """Validate the order's open delivery as a warehouse worker does:
        set the quantities, press Validate (and answer the backorder wizard)."""
        picking = order.picking_ids.filtered(lambda p: p.state not in ("done", "cancel"))
        self.assertEqual(len(picking), 1)
        with freeze_time(at):
            picking.action_assign()
            for move in picking.move_ids:
                move.quantity = move.product_uom_qty if qty is None else qty
                move.picked = True
            action = picking.button_validate()
            if isinstance(action, dict) and action.get("res_model") == "stock.backorder.confirmation":
                wizard = Form(self.env["stock.backorder.confirmation"].with_context(action["context"])).save()
                if backorder:
                    wizard.process()
                else:
                    wizard.process_cancel_backorder()
        self.assertEqual(picking.state, "done")
        return picking

    def delivered_items(self, mail):
        """[(product, quantity, review link)] as the email shows them: the
        link is the tracked one, given here as the address it leads to."""
        items = []
        for row in html.fromstring(mail.body_html).xpath(
                "//*[@data-behavioral-block='delivered_lines']//tr"):
            [review] = row.xpath(".//a[normalize-space(.) = 'Write a review']")
            items.append((row.xpath("string(.//strong)"), row.xpath("string(.//span)"),
                          self.tracked_url(review.get("href"))))
        return items

    def review_url(self, enrollment, product=None):
        """Where the customer reviews ``product`` (the order's only one by default)."""
        links = dict(enrollment._get_review_links())
        return links[product or self.tree]

    def triggers(self, order=None):
        domain = [("trigger_type", "=", "order_delivered")]
        if order:
            domain.append(("res_id", "=", order.id))
        return self.env["behavioral.trigger"].search(domain)

    # ------------------------------------------------------------
    # TESTS
    # ------------------------------------------------------------

    def test_delivery_starts_review_request(self):
        self.start(self.sequence)
        order = self.sell(self.alice)
        picking = self.deliver(order, NOW + timedelta(days=2))
        self.assertEqual(order.delivery_status, "full")
        trigger = self.triggers()
        self.assertRecordValues(trigger, [{
            "partner_id": self.alice.id, "res_model": "sale.order", "res_id": order.id,
            "occurred_at": NOW + timedelta(days=2), "state": "new",
        }])
        self.assertEqual(trigger.payload["picking_id"], picking.id)

        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=2, minutes=1))
        self.assertFalse(self._new_mails, "the request waits five days after delivery")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=7, minutes=1))
        mail = self.assertQueued(self.alice, sequence=self.sequence)
        self.assertEqual(len(self._new_mails), 1)
        self.assertEqual(mail.subject, f"How do you like your order {order.name}?")
        root = html.fromstring(mail.body_html)
        self.assertEqual([" ".join(p.text_content().split()) for p in root.iter("p")][:2], [
            "Hi Alice Customer,",
            f"Your order {order.name} was delivered a few days ago. We hope everything arrived safely. "
            "How do you like it?"])
        # the delivered item, with a link to review it
        enrollment = self.enrollments(self.sequence)
        self.assertEqual(self.delivered_items(mail), [("Olive Tree", "Quantity: 2", self.review_url(enrollment))])
        # the button opens the order on the portal, with its access token
        self.assertTrue(order.access_token)
        [button] = root.xpath("//a[normalize-space(.) = 'View my order']")
        self.assertEqual(self.tracked_url(button.get("href")),
                         f"{order.get_base_url()}/my/orders/{order.id}?access_token={order.access_token}")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=7, minutes=2))
            self.run_crons(NOW + timedelta(days=20))
        self.assertFalse(self._new_mails, "rerunning the crons adds nothing")
        self.assertEqual(self.enrollments(self.sequence).state, "done")

    def test_order_shipped_in_parcels_is_delivered_with_the_last(self):
        self.start(self.sequence)
        order = self.sell(self.bob)
        self.deliver(order, NOW + timedelta(days=1), qty=1)
        self.assertEqual(order.delivery_status, "partial")
        self.assertFalse(self.triggers())
        self.deliver(order, NOW + timedelta(days=3))
        self.assertEqual(self.triggers().occurred_at, NOW + timedelta(days=3))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=3, minutes=1))
            self.run_crons(NOW + timedelta(days=8, minutes=1))
        mail = self.assertQueued(self.bob, sequence=self.sequence)
        self.assertEqual(len(self._new_mails), 1)
        self.assertEqual(self.delivered_items(mail), [
            ("Olive Tree", "Quantity: 2", self.review_url(self.enrollments(self.sequence)))],
            "both parcels")

    def test_review_request_lists_what_was_delivered(self):
        """Each delivered item with its quantity and a link to review it; an
        item whose delivery was canceled is not asked about."""
        self.start(self.sequence)
        order = self.env["sale.order"].create({
            "partner_id": self.carol.id, "website_id": self.website.id,
            "order_line": [(0, 0, {"product_id": self.tree.id, "product_uom_qty": 1}),
                           (0, 0, {"product_id": self.pot.id, "product_uom_qty": 3})],
        })
        self.confirm(order, NOW)
        picking = order.picking_ids
        with freeze_time(NOW + timedelta(days=1)):
            # the pot is out of stock: the rest of the delivery is canceled
            picking.action_assign()
            tree_move = picking.move_ids.filtered(lambda move: move.product_id == self.tree)
            tree_move.quantity = 1
            tree_move.picked = True
            action = picking.button_validate()
            Form(self.env["stock.backorder.confirmation"].with_context(action["context"])).save() \
                .process_cancel_backorder()
        self.assertEqual(order.delivery_status, "full")
        self.assertEqual(order.order_line.mapped("qty_delivered"), [1, 0])
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=1, minutes=1))
            self.run_crons(NOW + timedelta(days=6, minutes=1))
        mail = self.assertQueued(self.carol, sequence=self.sequence)
        enrollment = self.enrollments(self.sequence, self.carol)
        self.assertEqual(self.delivered_items(mail), [
            ("Olive Tree", "Quantity: 1", self.review_url(enrollment, self.tree))])
        self.assertNotIn("Terracotta Pot", mail.body_html)
        self.assertIn(f"Your order {order.name} was delivered",
                      " ".join(html.fromstring(mail.body_html).text_content().split()))

    def test_rest_canceled_counts_as_delivered(self):
        order = self.sell(self.carol)
        self.deliver(order, NOW + timedelta(days=1), qty=1, backorder=False)
        self.assertEqual(order.delivery_status, "full")
        self.assertEqual(len(self.triggers(order)), 1)

    def test_return_adds_nothing(self):
        order = self.sell(self.alice)
        picking = self.deliver(order, NOW + timedelta(days=1))
        with freeze_time(NOW + timedelta(days=2)):
            wizard = Form(self.env["stock.return.picking"].with_context(
                active_id=picking.id, active_model="stock.picking")).save()
            wizard.product_return_moves.quantity = 1
            action = wizard.action_create_returns()
            returned = self.env["stock.picking"].browse(action["res_id"])
            for move in returned.move_ids:
                move.quantity = move.product_uom_qty
                move.picked = True
            returned.button_validate()
        self.assertEqual(returned.state, "done")
        self.assertEqual(len(self.triggers(order)), 1)

    def test_not_for_the_public_partner_nor_backend_orders(self):
        self.start(self.sequence)
        public_order = self.sell(self.public_partner)
        backend_order = self.sell(self.bob, website=False)
        self.deliver(public_order, NOW + timedelta(days=1))
        self.deliver(backend_order, NOW + timedelta(days=1))
        self.assertFalse(self.triggers(public_order))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=1, minutes=1))
            self.run_crons(NOW + timedelta(days=6, minutes=1))
        self.assertFalse(self._new_mails)
        self.assertIn("does not match the filter", self.triggers(backend_order).state_msg)

    def test_no_email_for_blocklisted_old_or_goal_met(self):
        self.sequence.goal = "order_again"
        self.start(self.sequence)
        self.env["mail.blacklist"]._add("bob@example.com")
        alice_order, bob_order, carol_order = (self.sell(p) for p in (self.alice, self.bob, self.carol))
        self.deliver(carol_order, NOW - timedelta(days=4))
        self.deliver(alice_order, NOW)
        self.deliver(bob_order, NOW)
        self.run_crons(NOW + timedelta(minutes=1))
        # Alice orders again before the review request is due: goal met
        self.sell(self.alice, at=NOW + timedelta(days=2))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=5, minutes=5))
        self.assertFalse(self._new_mails)
        self.assertRecordValues(self.enrollments(self.sequence, self.bob), [{
            "state": "exited", "exit_reason": "blacklisted"}])
        self.assertRecordValues(self.enrollments(self.sequence, self.alice), [{
            "state": "exited", "exit_reason": "goal"}])
        self.assertIn("older than the entry window", self.triggers(carol_order).state_msg)

    def test_capture_failure_never_breaks_the_delivery(self):
        order = self.sell(self.alice)
        Trigger = type(self.env["behavioral.trigger"])
        with patch.object(Trigger, "_capture_order_delivered", side_effect=RuntimeError("boom")), \
                self.assertLogs("odoo.addons.behavioral_email_stock.models.stock_picking", "ERROR"):
            self.deliver(order, NOW)
        self.assertEqual(order.delivery_status, "full")
        self.assertFalse(self.triggers())
