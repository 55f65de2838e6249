"""The Dagster instance's storage: Dagster's own SQLite storage, with its event log kept connected.

Dagster's SQLite event log opens a new SQLAlchemy engine, and a new SQLite connection, for every
event it stores; SQLAlchemy's compiled statements live on the engine, so each event compiles its
INSERTs again, and closing the last connection to a WAL database checkpoints it: a backfill of
the whole history logs 1143 materializations, one after the other, after its last day has
landed. Keeping one engine per database file open, and checkpointing a run's file after each
write, which Dagster's UI needs (see `_connection`), cuts that tail to a fraction
(docs/performance.md has the profile and the figures).

Nothing else changes: the same files under the same `base_dir`, the same schema, Dagster's own
code for every query and write. An instance written with this storage reads with Dagster's
default one and back. `dagster-instance.yaml` (the DAGSTER_HOME/dagster.yaml of `make dev`,
`make demo` and the README's CLI) selects it.
"""

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from functools import partial
from typing import Any

import sqlalchemy as db
from dagster import DagsterEventType, EventLogEntry
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationPlanned,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes import ConfigurableClassData, serialize_value
from sqlalchemy.engine import Connection, Engine

# Each run has its own database file. A run writes to its own and the index, and the webserver
# reads the few it shows: keep the most recent open, not one per run ever seen by a daemon.
OPEN_DATABASES = 8
# A range's materializations per transaction: the history's 1,143 in two.
EVENT_BATCH_SIZE = 1000


class ConnectedSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log, reusing one engine (and its connections) per database file.

    A batch of events (a range's materializations) is stored in one transaction per file.
    """

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        # Re-entrant: a batch holds it while Dagster's code asks for each file's connection.
        self._engines_lock = threading.RLock()
        # During a batch: its open transactions, and each file's connection in them.
        self._batch: tuple[ExitStack, dict[str, Connection]] | None = None
        super().__init__(base_dir, inst_data)
        # Dagster hands a range's materializations to `store_event_batch` only when this is
        # set (it is read at each event); production sets it too (README). `0` turns it off.
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", str(EVENT_BATCH_SIZE))

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """A batch of events in one transaction per database file, stored whole or not at all.

        A batch of one run's materializations (a range's days) is stored as Dagster's own
        PostgreSQL storage stores it: the rows in one INSERT into the run's file and one into
        the index, their tags in one more, and each asset's entry updated with its last event
        only (Dagster's per-event path updates it once per day, overwriting the same row). Any
        other batch goes through Dagster's `store_event`, event by event. On an error nothing
        of the batch is kept, and Dagster stores the events one by one instead.
        """
        with self._engines_lock, ExitStack() as transactions:  # committed as the batch ends
            self._batch = (transactions, {})
            try:
                if _one_runs_materializations(events):
                    self._store_materializations(events)
                else:
                    for event in events:
                        self.store_event(event)
            finally:
                self._batch = None

    def _store_materializations(self, events: Sequence[EventLogEntry]) -> None:
        # The rows of Dagster's own multi-row INSERT, executed as one prepared statement for
        # many rows: SQLAlchemy compiles it once, not with a thousand rows of parameters.
        rows = [self._event_to_row(event) for event in events]
        insert = SqlEventLogStorageTable.insert()
        with self.run_connection(events[0].run_id) as connection:
            connection.execute(insert, rows)
        with self.index_transaction() as connection:
            inserted = connection.execute(
                insert.returning(SqlEventLogStorageTable.c.id, sort_by_parameter_order=True), rows
            )
            ids = [row[0] for row in inserted]
            self._store_asset_event_tags(connection, events, ids)
            last = {
                event.get_dagster_event().asset_key: (event, id_)
                for event, id_ in zip(events, ids, strict=True)
            }
            for event, id_ in last.values():
                self._store_asset_event(connection, event, id_)

    def _store_asset_check_evaluation_planned(
        self, event: EventLogEntry, event_id: int | None
    ) -> None:
        """Dagster's rows for a planned check, one per day the run targets, in one statement.

        Dagster's own builds each day's row with the whole event serialized anew and compiles
        them as one multi-row INSERT: for a history's run, 4 checks x 1,143 days took about a
        second before the first day was fetched. These are the same rows (tested), with the
        event serialized once.
        """
        planned = event.get_dagster_event().event_specific_data
        assert isinstance(planned, AssetCheckEvaluationPlanned)
        days = (
            planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        )
        row = {
            "asset_key": planned.asset_key.to_string(),
            "check_name": planned.check_name,
            "run_id": event.run_id,
            "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event": serialize_value(event),
            "evaluation_event_timestamp": self._event_insert_timestamp(event),  # type: ignore[no-untyped-call]
            "evaluation_event_storage_id": event_id,
        }
        with self.index_connection() as connection:
            connection.execute(
                AssetCheckExecutionsTable.insert(), [row | {"partition": day} for day in days]
            )

    def run_connection(self, run_id: str | None = None) -> AbstractContextManager[Connection]:
        """A connection to the run's own database, in a transaction."""
        return self._connection(str(run_id), partial(super().run_connection, run_id))

    def index_connection(self) -> AbstractContextManager[Connection]:
        """A connection to the index database (every asset event), in a transaction."""
        return self._connection(INDEX_SHARD_NAME, super().index_connection)

    @contextmanager
    def _connection(
        self, shard: str, dagster_connection: Callable[[], AbstractContextManager[Any]]
    ) -> Iterator[Connection]:
        # One at a time, as Dagster's own: its watcher thread reads while a run writes.
        with self._engines_lock:
            if self._batch is None:
                with self._transaction(shard, dagster_connection) as connection:
                    yield connection
                return
            transactions, connections = self._batch
            if shard not in connections:  # kept open, and committed, until the batch ends
                connections[shard] = transactions.enter_context(
                    self._transaction(shard, dagster_connection)
                )
            yield connections[shard]

    @contextmanager
    def _transaction(
        self, shard: str, dagster_connection: Callable[[], AbstractContextManager[Any]]
    ) -> Iterator[Connection]:
        engine = self._engines.pop(shard, None)
        if engine is None:
            with dagster_connection():
                pass  # Dagster's first connection to a file creates its tables
            engine = db.create_engine(
                self.conn_string_for_shard(shard),
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
        self._engines[shard] = engine  # the most recently used last
        while len(self._engines) > OPEN_DATABASES:
            self._engines.popitem(last=False)[1].dispose()
        with engine.connect() as connection:
            sqlite = connection.connection.driver_connection
            assert sqlite is not None  # an open connection has its driver's
            changes = sqlite.total_changes
            with connection.begin():
                yield connection
            if shard != INDEX_SHARD_NAME and sqlite.total_changes != changes:
                # Dagster's UI follows a run by watching its database file (not the
                # write-ahead log), which changes when the log is checkpointed: Dagster's
                # own storage checkpoints as it closes each connection, this one here.
                sqlite.execute("PRAGMA wal_checkpoint(PASSIVE)")

    @property
    def supports_partition_subset_in_asset_materialization_planned_events(self) -> bool:
        """One "planned" event per single-run backfill instead of one per day.

        Saves 1143 event-log writes (about 7 s) on a full-history run. Dagster documents that
        the days of a failed run may then show as missing rather than failed in the asset's
        partition bar; with dagster 1.13.27 they still show as Failed (seen in the UI). Dagster
        reads this from DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS (default off); this
        storage defaults it on, and `false` there still turns it off.
        """
        if os.getenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS") is None:
            return True
        return super().supports_partition_subset_in_asset_materialization_planned_events

    def wipe(self) -> None:
        """Dagster's wipe, which deletes the run files: their connections are closed first."""
        self._close_all()
        super().wipe()

    def dispose(self) -> None:
        """Close every connection kept open, then Dagster's own disposal."""
        self._close_all()
        super().dispose()

    def _close_all(self) -> None:
        with self._engines_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()


def _one_runs_materializations(events: Sequence[EventLogEntry]) -> bool:
    return len({event.run_id for event in events}) == 1 and all(
        event.dagster_event is not None
        and event.dagster_event.event_type == DagsterEventType.ASSET_MATERIALIZATION
        and event.dagster_event.asset_key is not None
        for event in events
    )


class ConnectedSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage under `base_dir`, with the event log above.

    Selected in dagster.yaml as `storage: custom:` with this module and class and
    `config: {base_dir: {env: DAGSTER_HOME}}`, where Dagster's default storage keeps its files.
    """

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(base_dir, inst_data)
        self._event_log_storage = ConnectedSqliteEventLogStorage(
            self._event_log_storage._base_dir  # where Dagster's own keeps the event log
        )

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Any
    ) -> "ConnectedSqliteStorage":
        """This class from dagster.yaml's config (Dagster's own would return its own class)."""
        return cls.from_local(inst_data=inst_data, **config_value)
