from . import email
from . import email_content
from . import sms
from . import webhook
from . import activity
from . import tag
from . import wait
