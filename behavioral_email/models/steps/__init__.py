from . import email
