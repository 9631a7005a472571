"""Move the keys DRF's authtoken stored in clear into api_tokens as SHA-256, then drop its table.

The clients keep their keys (`Authorization: Token <key>` still works); the database no longer
holds a single key in clear. On a database that never had DRF's table this does nothing.
"""

from django.db import migrations

FORWARD = """
DO $$
BEGIN
    IF to_regclass('authtoken_token') IS NOT NULL THEN
        INSERT INTO api_tokens (key_hash, user_id, created)
        SELECT encode(sha256(convert_to(key, 'UTF8')), 'hex'), user_id, created FROM authtoken_token
        ON CONFLICT DO NOTHING;
        DROP TABLE authtoken_token;
        DELETE FROM django_migrations WHERE app = 'authtoken';
    END IF;
END $$;
"""


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_api_tokens")]

    # Irreversible by design: the clear keys are gone (reversing leaves the hashes in place).
    operations = [migrations.RunSQL(FORWARD, reverse_sql=migrations.RunSQL.noop)]
