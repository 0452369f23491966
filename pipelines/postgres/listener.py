"""A subscriber: its own LISTEN session on the primary, in a thread of the bench process.

NOTIFY reaches only sessions connected to the server the transaction committed on: the
subscribers connect to the primary, never to the replica. Each has its own connection (its
own backend, its own place in the notification queue), as separate client processes would.
A receipt is stamped with the ledger's clock the moment psycopg hands the notification over;
the span is built after the run (`spans.py`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
from psycopg import sql

from .notify import Notification

#: (subscriber, notification, received Unix ns, handled Unix ns) — called from the thread
OnNotification = Callable[[str, Notification, int, int], None]


class Listener(threading.Thread):
    def __init__(
        self,
        name: str,
        dsn: str,
        channels: list[str],
        on_notification: OnNotification,
        now_ns: Callable[[], int],
        application_name: str,
    ) -> None:
        super().__init__(name=f"pg-listener-{name}", daemon=True)
        self.sub_name = name
        self.dsn = dsn
        self.channels = channels
        self.on_notification = on_notification
        self.now_ns = now_ns
        self.application_name = application_name
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.received = 0
        self.errors: list[str] = []
        self.backend_pid: int | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True, application_name=self.application_name) as conn:
                self.backend_pid = conn.info.backend_pid
                for channel in self.channels:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                self.ready.set()
                while not self.stopping.is_set():
                    for note in conn.notifies(timeout=0.1):
                        received = self.now_ns()
                        try:
                            parsed = Notification.parse(note.payload, note.channel)
                        except ValueError as exc:
                            self.errors.append(str(exc))
                            continue
                        self.received += 1
                        self.on_notification(self.sub_name, parsed, received, self.now_ns())
        except psycopg.Error as exc:
            self.errors.append(f"{self.sub_name}: {exc}")
        finally:
            self.ready.set()  # a failed connection must not keep setup waiting

    def close(self) -> None:
        self.stopping.set()
