from django.db import migrations, models


class Migration(migrations.Migration):
    """The outbox holds which key changed, not its rendered value (rendered at drain time).

    Pending rows are kept: their key still names the record to render.
    """

    dependencies = [
        ("cutover", "0002_kvoutbox"),
    ]

    operations = [
        migrations.AddField(
            model_name="kvoutbox",
            name="user_id",
            field=models.BigIntegerField(default=0),
            preserve_default=False,
        ),
        migrations.RunSQL(
            "UPDATE cutover_kv_outbox SET user_id = split_part(key, ':', 2)::bigint "
            "WHERE split_part(key, ':', 2) ~ '^[0-9]+$'",
            migrations.RunSQL.noop,
        ),
        migrations.RemoveField(model_name="kvoutbox", name="value"),
        migrations.AlterField(
            model_name="kvoutbox",
            name="created_at",
            field=models.DateTimeField(),
        ),
    ]
