from . import product_alert
from . import back_in_stock
from . import price_drop
