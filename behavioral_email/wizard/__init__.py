from . import behavioral_step_test
from . import behavioral_sequence_preview
from . import behavioral_sequence_preview_line
from . import mailing_contact_import
