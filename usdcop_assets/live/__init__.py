"""The live bar process (``usdcop live``): each bar decided seconds after its publication, equal to the batch.

One long-lived process imports the code location once, keeps the session's look-backs in memory and,
from each bar's close, polls the source every second until the bar is published. Then it computes
the session's L0..L5 rows with the batch path's own pure functions (``session.compute_session``),
writes them with the batch path's atomic, idempotent writes (``store``) and records each layer in
Dagster as a materialization of today's session partition (``recorder``, the one Dagster module of
the loop). After the close the session's normal run re-materializes the day and the ``live_parity``
asset checks (``checks``) compare the rows the live process stored with the batch rows, bar for bar.

Modules: ``session`` (warm state, L0..L5 of a session), ``store`` (lake/warehouse writes, the live
journal, warm-state reads), ``loop`` (clock, polling, sleeping over nights/weekends/holidays,
outages, signals), ``parity`` (row comparison), all without Dagster; ``recorder`` and ``checks``
(Dagster), ``service`` (wiring for the CLI). Why a process and not a run per bar:
docs/decisions/0002-live-process.md.
"""
