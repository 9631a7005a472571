import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fivedocks.settings")
application = get_wsgi_application()

# Each serving process listens for the cache broadcast (a thread with its own connection);
# until it is connected the process reads the database instead of its local cache.
from fivedocks import coherence  # noqa: E402

coherence.start_listener()
