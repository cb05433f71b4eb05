from . import order_placed
from . import order_product
from . import order_again
