import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fivedocks.settings")
application = get_asgi_application()

from fivedocks import coherence  # noqa: E402

coherence.start_listener()  # see wsgi.py
