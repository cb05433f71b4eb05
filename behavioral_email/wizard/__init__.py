from . import mailing_contact_import
