from . import behavioral_enrollment
from . import behavioral_trigger
