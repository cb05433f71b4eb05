from datetime import datetime, timedelta

from .common import NOW
from .steps_common import StepsCommon, email_step

# NOW is Monday 2 March 2026, 09:00 UTC; Tokyo is UTC+9, Paris UTC+1.


class TestLocalTime(StepsCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.company.partner_id.tz = "Europe/Brussels"
        cls.sequence = cls.make_sequence("Daytime welcome", [
            email_step("Good morning", send_hour_from=9.0, send_hour_to=20.0)])

    def test_tokyo_recipient_at_3am_waits_for_the_window(self):
        # created at 18:00 UTC: 03:00 on Tuesday in Tokyo
        kenji = self.new_contact("Kenji Tokyo", at=NOW + timedelta(hours=9), tz="Asia/Tokyo")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=9, minutes=1))
        self.assertQueued(kenji, count=0)
        enrollment = self.enrollments(self.sequence, kenji)
        # 09:00 in Tokyo is midnight UTC
        self.assertEqual(enrollment.next_due, datetime(2026, 3, 3, 0, 0))
        self.assertIn("Send window 09:00-20:00", enrollment.wait_reason)
        self.assertIn("Asia/Tokyo", enrollment.wait_reason)
        with self.mock_queue():
            self.run_crons(datetime(2026, 3, 2, 23, 59))
        self.assertQueued(kenji, count=0)
        with self.mock_queue():
            self.run_crons(datetime(2026, 3, 3, 0, 0))
        self.assertQueued(kenji)

    def test_japanese_mobile_without_time_zone_same(self):
        yuki = self.new_contact("Yuki Mobile", at=NOW + timedelta(hours=9), mobile="+81 90-1234-5678")
        self.assertFalse(yuki.tz)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=9, minutes=1))
        self.assertQueued(yuki, count=0)
        self.assertEqual(self.enrollments(self.sequence, yuki).next_due, datetime(2026, 3, 3, 0, 0))
        with self.mock_queue():
            self.run_crons(datetime(2026, 3, 3, 0, 0))
        self.assertQueued(yuki)

    def test_time_zone_resolution_order(self):
        japan, usa = self.env.ref("base.jp"), self.env.ref("base.us")
        partners = self.env["res.partner"].with_context(behavioral_no_capture=True).create([
            {"name": "Own tz", "tz": "America/Lima", "mobile": "+81 90-1234-5678", "country_id": japan.id},
            {"name": "Phone", "mobile": "+81 90-1234-5678", "country_id": usa.id},
            {"name": "Country", "country_id": japan.id},
            {"name": "Several zones", "country_id": usa.id},
            {"name": "Nothing"},
        ])
        enrollments = self.env["behavioral.enrollment"].create([{
            "sequence_id": self.sequence.id, "partner_id": partner.id, "state": "done",
        } for partner in partners])
        zones = [enrollment._get_recipient_timezone(self.company) for enrollment in enrollments]
        self.assertEqual(zones, ["America/Lima", "Asia/Tokyo", "Asia/Tokyo", "Europe/Brussels", "Europe/Brussels"])
        self.company.partner_id.tz = False
        self.assertEqual(enrollments[-1]._get_recipient_timezone(self.company), "UTC")

    def test_weekdays(self):
        self.sequence.step_ids.write({"send_saturday": False, "send_sunday": False})
        saturday = datetime(2026, 3, 7, 10, 0)
        lou = self.new_contact("Lou London", at=saturday, tz="Europe/London")
        with self.mock_queue():
            self.run_crons(saturday + timedelta(minutes=1))
        self.assertQueued(lou, count=0)
        enrollment = self.enrollments(self.sequence, lou)
        self.assertEqual(enrollment.next_due, datetime(2026, 3, 9, 9, 0))
        self.assertIn("Not a send day", enrollment.wait_reason)


class TestQuietHours(StepsCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.company.write({"behavioral_quiet_start": 21.0, "behavioral_quiet_end": 8.0})
        cls.sequence = cls.make_sequence("Anytime welcome", [email_step("Hello")])

    def test_quiet_hours_in_each_recipients_zone(self):
        # 22:00 UTC: 07:00 in Tokyo and 23:00 in Paris, both quiet; 17:00 in Lima, not quiet
        at = NOW + timedelta(hours=13)
        kenji = self.new_contact("Kenji Tokyo", at=at, tz="Asia/Tokyo")
        paul = self.new_contact("Paul Paris", at=at, tz="Europe/Paris")
        lima = self.new_contact("Lia Lima", at=at, tz="America/Lima")
        with self.mock_queue():
            self.run_crons(at + timedelta(minutes=1))
        self.assertQueued(kenji, count=0)
        self.assertQueued(paul, count=0)
        self.assertQueued(lima)
        self.assertEqual(self.enrollments(self.sequence, kenji).next_due, datetime(2026, 3, 2, 23, 0))
        self.assertEqual(self.enrollments(self.sequence, paul).next_due, datetime(2026, 3, 3, 7, 0))
        self.assertIn("Quiet hours 21:00-08:00", self.enrollments(self.sequence, paul).wait_reason)
        with self.mock_queue():
            self.run_crons(datetime(2026, 3, 2, 23, 0))
        self.assertQueued(kenji)
        self.assertQueued(paul, count=0)
        with self.mock_queue():
            self.run_crons(datetime(2026, 3, 3, 7, 0))
        self.assertQueued(paul)

    def test_transactional_and_back_office_steps_ignore_quiet_hours(self):
        receipt = self.make_sequence("Receipt", [email_step("Your account")], consent_mode="transactional")
        tagging = self.make_sequence("Tagging", [{"step_type": "tag", "delay_value": 0,
                                                 "tag_ids": [(0, 0, {"name": "Night owl"})]}])
        at = NOW + timedelta(hours=13)
        paul = self.new_contact("Paul Paris", at=at, tz="Europe/Paris")
        with self.mock_queue():
            self.run_crons(at + timedelta(minutes=1))
        self.assertQueued(paul, sequence=receipt)
        self.assertQueued(paul, count=0, sequence=self.sequence)
        self.assertEqual(self.enrollments(tagging, paul).state, "done")
        self.assertEqual(paul.category_id.name, "Night owl")

    def test_equal_hours_mean_no_quiet_hours(self):
        self.company.write({"behavioral_quiet_start": 0.0, "behavioral_quiet_end": 0.0})
        at = NOW + timedelta(hours=13)
        paul = self.new_contact("Paul Paris", at=at, tz="Europe/Paris")
        with self.mock_queue():
            self.run_crons(at + timedelta(minutes=1))
        self.assertQueued(paul)


class TestFrequencyCap(StepsCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.company.write({"behavioral_cap_count": 2, "behavioral_cap_hours": 24})
        cls.low = cls.make_sequence("Low", [email_step("Low priority")], priority=30)
        cls.high = cls.make_sequence("High", [email_step("High priority")], priority=1)
        cls.mid = cls.make_sequence("Mid", [email_step("Mid priority")], priority=10)

    def test_cap_delays_by_priority_never_drops(self):
        cara = self.new_contact("Cara Capped")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertQueued(cara, sequence=self.high)
        self.assertQueued(cara, sequence=self.mid)
        self.assertQueued(cara, count=0, sequence=self.low)
        waiting = self.enrollments(self.low, cara)
        self.assertRecordValues(waiting, [{"state": "running", "next_due": NOW + timedelta(days=1, minutes=1)}])
        self.assertIn("Frequency cap: 2 marketing emails per 24 hours", waiting.wait_reason)
        self.assertIn("High went first", waiting.wait_reason)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=23))
        self.assertQueued(cara, count=0)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=1, minutes=1))
        self.assertQueued(cara, sequence=self.low)
        self.assertEqual(waiting.state, "done")
        # the contact's timeline says why it waited
        timeline = waiting.timeline_html
        for text in ("Entered", "Waited", "Frequency cap", "Sent"):
            self.assertIn(text, timeline)
        self.assertIn("Low", cara.behavioral_timeline_html)
        self.assertIn("High", cara.behavioral_timeline_html)

    def test_transactional_neither_counts_nor_waits(self):
        receipt = self.make_sequence("Receipt", [email_step("Your account")], consent_mode="transactional",
                                     priority=50)
        tom = self.new_contact("Tom Transactional")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertQueued(tom, sequence=receipt)
        self.assertEqual(len(self._new_mails.filtered(lambda m: tom in m.recipient_ids)), 3)

    def test_no_cap(self):
        self.company.behavioral_cap_count = 0
        una = self.new_contact("Una Uncapped")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertQueued(una, count=3)


class TestExclusions(StepsCommon):

    def test_excluding_sequence_keeps_customers_out(self):
        cart_like = self.make_sequence("Main series", [email_step("Main", delay=1)], sequence=1)
        browse_like = self.make_sequence("Side series", [email_step("Side")], sequence=2)
        cart_like.exclude_sequence_ids = browse_like
        ella = self.new_contact("Ella Excluded")
        self.run_crons(NOW + timedelta(minutes=1))
        self.assertEqual(self.enrollments(cart_like, ella).state, "running")
        self.assertFalse(self.enrollments(browse_like, ella))
        trigger = self.env["behavioral.trigger"].search([("partner_id", "=", ella.id)])
        self.assertIn("Side series: running through Main series, which excludes this sequence", trigger.state_msg)
