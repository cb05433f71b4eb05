from . import account
from . import checkout
from . import events
from . import preferences
from . import signup
