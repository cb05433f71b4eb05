import re
from datetime import timedelta

from freezegun import freeze_time

from odoo.exceptions import ValidationError
from odoo.tests.common import HttpCase

from .common import NOW
from .steps_common import StepsCommon, email_step


class BranchCase(HttpCase, StepsCommon):
    """Opens and clicks are produced the real way: the tracking pixel and the
    tracked link of the queued email, requested over HTTP."""

    def open_email(self, mail, at):
        token = self.env["mail.mail"]._generate_mail_recipient_token(mail.id)
        with freeze_time(at):
            response = self.url_open(f"/mail/track/{mail.id}/{token}/blank.gif")
        self.assertEqual(response.status_code, 200)
        self.env.invalidate_all()

    def click_email(self, mail, at):
        code = re.search(r"/r/([A-Za-z0-9]+)", mail.body_html).group(1)
        with freeze_time(at):
            response = self.url_open(f"/r/{code}/m/{mail.mailing_trace_ids.id}", allow_redirects=False)
        self.assertEqual(response.status_code, 301)
        self.env.invalidate_all()

    def subjects(self, sequence, partner):
        traces = self.enrollments(sequence, partner).trace_ids.sorted("id")
        return [(trace.step_id.subject, trace.state) for trace in traces]


class TestBranches(BranchCase):

    def test_opened_or_not_within_the_delay(self):
        sequence = self.make_sequence("Guide", [email_step("Our garden guide")])
        guide = sequence.step_ids
        self.env["behavioral.sequence.step"].create([
            dict(email_step("Glad you liked it", delay=2), sequence_id=sequence.id, sequence=20,
                 parent_id=guide.id, branch_condition="opened"),
            dict(email_step("Did you miss our guide?", delay=2), sequence_id=sequence.id, sequence=30,
                 parent_id=guide.id, branch_condition="not_opened"),
        ])
        opal, nell, lena = (self.new_contact(name) for name in ("Opal Opener", "Nell Never", "Lena Late"))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        mails = {partner: self.assertQueued(partner) for partner in (opal, nell, lena)}
        self.open_email(mails[opal], NOW + timedelta(days=1))
        # the decision is taken 2 days after the guide; a later run counts opens within 2 days only
        self.open_email(mails[lena], NOW + timedelta(days=2, hours=6))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=2, hours=12))
            self.run_crons(NOW + timedelta(days=2, hours=12, minutes=1))
        self.assertEqual(self.assertQueued(opal).subject, "Glad you liked it")
        self.assertEqual(self.assertQueued(nell).subject, "Did you miss our guide?")
        self.assertEqual(self.assertQueued(lena).subject, "Did you miss our guide?")
        self.assertEqual(self.subjects(sequence, opal), [("Our garden guide", "sent"), ("Glad you liked it", "sent")])
        self.assertEqual(self.subjects(sequence, nell), [
            ("Our garden guide", "sent"), ("Glad you liked it", "skipped"), ("Did you miss our guide?", "sent")])
        self.assertEqual(set(self.enrollments(sequence).mapped("state")), {"done"})
        skipped = self.enrollments(sequence, nell).trace_ids.filtered(lambda t: t.state == "skipped")
        self.assertIn("Branch not taken", skipped.state_msg)

    def test_clicked_follow_up_only_to_clickers(self):
        sequence = self.make_sequence("Clickers", [email_step("See the garden")])
        self.env["behavioral.sequence.step"].create(dict(
            email_step("Since you looked: 10% off", delay=1), sequence_id=sequence.id, sequence=20,
            parent_id=sequence.step_ids.id, branch_condition="clicked"))
        carl, nina = self.new_contact("Carl Clicker"), self.new_contact("Nina Noclick")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        carl_mail = self.assertQueued(carl)
        self.open_email(self.assertQueued(nina), NOW + timedelta(hours=3))
        self.click_email(carl_mail, NOW + timedelta(hours=5))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=1, minutes=2))
        self.assertEqual(self.assertQueued(carl).subject, "Since you looked: 10% off")
        self.assertQueued(nina, count=0)
        self.assertRecordValues(self.enrollments(sequence, nina), [{"state": "done"}])
        self.assertEqual(self.subjects(sequence, nina)[-1], ("Since you looked: 10% off", "skipped"))

    def test_link_of_another_email_is_no_click(self):
        """Odoo's /r/<code>/m/<trace id> takes any link's code with any trace
        id: Carl puts the code of a link of his own news email on the trace
        of Nina's email. He is redirected; her email is not clicked, and the
        branch does not take it."""
        sequence = self.make_sequence("Clickers", [email_step("See the garden")])
        self.env["behavioral.sequence.step"].create(dict(
            email_step("Since you looked: 10% off", delay=1), sequence_id=sequence.id, sequence=20,
            parent_id=sequence.step_ids.id, branch_condition="clicked"))
        news = self.make_sequence("News", [email_step("Garden news")])
        carl, nina = self.new_contact("Carl Clicker"), self.new_contact("Nina Noclick")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        carl_news = self.assertQueued(carl, sequence=news)
        nina_mail = self.assertQueued(nina, sequence=sequence)
        code = re.search(r"/r/([A-Za-z0-9]+)", carl_news.body_html).group(1)
        self.assertNotIn(f'/r/{code}"', nina_mail.body_html)
        with freeze_time(NOW + timedelta(hours=5)):
            response = self.url_open(f"/r/{code}/m/{nina_mail.mailing_trace_ids.id}", allow_redirects=False)
        self.assertEqual(response.status_code, 301)
        self.env.invalidate_all()
        self.assertFalse(nina_mail.mailing_trace_ids.links_click_datetime)
        self.click_email(self.assertQueued(carl, sequence=sequence), NOW + timedelta(hours=6))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=1, minutes=2))
        self.assertEqual(self.assertQueued(carl).subject, "Since you looked: 10% off")
        self.assertQueued(nina, count=0)
        self.assertEqual(self.subjects(sequence, nina)[-1], ("Since you looked: 10% off", "skipped"))

    def test_condition_on_the_customer(self):
        sequence = self.make_sequence("Gardeners", [email_step("Welcome")])
        first = sequence.step_ids
        self.env["behavioral.sequence.step"].create([
            dict(email_step("Tips for gardeners", delay=1), sequence_id=sequence.id, sequence=20,
                 parent_id=first.id, branch_condition="holds", branch_target="partner",
                 branch_domain="[('function', '=', 'Gardener')]"),
            dict(email_step("Start a garden", delay=1), sequence_id=sequence.id, sequence=30,
                 parent_id=first.id, branch_condition="not_holds", branch_target="partner",
                 branch_domain="[('function', '=', 'Gardener')]"),
        ])
        gina = self.new_contact("Gina Green", function="Gardener")
        hal = self.new_contact("Hal Hobby")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
            self.run_crons(NOW + timedelta(days=1, minutes=2))
            self.run_crons(NOW + timedelta(days=1, minutes=3))
        self.assertEqual(self.assertQueued(gina, count=2).sorted("id")[1].subject, "Tips for gardeners")
        self.assertEqual(self.assertQueued(hal, count=2).sorted("id")[1].subject, "Start a garden")

    def test_branch_goes_on_down_its_own_path(self):
        """[A, B if clicked, B2 after B, C if not clicked]: B2 follows B only."""
        sequence = self.make_sequence("Paths", [email_step("A")])
        a = sequence.step_ids
        b, b2, c = self.env["behavioral.sequence.step"].create([
            dict(email_step("B", delay=1), sequence_id=sequence.id, sequence=20, parent_id=a.id,
                 branch_condition="clicked"),
            dict(email_step("B2", delay=1), sequence_id=sequence.id, sequence=30),
            dict(email_step("C", delay=1), sequence_id=sequence.id, sequence=40, parent_id=a.id,
                 branch_condition="not_clicked"),
        ])
        self.assertEqual(a._get_children(), b | c)
        self.assertEqual(b._get_children(), b2)
        self.assertFalse(c._get_children())
        self.assertEqual((a | b | b2 | c).mapped("depth"), [0, 1, 1, 1])
        self.assertTrue(b.tree_label.startswith("\u2003\u21b3 If a link was clicked within 1 days: B"))
        self.assertEqual(sequence._get_default_path(), a | b | b2)
        paula, quinn = self.new_contact("Paula Path"), self.new_contact("Quinn Quiet")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.click_email(self._new_mails.filtered(lambda m: paula in m.recipient_ids), NOW + timedelta(hours=1))
        for at in (timedelta(days=1, minutes=2), timedelta(days=1, minutes=3), timedelta(days=2, minutes=4)):
            self.run_crons(NOW + at)
        self.assertEqual([s for s, state in self.subjects(sequence, paula) if state == "sent"], ["A", "B", "B2"])
        self.assertEqual([s for s, state in self.subjects(sequence, quinn) if state == "sent"], ["A", "C"])

    def test_branch_decision_costs_the_same_for_any_batch(self):
        sequence = self.make_sequence("Cost", [email_step("A")])
        child = self.env["behavioral.sequence.step"].create(dict(
            email_step("B", delay=1), sequence_id=sequence.id, sequence=20, parent_id=sequence.step_ids.id,
            branch_condition="opened"))
        partners = [self.new_contact(f"Cost{i} Customer") for i in range(8)]
        self.run_crons(NOW + timedelta(minutes=1))
        counts = []
        for group in (partners[:2], partners[2:]):
            enrollments = self.env["behavioral.enrollment"].search([
                ("sequence_id", "=", sequence.id), ("partner_id", "in", [p.id for p in group])])
            with freeze_time(NOW + timedelta(days=1, minutes=2)):
                counts.append(self.count_queries(child._check_branch, enrollments)[0])
        self.assertEqual(counts[0], counts[1])

    def test_invalid_trees_refused(self):
        sequence = self.make_sequence("Invalid", [email_step("A"), {"step_type": "tag", "delay_value": 1,
                                                                     "tag_ids": [(0, 0, {"name": "X"})]}],
                                      start=False)
        a, tag = self.steps(sequence)
        with self.assertRaisesRegex(ValidationError, "must come after"), self.env.cr.savepoint():
            a.parent_id = tag
        with self.assertRaisesRegex(ValidationError, "first step"), self.env.cr.savepoint():
            a.branch_condition = "holds"
        with self.assertRaisesRegex(ValidationError, "must follow an email step"), self.env.cr.savepoint():
            self.env["behavioral.sequence.step"].create(dict(
                email_step("After tag", delay=1), sequence_id=sequence.id, sequence=30, branch_condition="opened"))

    def test_copy_keeps_the_tree(self):
        sequence = self.make_sequence("Original", [email_step("A")], start=False)
        self.env["behavioral.sequence.step"].create(dict(
            email_step("B", delay=1), sequence_id=sequence.id, sequence=20, parent_id=sequence.step_ids.id,
            branch_condition="opened"))
        copied = sequence.copy()
        a, b = self.steps(copied)
        self.assertEqual(b.parent_id, a)
        self.assertEqual(b.branch_condition, "opened")
