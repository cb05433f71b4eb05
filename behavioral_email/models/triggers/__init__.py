from . import cart_abandoned
from . import order_confirmed
from . import partner_created
from . import product_viewed
from . import page_viewed
