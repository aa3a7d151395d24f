"""Pure consent logic: no network, no database, no clock of its own.

- :mod:`consent.codes`     enrolment codes (``ABCD-EFGH``) and the wrong-code rate limit
- :mod:`consent.keywords`  STOP, START, HJÆLP, MINE DATA and JA as whole messages
- :mod:`consent.ages`      ages, age bands and the birthdays that bring rights (10, 15, 16)
- :mod:`consent.schedule`  quiet hours, school time and check-in schedules (aware UTC in/out)
- :mod:`consent.qr`        QR codes for enrolment links

The texts these go with are in ``prompts/texts/consent.*.yaml``.
"""
