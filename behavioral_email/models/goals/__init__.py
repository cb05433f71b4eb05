from . import order_placed
from . import order_product
