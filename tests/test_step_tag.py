from datetime import timedelta

from .common import NOW
from .steps_common import StepsCommon


class TestStepTag(StepsCommon):

    def test_tags_added_then_removed(self):
        lead, engaged = self.env["res.partner.category"].create([{"name": "Fresh lead"}, {"name": "Engaged"}])
        sequence = self.make_sequence("Tag new contacts", [
            {"step_type": "tag", "delay_value": 0, "tag_action": "add", "tag_ids": [(6, 0, (lead | engaged).ids)]},
            {"step_type": "tag", "delay_value": 2, "tag_action": "remove", "tag_ids": [(6, 0, lead.ids)]},
        ])
        tess, theo = self.new_contact("Tess Tagged"), self.new_contact("Theo Tagged")
        self.run_crons(NOW + timedelta(minutes=1))
        self.assertEqual(tess.category_id, lead | engaged)
        self.assertEqual(theo.category_id, lead | engaged)
        self.run_crons(NOW + timedelta(days=2, minutes=2))
        self.assertEqual(tess.category_id, engaged)
        self.assertEqual(theo.category_id, engaged)
        traces = self.enrollments(sequence, tess).trace_ids
        self.assertEqual(traces.mapped("state"), ["sent", "sent"])
        self.assertIn("Fresh lead", traces.sorted("id")[1].state_msg)

    def test_tag_step_needs_tags_to_start(self):
        sequence = self.make_sequence("No tags", [{"step_type": "tag", "delay_value": 0}], start=False)
        with self.assertRaisesRegex(Exception, "has no tag"):
            sequence.action_start()
