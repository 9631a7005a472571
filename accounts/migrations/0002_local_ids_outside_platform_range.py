"""Users fivedocks creates itself (staff, via createsuperuser) get ids the platform never hands out.

The platform owns registration and its ids (a PostgreSQL `serial`: at most 2**31 - 1). fivedocks
keeps them when importing, so its own id sequence must stay out of that range: it starts at 2**40
(still an exact integer in JavaScript). Existing rows keep their ids.
"""

from django.db import migrations

LOCAL_ID_START = 2**40

FORWARD = f"""
DO $$
DECLARE next_id bigint;
BEGIN
    SELECT GREATEST(COALESCE(MAX(id), 0) + 1, {LOCAL_ID_START}) INTO next_id FROM users;
    EXECUTE format('ALTER TABLE users ALTER COLUMN id SET START WITH %s RESTART WITH %s',
                   {LOCAL_ID_START}, next_id);
END $$;
"""

BACKWARD = """
DO $$
DECLARE next_id bigint;
BEGIN
    SELECT COALESCE(MAX(id), 0) + 1 INTO next_id FROM users;
    EXECUTE format('ALTER TABLE users ALTER COLUMN id SET START WITH 1 RESTART WITH %s', next_id);
END $$;
"""


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
