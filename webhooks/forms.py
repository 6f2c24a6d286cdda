from django import forms

from webhooks.models import Event

CHOOSABLE = [(value, label) for value, label in Event.choices if value != Event.PING]


class WebhookForm(forms.Form):
    url = forms.URLField(label="HTTPS address", max_length=500, assume_scheme="https")
    events = forms.MultipleChoiceField(choices=CHOOSABLE, widget=forms.CheckboxSelectMultiple)
    description = forms.CharField(max_length=200, required=False)
