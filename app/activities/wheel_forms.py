"""The roulette designer's form: the switch and the rows as posted (`rows-<n>-key`, `-sort_order`,
`-colour`, `-weight`). It only parses; the rules are `app.activities.wheel_designer`'s."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, FieldList, Form, FormField, HiddenField, IntegerField, StringField

from .wheel_designer import Design, DesignRow


class WheelRowForm(Form):
    key = HiddenField()
    sort_order = IntegerField(_l("Order"))
    colour = StringField(_l("Colour"))
    weight = IntegerField(_l("Weight"))


class WheelDesignForm(FlaskForm):
    wheel_on = BooleanField(_l("Wheel on"))
    rows = FieldList(FormField(WheelRowForm), max_entries=50)

    def design(self) -> Design:
        rows = []
        for entry in self.rows:
            f = entry.form
            typed = {name: (getattr(f, name).raw_data or [""])[0] for name in ("sort_order", "weight")
                     if getattr(f, name).data is None}
            rows.append(DesignRow((f.key.data or "").strip(), f.sort_order.data, (f.colour.data or "").strip(),
                                  f.weight.data, {k: v for k, v in typed.items() if v}))
        return Design(bool(self.wheel_on.data), rows)
