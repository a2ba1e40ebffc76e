"""The gym's own records: membership cards, coaching lesson balances, group class sessions,
bookings and class credits.

Grants (opening or renewing a card, crediting lessons, booking a seat, leaving a class credit)
are made by `app.gym.services`, each under a caller's `source_ref` (e.g. a voucher
verification id) that makes it idempotent and exactly reversible. The voucher flow calls
`services.fulfil` and `services.reverse`; the member page shows `services.member_gym_records`.
"""
