"""Notifications that reach people without Alertmanager (issue 14): receivers are Apprise URLs
(`notify:` in the configuration), the messages say what people can act on, and an outbox in
`state_dir` makes sure none is lost.

- params.py   the `notify:` entries (typed), transitions, the severity order, URL redaction
- config.py   their validation (called from monitor/config.py)
- model.py    the notification record and its idempotency key
- format.py   short (chat) and long (e-mail) messages, pure
- policy.py   who is told what and when: filters, rate limit, vantage, one pair per incident
- outbox.py   SQLite: written before sent, retried, kept across restarts and kill -9
- sender.py   Apprise in a bounded thread pool with deadlines
- service.py  the daemon's consumer and its delivery task
- cli.py      `dprk-monitor notify-test`
"""
