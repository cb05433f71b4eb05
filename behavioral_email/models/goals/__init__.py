from . import order_placed
