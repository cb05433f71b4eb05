"""Dynamic blocks: what the mass-mailing editor saves still sends every line,
and content that lost a block or no longer renders is refused."""
import re
from datetime import timedelta

from lxml import html

from odoo.exceptions import AccessError, ValidationError
from odoo.tests.common import users

from .common import NOW, BehavioralCommon


def _save_like_the_editor(root):
    """What the mass-mailing editor saves of ``root`` (edited in place):
    styles inlined and every snippet turned into a table (web_editor's
    convert_inline, addTables), editor attributes dropped, and the preview
    of each block restyled. The blocks' QWeb is nowhere."""
    for snippet in root.xpath("//*[contains(@class, 'o_mail_snippet_general')]"):
        table = html.Element("table", dict(snippet.attrib, cellpadding="0", cellspacing="0", border="0",
                                           style="width:100% !important;border-collapse:collapse;"))
        row = html.Element("tr")
        cell = html.Element("td", {"style": "padding:0;"})
        table.append(row)
        row.append(cell)
        cell.text = snippet.text
        for child in list(snippet):
            cell.append(child)
        snippet.addprevious(table)
        table.tail = snippet.tail
        snippet.getparent().remove(snippet)
    for node in root.xpath("//*[@contenteditable]"):
        del node.attrib["contenteditable"]
    for content in root.xpath("//*[contains(@class, 'o_behavioral_block_content')]"):
        content.set("style", "box-sizing:border-box;font-size:14px;")
    return "".join(html.tostring(child, encoding="unicode") for child in root)


def inline_like_the_editor(body, paragraph):
    """What the editor saves once a marketer has changed the intro paragraph
    of the cart email."""
    root = html.fragment_fromstring(body, create_parent="div")
    intro = root.xpath("//p[contains(., 'You left these items')]")[0]
    intro.text = paragraph
    return _save_like_the_editor(root)


def move_header_like_the_editor(body):
    """A marketer drags the shop header block below the snippet that
    follows it: the editor moves the block as one unit. Returns what the
    editor keeps (``body_arch``), what it saves to be sent (``body_html``)
    and the ``data-snippet`` of the snippet now above the header."""
    root = html.fragment_fromstring(body, create_parent="div")
    [header] = root.xpath("//*[@data-behavioral-block='header']")
    following = header.getnext()
    header.tail, following.tail = following.tail, header.tail
    following.addnext(header)
    arch = "".join(html.tostring(child, encoding="unicode") for child in root)
    return arch, _save_like_the_editor(root), following.get("data-snippet")


class TestEditorBlocks(BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.step1 = cls.cart_sequence.step_ids.sorted()[0]
        cls.fern = cls.env["product.product"].create({
            "name": "Boston Fern", "list_price": 9.0, "sale_ok": True, "is_published": True,
            "type": "consu", "taxes_id": [(5, 0, 0)],
        })

    def _shipped_email_steps(self):
        """The email steps of every sequence shipped by the installed addons
        (behavioral_email and its bridges)."""
        shipped = self.env["ir.model.data"].search([
            ("module", "=like", "behavioral_email%"), ("model", "=", "behavioral.sequence")])
        sequences = self.env["behavioral.sequence"].browse(shipped.mapped("res_id"))
        xmlids = [
            "behavioral_email.sequence_cart", "behavioral_email.sequence_order", "behavioral_email.sequence_welcome",
            "behavioral_email.sequence_product_viewed", "behavioral_email.sequence_page_viewed",
            "behavioral_email.sequence_winback", "behavioral_email.sequence_birthday",
            "behavioral_email.sequence_first_order_anniversary", "behavioral_email.sequence_newsletter",
            "behavioral_email.sequence_invoice_paid", "behavioral_email.sequence_trial_started",
            "behavioral_email.sequence_winback_not_opened", "behavioral_email.sequence_email_clicked",
            "behavioral_email.sequence_email_opened",
        ]
        if "behavioral_email_stock" in self.env.registry._init_modules:
            xmlids.append("behavioral_email_stock.sequence_review_after_delivery")
        for xmlid in xmlids:
            self.assertIn(self.env.ref(xmlid), sequences)
        steps = sequences.step_ids.filtered(lambda step: step.step_type == "email")
        self.assertGreaterEqual(len(steps), 20)
        return steps.sorted(lambda step: (step.sequence_id.id, step.sequence, step.id))

    def test_shipped_emails_hold_blocks_not_loops(self):
        """The editor never sees a loop: every shipped email holds
        placeholders, in the layout the mass-mailing editor edits (a theme,
        a drop zone), and passes the content check."""
        self.assertFalse(self.env["behavioral.enrollment"].search_count([]), "tried on made-up enrollments")
        for step in self._shipped_email_steps():
            with self.subTest(step=step.display_name):
                self.assertNotIn("t-foreach", step.body_arch)
                self.assertEqual(step.body_arch, step.body_html)
                root = html.fragment_fromstring(step.body_arch, create_parent="div")
                self.assertTrue(root.xpath(
                    "//*[contains(@class, 'o_layout') and contains(@class, 'o_empty_theme')]"))
                [zone] = root.xpath("//*[contains(@class, 'o_mail_wrapper_td') and contains(@class, 'oe_structure')]")
                self.assertTrue(all("o_mail_snippet_general" in child.get("class", "") for child in zone),
                                "the drop zone holds snippets only")
                kinds = [node.get("data-behavioral-block") for node in root.xpath("//*[@data-behavioral-block]")]
                self.assertEqual((kinds[0], kinds[-1]), ("header", "footer"))
                self.assertFalse(step._get_email_content_error())
        expanded = self.step1._expand_email_blocks(self.step1.body_html)
        self.assertIn('t-call="behavioral_email.email_block_cart_lines"', expanded)
        self.assertNotIn("Cart lines: every item", expanded, "the editor's preview is not sent")

    def test_editor_offers_every_block(self):
        """Each dynamic block kind (the bridges' too) is offered in the
        editor's Shop content, as a block of that kind whose preview is not
        editable; its template renders for a made-up enrollment."""
        snippets = html.fromstring(self.env["ir.qweb"]._render("behavioral_email.email_designer_snippets"))
        offered = snippets.xpath("//snippets[@id='behavioral_email_blocks']//*[@data-behavioral-block]")
        blocks = self.step1._get_email_blocks()
        self.assertEqual(sorted(node.get("data-behavioral-block") for node in offered), sorted(blocks))
        if "behavioral_email_stock" in self.env.registry._init_modules:
            self.assertIn("delivered_lines", blocks)
        for node in offered:
            self.assertEqual([content.get("contenteditable") for content in node.xpath(
                "./*[contains(@class, 'o_behavioral_block_content')]")], ["false"])
        self.assertIn("last_visited", blocks)
        sample = self.step1._get_sample_enrollment()[0]
        for kind, (_label, template) in blocks.items():
            with self.subTest(kind=kind):
                self.env["ir.qweb"]._render(template, {"object": sample})

    def test_editor_moves_a_block_in_every_shipped_email(self):
        """In every shipped email a marketer (no right to write code) drags
        the shop header one snippet down; what the editor saves is accepted,
        and the email rendered for a customer (a test email) shows the
        shop's logo there."""
        self.assertTrue(self.company.logo)
        logo = f"/logo.png?company={self.company.id}"
        for step in self._shipped_email_steps():
            with self.subTest(step=step.display_name):
                arch, body, above = move_header_like_the_editor(step.body_arch)
                self.assertTrue(above)
                step.with_user(self.user_marketing).write({"body_arch": arch, "body_html": body})
                self.assertEqual((step.body_arch, step.body_html), (arch, body))
                test = self.env["behavioral.step.test"].with_user(self.user_marketing).create({
                    "step_id": step.id, "partner_id": self.alice.id, "email_to": "mia@example.com"})
                _subject, sent = test._render()
                [header] = html.fromstring(sent).xpath("//*[@data-behavioral-block='header']")
                self.assertTrue(header.xpath(f".//img[contains(@src, '{logo}')]"), "the block rendered")
                self.assertEqual(header.getprevious().get("data-snippet"), above)
                self.assertIsNone(header.getprevious().getprevious(), "the header is second")
                self.assertNotIn("Shop header: your logo", sent, "the editor's preview is not sent")

    def test_edited_email_still_lists_every_line(self):
        """The marketer rewrites the text around the cart lines; the editor
        saves its inlined version. A three-line cart still gets three lines."""
        self.start(self.cart_sequence)
        body = inline_like_the_editor(self.step1.body_html, "Your basket is waiting, all three of them:")
        self.step1.with_user(self.user_marketing).write({"body_html": body, "body_arch": self.step1.body_arch})
        cart = self.make_cart(self.alice, lines=[(self.pot, 2), (self.tree, 1), (self.fern, 3)])
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        mail = self.assertQueued(self.alice)
        self.assertIn("Your basket is waiting, all three of them:", mail.body_html)
        root = html.fromstring(mail.body_html)
        lines = root.xpath("//img[contains(@src, '/web/image/product.product/')]/ancestor::tr[1]")
        self.assertEqual(len(lines), 3)
        for product, qty in ((self.pot, 2), (self.tree, 1), (self.fern, 3)):
            [line] = [tr for tr in lines if product.name in tr.text_content()]
            self.assertIn(f"Quantity: {qty}", line.text_content())
        self.assertIn("132.00", mail.body_html)  # 2 x 12.50 + 80.00 + 3 x 9.00
        self.assertIn("Return to my cart", mail.body_html)
        self.assertIn("Hi Alice,", mail.body_html)
        self.assertNotIn("every item of the customer's cart", mail.body_html)
        self.assertEqual(cart.amount_total, 132.0)
        # what staff see of it is what Alice got
        trace = self.enrollments(self.cart_sequence, self.alice).trace_ids
        self.assertIn("Boston Fern", trace.body_html)
        self.assertIn("Your basket is waiting", trace.body_html)

    def _assert_refused(self, message, user=None, **vals):
        before = (self.step1.body_html, self.step1.body_arch, self.step1.subject)
        with self.assertRaisesRegex(ValidationError, message), self.env.cr.savepoint():
            self.step1.with_user(user or self.user_marketing).write(vals)
        self.step1.invalidate_recordset()
        self.assertEqual((self.step1.body_html, self.step1.body_arch, self.step1.subject), before)

    def test_broken_blocks_are_refused(self):
        body = str(self.step1.body_html)
        # the content element was replaced by typed text: the block lost its structure
        broken = re.sub(
            r'(data-behavioral-block="cart_lines"[^>]*>)\s*<div class="o_behavioral_block_content.*?\n</div>',
            r"\1<p>typed over</p>", body, count=1, flags=re.S)
        self.assertNotEqual(broken, body)
        self._assert_refused("dynamic block “Cart lines” was broken", body_html=broken)
        # the block lost its kind
        self._assert_refused("block “Cart lines” lost its settings",
                             body_html=body.replace('data-behavioral-block="cart_lines" ', "", 1))
        # a kind that does not exist
        self._assert_refused("is not a dynamic block",
                             body_html=body.replace('data-behavioral-block="cart_lines"',
                                                    'data-behavioral-block="spaceship"', 1))
        # a block dropped inside another one
        footer = re.search(r'<div class="o_mail_snippet_general o_behavioral_block s_behavioral_footer.*?\n</div>\n</div>',
                           body, flags=re.S).group(0)
        nested = body.replace('<div class="o_behavioral_block_content o_not_editable o_mail_no_options" '
                              'contenteditable="false" data-oe-protected="true">',
                              '<div class="o_behavioral_block_content o_not_editable o_mail_no_options" '
                              'contenteditable="false" data-oe-protected="true">' + footer, 1)
        self._assert_refused("block “Footer” was put inside another dynamic block", body_html=nested)
        # the version sent lost a block the editor still shows
        without_button = re.sub(
            r'<div class="o_mail_snippet_general o_behavioral_block s_behavioral_restore_cart.*?\n</div>\n</div>',
            "", body, count=1, flags=re.S)
        self._assert_refused("block “Restore cart button” is missing from the email as it is sent",
                             body_html=without_button, body_arch=body)

    def test_content_that_does_not_render_is_refused(self):
        """Code written by a template editor (the code view) is tried too,
        on a made-up enrollment while the sequence has none: what rendered
        before the change must still render."""
        admin = self.env.ref("base.user_admin")
        body = str(self.step1.body_html)
        # a loop a browser hoisted out of its table: its variable is gone
        hoisted = body.replace(
            "<p style=\"margin:0;\">You left these items",
            '<t t-foreach="object.order_id.order_line" t-as="line"></t>'
            '<table><tr><td t-out="line.name_short"></td></tr></table><p style="margin:0;">You left these items', 1)
        self._assert_refused("the email does not render", user=admin, body_html=hoisted)
        self._assert_refused("no_such_field", user=admin, body_html=body.replace(
            "object.partner_first_name", "object.no_such_field", 1))
        self._assert_refused("the subject does not render", user=admin, subject="Hello {{ object.nope }}")
        # fixed content saves
        self.step1.with_user(self.user_marketing).write({"subject": "Hello {{ object.partner_id.name }}"})
        self.assertEqual(self.step1.mailing_id.subject, "Hello {{ object.partner_id.name }}")
        # what the made-up enrollment cannot show (no trigger payload) is no reason to refuse a new email
        step = self.env["behavioral.sequence.step"].with_user(admin).create({
            "sequence_id": self.cart_sequence.id, "subject": "Hello", "delay_value": 1,
            "body_html": "<p>You viewed <t t-out=\"object.payload['product_ids'][0]\"/></p>"})
        self.assertTrue(step.mailing_id)

    def test_failed_try_does_not_empty_the_made_up_enrollment(self):
        """A try that fails rolls its savepoint back, which empties Odoo's
        cache: the tries after it still render for a made-up enrollment
        with its customer, so that they judge the change, not an empty
        sample."""
        admin = self.env.ref("base.user_admin")
        self.assertFalse(self.enrollments(self.cart_sequence))
        step = self.env["behavioral.sequence.step"].with_user(admin).create({
            "sequence_id": self.cart_sequence.id, "delay_value": 1,
            "subject": "Your {{ object.payload['product_name'] }}", "body_html": "<p>Hello</p>"})
        self.assertFalse(step._get_sample_enrollment()[1], "no enrollment yet: a made-up one")
        # the new subject fails for the made-up enrollment as the old one did
        # (no trigger payload): data, not the change; the body, which needs
        # the customer, is then tried on a made-up enrollment that has one
        shout = '<p>Hello <t t-out="object.partner_id.name.upper()"></t></p>'
        step.write({"subject": "Still your {{ object.payload['product_name'] }}", "body_html": shout})
        self.assertEqual(step.body_html, shout)
        self.assertEqual(step.subject, "Still your {{ object.payload['product_name'] }}")
        # a body broken by the change: its try fails, the old body is tried
        # again, renders, and so the change is refused
        broken = shout.replace("</p>", '<t t-out="object.no_such_field"></t></p>')
        with self.assertRaisesRegex(ValidationError, "the email does not render: .*no_such_field"), \
                self.env.cr.savepoint():
            step.write({"body_html": broken})
        step.invalidate_recordset()
        self.assertEqual(step.body_html, shout)

    def test_try_render_uses_the_sequence_enrollments(self):
        """Content is tried on a real enrollment once there is one: an error
        only real data shows is caught too."""
        self.start(self.cart_sequence)
        self.make_cart(self.alice)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        self.assertEqual(self.step1._get_sample_enrollment(), (self.enrollments(self.cart_sequence, self.alice), True))
        self._assert_refused("ZeroDivisionError", user=self.env.ref("base.user_admin"),
                             body_html=str(self.step1.body_html).replace(
            "You left these items", "<t t-out=\"1 // (len(object.order_id.order_line) - 2)\"/> You left", 1))

    def test_promo_code_block(self):
        """The promo code block shows the step's code; a step showing the
        block without a code cannot start."""
        step = self.cart_sequence.step_ids.sorted()[2]
        coupon = self.env.ref("behavioral_email.s_behavioral_coupon")
        block = self.env["ir.qweb"]._render(coupon.id)
        step.body_html = str(step.body_html).replace(
            '<div class="o_mail_snippet_general o_behavioral_block s_behavioral_footer', block +
            '<div class="o_mail_snippet_general o_behavioral_block s_behavioral_footer', 1)
        with self.assertRaisesRegex(Exception, "promo code block but has no promo code"):
            self.cart_sequence.action_start()
        step.coupon_code = "COMEBACK10"
        self.start(self.cart_sequence)
        self.make_cart(self.alice)
        for hours in (3, 27, 75):
            with self.mock_queue():
                self.run_crons(NOW + timedelta(hours=hours))
        mail = self.assertQueued(self.alice)
        self.assertEqual(mail.subject, "Last reminder: your cart")
        self.assertIn("COMEBACK10", mail.body_html)

    @users("marketer")
    def test_marketer_uses_blocks_not_code(self):
        """Marketers (not template editors, as Odoo has it by default) edit
        emails made of blocks and placeholders, but may not write code: it
        would run with the rights of the cron that sends."""
        self.assertFalse(self.env.user.has_group("mail.group_mail_template_editor"))
        step = self.step1.with_env(self.env)
        step.write({"body_html": str(step.body_html).replace("We saved them for you", "They are saved"),
                    "subject": "Your cart at {{ object.company_id.name ||| our shop }}"})
        self.assertIn("They are saved", step.body_arch)
        with self.assertRaisesRegex(AccessError, "may write code"), self.env.cr.savepoint():
            step.write({"body_html": str(step.body_html).replace(
                "</p>", '<t t-foreach="object.order_id.order_line" t-as="line"><t t-out="line.name"/></t></p>', 1)})
        with self.assertRaisesRegex(AccessError, "may write code"), self.env.cr.savepoint():
            step.write({"subject": "{{ object.partner_id.sudo().write({'name': 'X'}) }}"})
        # code shipped in an email stays editable around it
        winback = self.env.ref("behavioral_email.sequence_winback_step_1").with_env(self.env)
        self.assertIn("object.payload", winback.body_html)
        winback.write({"body_html": str(winback.body_html).replace("we have missed you", "we miss you")})
        self.assertIn("we miss you", winback.body_arch)
        with self.assertRaisesRegex(AccessError, "may write code"), self.env.cr.savepoint():
            winback.write({"body_html": str(winback.body_html).replace(
                "we miss you", "we miss you <t t-out=\"object.payload['last_order_id']\"/>")})
