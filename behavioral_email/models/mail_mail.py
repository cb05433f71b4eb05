import logging
import smtplib
from collections import defaultdict
from datetime import timedelta

import psycopg2

from odoo import api, fields, models
from odoo.addons.base.models.ir_mail_server import MailDeliveryException

_logger = logging.getLogger(__name__)

# minutes between a failed attempt and the next one: 1, 5, 15, 60, then every 4 hours
RETRY_DELAYS = [1, 5, 15, 60]
RETRY_EVERY = 240


def _classify_delivery_error(exc):
    """Whether a delivery error is worth another attempt.

    :param exc: the exception raised by ``ir.mail_server.connect`` or, through
        ``mail.mail._send``, by ``ir.mail_server.send_email`` (which wraps the
        SMTP error in a ``MailDeliveryException``, its ``__context__``)
    :return: ``'transient'`` (no connection, timeout, connection lost, any 4xx
        reply), ``'bounce'`` (every recipient refused with a 5xx reply) or
        ``False`` for anything else, which is failed as Odoo fails it
    """
    if isinstance(exc, MailDeliveryException):
        exc = exc.__cause__ or exc.__context__
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _message in exc.recipients.values()]
        return "bounce" if codes and all(code >= 500 for code in codes) else "transient"
    if isinstance(exc, smtplib.SMTPResponseException):
        return "transient" if 400 <= exc.smtp_code < 500 else False
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return "transient"
    if isinstance(exc, smtplib.SMTPException):
        return False
    # refused or reset connection, timeout, unknown host (smtplib's errors are OSErrors too)
    if isinstance(exc, OSError):
        return "transient"
    return False


def _describe_delivery_error(exc):
    """The server's reply (or the network error) in one readable line."""
    if isinstance(exc, MailDeliveryException):
        exc = exc.__cause__ or exc.__context__ or exc

    def decode(message):
        return message.decode(errors="replace") if isinstance(message, bytes) else str(message)

    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "; ".join(
            f"{recipient}: {code} {decode(message)}" for recipient, (code, message) in exc.recipients.items())
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {decode(exc.smtp_error)}"
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")


class MailMail(models.Model):
    """Delivery of the sequences' emails: transient failures are retried.

    Only the mails of behavioral sequences (``model`` behavioral.enrollment,
    sent by a mailing marked ``use_in_behavioral``) when they are sent without
    ``raise_exception``, as the mail queue sends them; any other mail keeps
    Odoo's behaviour exactly.

    States of such a mail (Odoo's ``state``):

    * ``outgoing``: queued by the sequence. After a transient failure (no
      connection to the server, timeout, connection lost, a 4xx reply), at
      connection time (:meth:`send`, the whole batch) or for this mail
      (:meth:`_send`), it stays ``outgoing`` with ``scheduled_date`` at the next
      attempt: 1, 5, 15 and 60 minutes after a failure, then every 4 hours, and
      a last attempt when ``behavioral_email.delivery_retry_hours`` (24) have
      passed since the first failure (``behavioral_retry_since``).
      ``behavioral_retry_count`` counts the failed attempts, ``failure_reason``
      holds the last error, the step's ``behavioral.trace`` says it is delayed,
      and the mail queue is triggered at the next attempt.
    * ``sent``: accepted by the server; never sent again (and, as any mass
      mailing email, deleted unless its mailing keeps archives).
    * ``exception``: failed for good, set by :meth:`_behavioral_fail` or by
      Odoo: ``failure_type`` ``mail_smtp`` when still failing at the limit (or
      the server could not be used at all), ``mail_email_invalid`` when the
      server refused the recipient with a 5xx reply or the address is invalid:
      counted as a bounce (mailing.trace ``bounce``, the contact's
      ``message_bounce``), which ends the enrollment; other errors as Odoo
      sets them. The step's trace is ``failed`` with the reason
      (:meth:`behavioral.trace._set_delivery_failed`).
    """

    _inherit = "mail.mail"

    behavioral_retry_count = fields.Integer(
        "Failed Delivery Attempts", readonly=True, copy=False,
        help="Transient delivery failures of this sequence email so far; it is retried later.")
    behavioral_retry_since = fields.Datetime(
        "Failing Since", readonly=True, copy=False,
        help="First failed delivery attempt: retries stop after the configured number of hours.")

    def _filter_behavioral(self):
        """The mails sent by behavioral sequences."""
        return self.filtered(lambda m: m.model == "behavioral.enrollment" and m.mailing_id.use_in_behavioral)

    # ------------------------------------------------------------
    # SENDING
    # ------------------------------------------------------------

    def send(self, auto_commit=False, raise_exception=False, post_send_callback=None):
        """Odoo's send; when the connection to the server fails, the sequences'
        mails of that batch go back to the queue (or fail for good past the
        retry limit) instead of failing at once."""
        ours = self.browse() if raise_exception else self._filter_behavioral()
        if not ours:
            return super().send(
                auto_commit=auto_commit, raise_exception=raise_exception, post_send_callback=post_send_callback)
        if self - ours:
            super(MailMail, self - ours).send(auto_commit=auto_commit, post_send_callback=post_send_callback)
        IrMailServer = self.env["ir.mail_server"]
        # the same loop as Odoo's, but for the handling of a failed connection
        for mail_server_id, alias_domain_id, smtp_from, batch_ids in ours._split_by_mail_configuration():
            batch = self.browse(batch_ids)
            try:
                smtp_session = IrMailServer.connect(mail_server_id=mail_server_id, smtp_from=smtp_from)
            except Exception as exc:  # noqa: BLE001 - every mail of the batch is retried or failed below
                _logger.info("behavioral_email: cannot connect to the mail server for %s mail(s): %s",
                             len(batch), _describe_delivery_error(exc))
                if _classify_delivery_error(exc) == "transient":
                    batch._behavioral_retry_later(exc)
                else:
                    batch._behavioral_fail(_describe_delivery_error(exc), "mail_smtp")
                continue
            try:
                batch._send(
                    auto_commit=auto_commit,
                    smtp_session=smtp_session,
                    alias_domain_id=alias_domain_id,
                    mail_server=IrMailServer.browse(mail_server_id),
                    post_send_callback=post_send_callback,
                )
            finally:
                if smtp_session:
                    try:
                        smtp_session.quit()
                    except smtplib.SMTPServerDisconnected:
                        _logger.info("Ignoring SMTPServerDisconnected while trying to quit non open session")
        return True

    def _send(self, auto_commit=False, raise_exception=False, smtp_session=None, alias_domain_id=False,
              mail_server=False, post_send_callback=None):
        """Odoo's _send, mail by mail for the sequences' mails, so that a
        transient failure puts the mail back in the queue.

        Each mail is sent by Odoo's own code inside a savepoint. When it raises
        a transient error (see ``_classify_delivery_error``), the server has not
        accepted the mail: what Odoo wrote about the failure is rolled back and
        the mail is rescheduled. A refused recipient is rolled back too and
        failed as a bounce. Any other error keeps Odoo's handling.
        """
        ours = self.browse() if raise_exception else self._filter_behavioral()
        if not ours:
            return super()._send(
                auto_commit=auto_commit, raise_exception=raise_exception, smtp_session=smtp_session,
                alias_domain_id=alias_domain_id, mail_server=mail_server, post_send_callback=post_send_callback)
        if self - ours:
            super(MailMail, self - ours)._send(
                auto_commit=auto_commit, smtp_session=smtp_session, alias_domain_id=alias_domain_id,
                mail_server=mail_server, post_send_callback=post_send_callback)
        for mail in ours:
            savepoint = self.env.cr.savepoint()
            try:
                super(MailMail, mail)._send(
                    raise_exception=True, smtp_session=smtp_session,
                    alias_domain_id=alias_domain_id, mail_server=mail_server)
            except (psycopg2.Error, MemoryError):
                # the transaction (or the worker) is lost: as in Odoo
                raise
            except Exception as exc:  # noqa: BLE001 - classified below; Odoo has already failed the mail
                kind = _classify_delivery_error(exc)
                savepoint.close(rollback=bool(kind))
                if kind == "transient":
                    mail._behavioral_retry_later(exc)
                elif kind == "bounce":
                    mail._behavioral_fail(_describe_delivery_error(exc), "mail_email_invalid")
            else:
                savepoint.close(rollback=False)
            if auto_commit is True:
                if post_send_callback:
                    post_send_callback([mail.id])
                # as Odoo does after each mail: a mail handed to the server is
                # recorded at once, so that a later crash cannot send it twice
                self.env.cr.commit()  # pylint: disable=invalid-commit
        if post_send_callback:
            post_send_callback(ours.ids)
        return True

    # ------------------------------------------------------------
    # OUTCOMES
    # ------------------------------------------------------------

    def _postprocess_sent_message(self, success_pids, failure_reason=False, failure_type=None):
        """Record the outcome of the sequences' mails on their traces: a
        delivery after delays is noted, a final failure fails the trace, a
        refused or invalid address also counts as a bounce."""
        ours = self._filter_behavioral().filtered(lambda m: m.state != "sent") if failure_type \
            else self._filter_behavioral().filtered("behavioral_retry_count")
        if not ours:
            return super()._postprocess_sent_message(
                success_pids, failure_reason=failure_reason, failure_type=failure_type)
        # read before super() deletes the auto-deleted mails
        mail_ids = ours.ids
        mailing_traces = ours.mailing_trace_ids
        emails = {email for email in mailing_traces.mapped("email") if email}
        retry_counts = {mail.id: mail.behavioral_retry_count for mail in ours}
        res = super()._postprocess_sent_message(
            success_pids, failure_reason=failure_reason, failure_type=failure_type)
        traces = self.env["behavioral.trace"].sudo().search([("mail_mail_id_int", "in", mail_ids)])
        if not failure_type:
            for count, group in traces.grouped(lambda t: retry_counts.get(t.mail_mail_id_int)).items():
                group.write({"state_msg": self.env._(
                    "Delivered after %(count)s failed attempt(s).", count=count)})
        elif failure_type == "mail_email_invalid":
            reason = failure_reason or self.env._("Invalid email address")
            mailing_traces.set_bounced(bounce_message=reason)
            self._behavioral_count_bounces(emails)
            traces._set_delivery_failed("mail_bounce", reason)
        else:
            labels = dict(self._fields["failure_type"]._description_selection(self.env))
            traces._set_delivery_failed("mail_smtp", failure_reason or labels.get(failure_type))
        return res

    def _behavioral_retry_later(self, exc):
        """Put these mails back in the queue after a transient failure, at the
        next attempt of their backoff; those past the retry limit fail for good."""
        now = fields.Datetime.now()
        hours = self.env["ir.config_parameter"].sudo().get_param("behavioral_email.delivery_retry_hours", "24")
        try:
            limit = timedelta(hours=float(hours or 0))
        except ValueError:
            _logger.warning("behavioral_email: delivery_retry_hours %r is not a number, using 24", hours)
            limit = timedelta(hours=24)
        reason = _describe_delivery_error(exc)
        expired = self.filtered(lambda m: now >= (m.behavioral_retry_since or now) + limit)
        if expired:
            _logger.warning("behavioral_email: %s mail(s) not delivered after %s hours: %s",
                            len(expired), hours, reason)
            expired._behavioral_fail(reason, "mail_smtp")
        # one write per (attempt, first failure): a whole batch shares them
        groups = defaultdict(list)
        for mail in self - expired:
            groups[(mail.behavioral_retry_count, mail.behavioral_retry_since or now)].append(mail.id)
        next_dates = set()
        Trace = self.env["behavioral.trace"].sudo()
        for (count, since), mail_ids in groups.items():
            delay = RETRY_DELAYS[count] if count < len(RETRY_DELAYS) else RETRY_EVERY
            next_date = min(now + timedelta(minutes=delay), since + limit)
            self.browse(mail_ids).write({
                "state": "outgoing",
                "scheduled_date": next_date,
                "behavioral_retry_count": count + 1,
                "behavioral_retry_since": since,
                "failure_reason": reason,
            })
            Trace.search([("mail_mail_id_int", "in", mail_ids)]).write({"state_msg": self.env._(
                "Delivery delayed (attempt %(count)s failed: %(reason)s); next attempt at %(date)s UTC.",
                count=count + 1, reason=reason, date=fields.Datetime.to_string(next_date))})
            next_dates.add(next_date)
        if next_dates:
            _logger.info("behavioral_email: %s mail(s) not delivered, tried again from %s: %s",
                         len(self - expired), min(next_dates), reason)
            # the queue runs at the next attempt, not at its next hourly tick
            self.env.ref("mail.ir_cron_mail_scheduler_action").sudo()._trigger(at=sorted(next_dates))

    def _behavioral_fail(self, reason, failure_type):
        """Fail these mails for good, through Odoo's own post-processing."""
        self.write({"state": "exception", "failure_type": failure_type, "failure_reason": reason})
        self._postprocess_sent_message(success_pids=[], failure_reason=reason, failure_type=failure_type)

    @api.model
    def _behavioral_count_bounces(self, emails):
        """Count a bounce for these addresses on every contact that has them,
        as ``mail.thread._routing_handle_bounce`` does for a bounce email."""
        if not emails:
            return
        bl_models = self.env["ir.model"].sudo().search(
            [("is_mail_blacklist", "=", True), ("model", "!=", "mail.thread.blacklist")])
        partners = self.env["res.partner"].sudo().search([("email_normalized", "in", list(emails))])
        for model in bl_models.filtered(lambda m: m.model in self.env):
            records = self.env[model.model].sudo().search([("email_normalized", "in", list(emails))])
            for email, group in records.grouped("email_normalized").items():
                group._message_receive_bounce(email, partners.filtered(lambda p, e=email: p.email_normalized == e))
