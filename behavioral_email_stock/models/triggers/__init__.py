from . import order_delivered
