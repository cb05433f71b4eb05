"""Helpers shared by the step-kind, branch and cadence tests: sequences built
from step values, contacts created the real way (their creation is the
trigger), and the crons run at fixed clocks."""
from freezegun import freeze_time

from .common import NOW, BehavioralCommon

EMAIL_BODY = "<p>Hello <t t-out=\"object.partner_id.name\"/>, <a href=\"https://shop.example.com/garden\">see the garden</a></p>"


def email_step(subject, delay=0, unit="days", **vals):
    return dict({"step_type": "email", "subject": subject, "body_html": EMAIL_BODY,
                 "delay_value": delay, "delay_unit": unit}, **vals)


class StepsCommon(BehavioralCommon):

    @classmethod
    def make_sequence(cls, name, steps, trigger_type="partner_created", start=True, **vals):
        """A sequence with these steps (in order), started at NOW."""
        sequence = cls.env["behavioral.sequence"].create(dict({
            "name": name,
            "trigger_type": trigger_type,
            "step_ids": [(0, 0, dict(step, sequence=10 * (index + 1))) for index, step in enumerate(steps)],
        }, **vals))
        if start:
            with freeze_time(NOW):
                sequence.action_start()
        return sequence

    def new_contact(self, name, at=NOW, **vals):
        """A new contact (the partner_created trigger), created at ``at``."""
        vals.setdefault("email", f"{name.split()[0].lower()}@example.com")
        with freeze_time(at):
            return self.env["res.partner"].create(dict(vals, name=name))

    def steps(self, sequence):
        return sequence.step_ids.sorted()
