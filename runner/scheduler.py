"""The cron scheduler: queues each pipeline's scheduled minutes once ever, agreed through the database; runs no step."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from croniter import croniter

from runner import database, queue, settings
from runner.database import peewee, transaction_immediate
from runner.diagnostics import DiagnosticError
from runner.models import ScheduleFire
from runner.plan import InputError, resolve_inputs
from runner.spec import Spec, load_spec_file
from runner.timestamps import format_timestamp
from runner.worker import new_worker_id

MINUTE = timedelta(minutes=1)
# A running scheduler whose tick came late (a slow database, a busy host) still fires the minutes it passed
# this recently; older ones count as missed, as if it had been down, and follow the pipeline's `catch-up`.
LATE_GRACE = timedelta(minutes=2)
log = logging.getLogger("forgeyard.scheduler")


@dataclass(frozen=True)
class Candidate:
    """A pipeline a source offers: `key` is unique across sources (ScheduleFire.pipeline), `version` changes
    whenever its text does, `load` gives its Spec (DiagnosticError / OSError when it cannot)."""

    key: str
    version: object
    load: Callable[[], Spec]
    file: Path | None = None  # recorded on the run: the pipeline's folder is where its relative paths start


Source = Callable[[], Iterable[Candidate]]


def directory_source(folder: Path) -> Source:
    """The *.yml / *.yaml files directly in `folder` (the names `POST /runs {"pipeline": …}` takes), keyed by
    their path relative to it. Registered pipelines will be a second source of the same shape."""

    def candidates() -> Iterator[Candidate]:
        paths = sorted(folder.iterdir()) if folder.is_dir() else []
        for path in paths:
            if path.suffix not in (".yml", ".yaml") or not path.is_file():
                continue
            stat = path.stat()
            yield Candidate(path.relative_to(folder).as_posix(), (stat.st_mtime_ns, stat.st_size),
                            lambda path=path: load_spec_file(path), path.resolve())

    return candidates


@dataclass(frozen=True)
class Scheduled:
    """A loaded pipeline with schedules: its Spec and its (cron, catch-up) entries."""

    spec: Spec
    entries: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Fired:
    key: str
    scheduled_at: datetime  # aware UTC
    run_id: int


def utc_clock() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """Fires every due (pipeline, minute) once: a ScheduleFire row, unique on both, is written in the
    transaction that queues the run, so racing schedulers and restarts agree without talking to each other."""

    def __init__(self, clock: Callable[[], datetime] = utc_clock, sources: Iterable[Source] | None = None,
                 scheduler_id: str | None = None) -> None:
        self.clock = clock
        self.sources = list(sources) if sources is not None else [directory_source(settings.pipelines_dir())]
        self.scheduler_id = scheduler_id or new_worker_id("scheduler")
        self._last: datetime | None = None  # the minute of the last complete tick; None until the first
        self._loaded: dict[str, tuple[object, Scheduled | None]] = {}  # key → (version, what it gave)

    def tick(self, now: datetime | None = None) -> list[Fired]:
        """One pass: queue the runs due at `now` (default: the clock). A database error propagates and the
        same minutes are tried again at the next tick; what was fired meanwhile is not fired twice."""
        now = (now or self.clock()).astimezone(UTC)
        minute = now.replace(second=0, microsecond=0)
        # On start only the current minute is on time; later, every minute since the last tick within the grace.
        since = self._last if self._last is not None else minute - MINUTE
        on_time_after = max(since, minute - LATE_GRACE)
        fired = []
        for candidate, scheduled in self._scheduled():
            due: dict[datetime, str] = {}
            for cron, catch_up in scheduled.entries:
                moments = _matches(cron, on_time_after, minute)
                if catch_up == "latest":
                    missed = _latest_match(cron, on_time_after)
                    # On start, "missed" means after the pipeline's last fire: one never fired has missed nothing.
                    floor = since if self._last is not None else _last_fire(candidate.key)
                    moments += [missed] if floor is not None and missed > floor else []
                for moment in moments:
                    due.setdefault(moment, cron)
            for moment in sorted(due):
                run_id = self._fire(candidate, scheduled.spec, due[moment], moment)
                if run_id is not None:
                    fired.append(Fired(candidate.key, moment, run_id))
        self._last = max(minute, self._last or minute)
        return fired

    def run_forever(self, stop: threading.Event) -> None:
        """Tick now and at every minute boundary until `stop` is set; a failed tick is logged, never fatal."""
        try:
            while not stop.is_set():
                try:
                    self.tick()
                except Exception:
                    log.exception("scheduler tick failed; trying again at the next minute")
                now = self.clock()
                stop.wait(60 - now.second - now.microsecond / 1e6 + 0.05)
        finally:
            database.close()

    # -- internals -------------------------------------------------------------------------------------

    def _scheduled(self) -> Iterator[tuple[Candidate, Scheduled]]:
        seen = set()
        for source in self.sources:
            for candidate in source():
                seen.add(candidate.key)
                cached = self._loaded.get(candidate.key)
                if cached is None or cached[0] != candidate.version:
                    cached = self._loaded[candidate.key] = (candidate.version, _load(candidate))
                if cached[1] is not None:
                    yield candidate, cached[1]
        for key in set(self._loaded) - seen:
            del self._loaded[key]

    def _fire(self, candidate: Candidate, spec: Spec, cron: str, moment: datetime) -> int | None:
        scheduled_at = moment.replace(tzinfo=None)
        event = {"schedule": cron, "scheduled_at": format_timestamp(scheduled_at)}
        file = {"pipeline_file": str(candidate.file)} if candidate.file else {}
        try:
            with transaction_immediate():
                fire = ScheduleFire.create(pipeline=candidate.key, scheduled_at=scheduled_at,
                                           scheduler_id=self.scheduler_id)
                run = queue.submit(spec, {}, trigger="schedule", event=event, **file)
                ScheduleFire.update(run_id=run.id).where(ScheduleFire.id == fire.id).execute()
        except peewee.IntegrityError:
            return None  # another scheduler, or this one before a restart, fired this minute
        log.info("queued run %s (%s) for %s", run.id, candidate.key, event["scheduled_at"])
        return run.id


def _load(candidate: Candidate) -> Scheduled | None:
    """The pipeline's schedules, or None (with one warning) when it has none that can fire."""
    try:
        spec = candidate.load()
    except DiagnosticError as error:
        first = error.diagnostics[0].format() if error.diagnostics else "invalid pipeline"
        log.warning("pipeline %s skipped: %s", candidate.key, first)
        return None
    except OSError as error:
        log.warning("pipeline %s skipped: cannot read it (%s)", candidate.key, error.strerror)
        return None
    entries = tuple((entry["cron"].strip(), entry.get("catch-up", "none"))
                    for entry in (spec.data["on"].get("schedule") or []))
    if not entries:
        return None  # (a cron that can never fire is a validation error: load() already refused it)
    try:
        resolve_inputs(spec.data.get("inputs") or {}, {})
    except InputError as error:
        log.warning("pipeline %s skipped: a scheduled run takes the inputs' defaults, but %s", candidate.key, error)
        return None
    return Scheduled(spec, entries)


def _last_fire(key: str) -> datetime | None:
    last = ScheduleFire.select().where(ScheduleFire.pipeline == key).order_by(ScheduleFire.scheduled_at.desc()).first()
    return last.scheduled_at.replace(tzinfo=UTC) if last else None


def _matches(cron: str, after: datetime, until: datetime) -> list[datetime]:
    """The minutes in (after, until] that `cron` matches, oldest first."""
    moments = []
    iterator = croniter(cron, after)
    moment = iterator.get_next(datetime)
    while moment <= until:
        moments.append(moment)
        moment = iterator.get_next(datetime)
    return moments


def _latest_match(cron: str, until: datetime) -> datetime:
    """The latest minute at or before `until` that `cron` matches."""
    return croniter(cron, until + MINUTE).get_prev(datetime)
