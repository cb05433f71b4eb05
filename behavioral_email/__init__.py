from . import controllers
from . import models
from . import report
from . import tools
from . import wizard


def _post_init_hook(env):
    """Stamp the carts that are already open so that detection can see them.

    Only carts touched within the longest entry window matter; older ones can
    never enroll anybody, so they are left alone.
    """
    env["sale.order"]._behavioral_init_cart_activity()
