from django import forms

from credits.services import MAX_CHANGE


class CreditChangeForm(forms.Form):
    """Staff grant or adjustment; always through the credit service, always with a reason."""

    KIND_CHOICES = [
        ("bonus", "Grant (bonus)"),
        ("purchase", "Grant (purchase)"),
        ("adjustment", "Adjustment (either sign)"),
    ]
    kind = forms.ChoiceField(choices=KIND_CHOICES)
    amount = forms.IntegerField(
        min_value=-MAX_CHANGE,
        max_value=MAX_CHANGE,
        help_text="Positive to add credits; an adjustment may be negative.",
    )
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 2}))

    def clean(self):
        data = super().clean()
        amount, kind = data.get("amount"), data.get("kind")
        if amount is not None and kind in ("bonus", "purchase") and amount <= 0:
            self.add_error("amount", "A grant must be positive; use an adjustment to remove credits.")
        if amount == 0:
            self.add_error("amount", "0 credits changes nothing.")
        return data
