"""Recommended products: bought together, the merchandiser's accessories and
alternatives, best sellers; what cannot be bought now is swapped at send
time; a batch costs the same queries for 5 or 50 customers."""
from datetime import timedelta

from freezegun import freeze_time
from lxml import html

from .common import NOW, BehavioralCommon


class TestRecommendations(BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        env = cls.env
        cls.categ_garden = env["product.category"].create({"name": "Garden"})
        cls.categ_tools = env["product.category"].create({"name": "Tools"})

        def product(name, price, categ, **vals):
            return env["product.product"].create(dict({
                "name": name, "list_price": price, "sale_ok": True, "is_published": True,
                "type": "consu", "taxes_id": [(5, 0, 0)], "categ_id": categ.id,
            }, **vals))

        (cls.pot | cls.tree).write({"categ_id": cls.categ_garden.id})
        cls.soil = product("Potting Soil", 6.0, cls.categ_garden)
        cls.saucer = product("Clay Saucer", 4.0, cls.categ_garden)
        cls.stake = product("Bamboo Stake", 2.0, cls.categ_garden)
        cls.gloves = product("Garden Gloves", 8.0, cls.categ_tools)
        cls.shears = product("Pruning Shears", 25.0, cls.categ_tools)
        cls.hose = product("Garden Hose", 30.0, cls.categ_tools)
        # orders of other customers: the pot goes with soil (3 orders), a saucer
        # (2) and a stake (1); the shears sell best in Tools
        cls.others = env["res.partner"].with_context(behavioral_no_capture=True).create([
            {"name": f"Past Buyer {i}", "email": f"buyer{i}@example.com"} for i in range(6)])
        baskets = [
            [cls.pot, cls.soil, cls.saucer], [cls.pot, cls.soil, cls.saucer], [cls.pot, cls.soil, cls.stake],
            [cls.shears, cls.gloves], [cls.shears], [cls.hose, cls.shears],
        ]
        for buyer, basket in zip(cls.others, baskets):
            order = cls.make_cart(cls, buyer, lines=[(p, 1) for p in basket], at=NOW - timedelta(days=30))
            cls.confirm(cls, order, NOW - timedelta(days=30))
        cls.Affinity = env["behavioral.product.affinity"]
        with freeze_time(NOW):
            cls.Affinity._cron_refresh()

    def _enrollment(self, partner, order=None, sequence=None):
        sequence = sequence or self.cart_sequence
        return self.env["behavioral.enrollment"].create({
            "sequence_id": sequence.id, "partner_id": partner.id, "order_id": order.id if order else False,
            "res_model": "sale.order" if order else "res.partner",
            "res_id": order.id if order else partner.id, "company_id": self.company.id,
        })

    def test_affinity_cache(self):
        together = self.Affinity.search([("kind", "=", "bought_together"), ("product_id", "=", self.pot.id)])
        self.assertEqual(
            [(a.recommended_product_id, a.score) for a in together],
            [(self.soil, 3), (self.saucer, 2), (self.stake, 1)])
        tools = self.Affinity.search([("kind", "=", "category"), ("categ_id", "=", self.categ_tools.id)])
        self.assertEqual(tools[:1].recommended_product_id, self.shears)
        self.assertEqual(tools[:1].score, 3)
        # a rerun gives the same cache, not twice the rows
        count = self.Affinity.search_count([])
        with freeze_time(NOW):
            self.Affinity._cron_refresh()
        self.assertEqual(self.Affinity.search_count([]), count)

    def test_customers_also_bought(self):
        cart = self.make_cart(self.alice, lines=[(self.pot, 1)])
        enrollment = self._enrollment(self.alice, cart)
        self.assertEqual(enrollment._get_recommended_products(3), self.soil | self.saucer | self.stake)
        self.assertEqual(enrollment._get_recommended_products(3).mapped("name"),
                         ["Potting Soil", "Clay Saucer", "Bamboo Stake"])

    def test_merchandiser_choices_come_first(self):
        """Accessories first, then what was bought together, then the
        alternatives, then the category's and the shop's best sellers."""
        self.pot.product_tmpl_id.accessory_product_ids = self.gloves
        self.pot.product_tmpl_id.alternative_product_ids = self.hose.product_tmpl_id
        cart = self.make_cart(self.alice, lines=[(self.pot, 1)])
        enrollment = self._enrollment(self.alice, cart)
        self.assertEqual(enrollment.recommended_product_ids.mapped("name"), [
            "Garden Gloves", "Potting Soil", "Clay Saucer", "Bamboo Stake", "Garden Hose", "Pruning Shears"])
        self.assertEqual(enrollment._get_recommended_products(2), self.gloves | self.soil)

    def test_unavailable_products_are_swapped(self):
        cart = self.make_cart(self.alice, lines=[(self.pot, 1)])
        self.soil.product_tmpl_id.is_published = False
        self.saucer.active = False
        self.stake.sale_ok = False
        enrollment = self._enrollment(self.alice, cart)
        self.assertEqual(enrollment._get_recommended_products(3).mapped("name"),
                         ["Pruning Shears", "Garden Gloves", "Garden Hose"])
        # nor what another website sells
        self.gloves.website_id = self.env["website"].create({"name": "Other shop"})
        enrollment.invalidate_recordset(["recommended_product_ids"])
        self.assertEqual(enrollment._get_recommended_products(3), self.shears | self.hose)

    def test_out_of_stock_products_are_swapped(self):
        """Where stock is tracked, a sold-out product is not recommended
        until it is back in stock."""
        if "is_storable" not in self.env["product.template"]._fields:
            self.skipTest("stock is not installed")
        lantern = self.env["product.product"].create({
            "name": "Garden Lantern", "list_price": 15.0, "sale_ok": True, "is_published": True,
            "type": "consu", "is_storable": True, "taxes_id": [(5, 0, 0)]})
        self.pot.product_tmpl_id.accessory_product_ids = lantern
        cart = self.make_cart(self.alice, lines=[(self.pot, 1)])
        enrollment = self._enrollment(self.alice, cart)
        self.assertEqual(enrollment._get_recommended_products(2), self.soil | self.saucer)
        warehouse = self.env["stock.warehouse"].search([("company_id", "=", self.company.id)], limit=1)
        self.env["stock.quant"]._update_available_quantity(lantern, warehouse.lot_stock_id, 5)
        self.env.invalidate_all()  # a later batch: stock is read again
        self.assertEqual(enrollment._get_recommended_products(2).mapped("name"), ["Garden Lantern", "Potting Soil"])

    def test_new_contact_gets_best_sellers(self):
        enrollment = self._enrollment(self.carol, sequence=self.welcome_sequence)
        self.assertEqual(enrollment._get_recommended_products(3).mapped("name"),
                         ["Terracotta Pot", "Potting Soil", "Pruning Shears"])

    def test_past_buyer_gets_what_goes_with_their_purchase(self):
        buyer = self.others[3]  # bought shears and gloves
        enrollment = self._enrollment(buyer, sequence=self.welcome_sequence)
        recommended = enrollment._get_recommended_products(3)
        self.assertEqual(recommended[0], self.hose, "bought with the shears by someone else")
        self.assertFalse(recommended & (self.shears | self.gloves))

    def test_viewed_products(self):
        """Products the customer viewed on the website, latest first, if
        they can still be bought."""
        # a logged-in visitor: website keys it by its partner
        visitor = self.env["website.visitor"].create({
            "access_token": str(self.alice.id), "website_id": self.website.id})
        self.assertEqual(visitor.partner_id, self.alice)
        with freeze_time(NOW - timedelta(days=2)):
            self.env["website.track"].create([
                {"visitor_id": visitor.id, "product_id": self.hose.id, "url": "/shop/hose"},
                {"visitor_id": visitor.id, "product_id": self.saucer.id, "url": "/shop/saucer"},
            ])
        with freeze_time(NOW - timedelta(days=1)):
            self.env["website.track"].create({"visitor_id": visitor.id, "product_id": self.shears.id,
                                              "url": "/shop/shears"})
        self.saucer.product_tmpl_id.is_published = False
        enrollment = self._enrollment(self.alice, sequence=self.welcome_sequence)
        with freeze_time(NOW):
            self.assertEqual(enrollment._get_browsed_products(3), self.shears | self.hose)

    def test_sent_email_shows_three_available_products(self):
        """The second cart email recommends three products that can be bought."""
        self.start(self.cart_sequence)
        self.saucer.product_tmpl_id.is_published = False
        self.make_cart(self.bob, lines=[(self.pot, 1)])
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=27, minutes=1))
        mail = self.assertQueued(self.bob)
        self.assertEqual(mail.subject, "Still thinking it over?")
        root = html.fromstring(mail.body_html)
        [title] = root.xpath("//p[contains(., 'You may also like')]")
        cards = title.getnext().xpath("./div")
        self.assertEqual([card.xpath(".//a/span")[0].text_content() for card in cards],
                         ["Potting Soil", "Bamboo Stake", "Pruning Shears"])
        self.assertNotIn("Clay Saucer", mail.body_html)

    def test_queries_do_not_grow_with_the_batch(self):
        """Recommendations and the whole email of a batch of 5 or of 50
        customers: the same number of queries."""
        customers = self.env["res.partner"].with_context(behavioral_no_capture=True).create([
            {"name": f"Shopper {i}", "email": f"shopper{i}@example.com"} for i in range(55)])
        products = [self.pot, self.tree, self.soil, self.shears, self.hose]
        enrollments = self.env["behavioral.enrollment"]
        for i, customer in enumerate(customers):
            cart = self.make_cart(customer, lines=[(products[i % 5], 1), (products[(i + 1) % 5], 2)])
            enrollments |= self._enrollment(customer, cart)
        small, large = enrollments[:5], enrollments[5:55]
        Enrollment = self.env["behavioral.enrollment"]

        def recommend(batch):
            for enrollment in Enrollment.browse(batch.ids):
                enrollment._get_recommended_products(3).mapped("name")

        step = self.cart_sequence.step_ids.sorted()[1]
        mailing = step.mailing_id.sudo().with_context(behavioral_render_batch=True)

        def render(batch):
            step._render_ids(mailing, batch.ids)

        recommend(enrollments[:2])  # warm-up: ormcaches
        counts = [self.count_queries(recommend, batch)[0] for batch in (small, large)]
        self.assertEqual(counts[0], counts[1], f"recommendation queries for 5 and 50 customers: {counts}")
        render(enrollments[:2])  # warm-up: template compilation
        counts = [self.count_queries(render, batch)[0] for batch in (small, large)]
        self.assertEqual(counts[0], counts[1], f"rendering queries for 5 and 50 customers: {counts}")
        bodies = step._render_ids(mailing, large.ids)
        for enrollment in large:
            self.assertEqual(html.fromstring(bodies[enrollment.id]["body"]).xpath(
                "count(//p[contains(., 'You may also like')]/following-sibling::div[1]/div)"), 3.0)
