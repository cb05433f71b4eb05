from . import behavioral_report_order
from . import behavioral_report
from . import behavioral_report_entrant
from . import behavioral_report_funnel  # after behavioral_report: its view is built on it
