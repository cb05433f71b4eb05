from . import stock_picking
from . import triggers
