from . import behavioral_enrollment
from . import behavioral_sequence_step
from . import product_template
from . import stock_move
from . import triggers
