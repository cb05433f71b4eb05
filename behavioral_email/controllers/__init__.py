from . import account
