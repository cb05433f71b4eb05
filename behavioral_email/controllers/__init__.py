from . import account
from . import events
