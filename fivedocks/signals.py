"""Signals the domain services send inside their writing transaction.

`user_data_changed(user_id=..., domain=...)` is sent by writes that bypass the ORM's own
post_save (the credit service's conditional UPDATE, the notification flag's INSERT ... ON
CONFLICT). The KV mirror listens to it (and to post_save/post_delete of the ORM-written models).
"""

from django.dispatch import Signal

user_data_changed = Signal()
