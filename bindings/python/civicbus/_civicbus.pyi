# Type stubs of the extension module civicbus._civicbus (pybind11), kept by hand beside
# bindings/python/src/*.cpp and checked against the built module by mypy's stubtest (ctest
# "python: stubtest"). JSON values (events' data, configuration, rules) are typed as _Json.
import builtins
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

# A JSON value as the module converts it: dict (str keys), list, str, int, float, bool, None.
_Json = Any
# What a route handler may return.
_RouteResult = Response | dict[str, Any] | list[Any] | str | bytes | tuple[Any, int] | None
_RouteHandler = Callable[[Request], _RouteResult]
_H = TypeVar("_H", bound=_RouteHandler)
# A custom survivorship function: the index of the surviving candidate, or None.
_Survivorship = Callable[[str, list[SurvivorCandidate]], int | None]

# The metaclass of every pybind11 class (pybind11_builtins.pybind11_type at run time).
class _Pybind11Type(type): ...

__version__: str

class Aborted(Error):
    """Raised for a civicbus status 'aborted' (code 10)."""
    code: str

class Address(metaclass=_Pybind11Type):
    """A normalised Canadian address: upper case, Canada Post's symbols, empty fields when absent.
    """
    @property
    def unit(self) -> str: ...
    @property
    def unit_designator(self) -> str: ...
    @property
    def civic_number(self) -> str: ...
    @property
    def civic_suffix(self) -> str: ...
    @property
    def street_name(self) -> str: ...
    @property
    def street_type(self) -> str: ...
    @property
    def street_type_before_name(self) -> bool: ...
    @property
    def street_direction(self) -> str: ...
    @property
    def delivery(self) -> str: ...
    @property
    def municipality(self) -> str: ...
    @property
    def province(self) -> str: ...
    @property
    def postal_code(self) -> str: ...
    @property
    def language(self) -> str: ...
    @property
    def corrections(self) -> list[str]: ...
    def street_line(self) -> str:
        """"104-2701 23RD AVE SW"."""
    def last_line(self) -> str:
        """"REGINA SK  S4S 1E5"."""
    def one_line(self) -> str:
        """Both lines joined by one space."""
    def __str__(self) -> str:
        """The one-line form."""
    def __eq__(self, other: object) -> bool:
        """Field-by-field equality."""

class AddressNormalizer(metaclass=_Pybind11Type):
    """Parses and normalises Canadian addresses (English and French) with the built-in rules or a rules document. Immutable; may be shared by threads.
    """
    def __init__(self, *, rules: dict[str, Any] | None = ..., require_civic_number: bool = ..., infer_province_from_postal_code: bool = ..., record_corrections: bool = ...) -> None:
        """A normaliser; `rules` is a document shaped like data/match/address_rules.json (default: the built-in rules).
        """
    def normalize(self, text: str) -> Address:
        """One address on one line ("104-2701 23rd Avenue S.W., Regina, Sask. S4S1E5"); raises InvalidArgument naming what is wrong.
        """
    def normalize_parts(self, street_line: str, municipality: str = ..., province: str = ..., postal_code: str = ...) -> Address:
        """An address already split into columns."""

class Alert(metaclass=_Pybind11Type):
    """An alert raised by a rule: raised → acknowledged → resolved."""
    @property
    def id(self) -> str: ...
    @property
    def rule_id(self) -> str: ...
    @property
    def device_id(self) -> str: ...
    @property
    def devices(self) -> list[str]: ...
    @property
    def metric(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def value(self) -> float: ...
    @property
    def raised_at(self) -> int: ...
    @property
    def updated_at(self) -> int: ...
    @property
    def acknowledged_by(self) -> str: ...
    @property
    def acknowledge_note(self) -> str: ...
    @property
    def resolved_by(self) -> str: ...
    @property
    def resolve_note(self) -> str: ...
    def to_dict(self) -> dict[str, Any]:
        """The alert as a dict."""

class AlreadyExists(Error):
    """Raised for a civicbus status 'already_exists' (code 3)."""
    code: str

class AttributeChange(metaclass=_Pybind11Type):
    """One attribute changed by apply()."""
    @property
    def attribute(self) -> str: ...
    @property
    def old_value(self) -> Any: ...
    @property
    def new_value(self) -> Any: ...
    @property
    def source(self) -> str: ...
    @property
    def record_id(self) -> str: ...

class AttributeValue(metaclass=_Pybind11Type):
    """A surviving value and where it came from."""
    @property
    def value(self) -> Any: ...
    @property
    def source(self) -> str: ...
    @property
    def record_id(self) -> str: ...
    @property
    def updated_at(self) -> datetime | None: ...

class AuditRecord(metaclass=_Pybind11Type):
    """One entry of the hash-chained audit log."""
    @property
    def seq(self) -> int: ...
    @property
    def at(self) -> datetime: ...
    @property
    def actor(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def detail(self) -> Any: ...
    @property
    def hash(self) -> str: ...

class AuditReport(metaclass=_Pybind11Type):
    """The result of verify_audit()."""
    @property
    def records(self) -> int: ...
    @property
    def intact(self) -> bool: ...
    @property
    def problems(self) -> list[str]: ...

class Broker(metaclass=_Pybind11Type):
    """A node's broker (Node.broker): topics, publishing, consumer groups, the schema registry, the
    dead-letter queue, PII grants and the audit log. Every call that waits for storage releases
    the GIL.
    """
    def create_topic(self, name: str, owner: str, *, description: str = ..., retention: timedelta | float = ..., retention_bytes: int = ..., sensitivity: str = ..., pii_fields: list[str] = ..., schema_subject: str = ..., actor: str = ...) -> None:
        """Creates a topic (a no-op when it exists with the same settings; AlreadyExists when the settings differ). `retention` is a timedelta or seconds (0: forever).
        """
    def update_topic(self, name: str, owner: str, *, description: str = ..., retention: timedelta | float = ..., retention_bytes: int = ..., sensitivity: str = ..., pii_fields: list[str] = ..., schema_subject: str = ..., actor: str = ...) -> None:
        """Changes an existing topic's settings (recorded in the audit log)."""
    def topic(self, name: str) -> TopicInfo:
        """A topic's settings and counts; raises NotFound."""
    def topics(self) -> list[TopicInfo]:
        """Every topic."""
    def publish(self, type: str, data: _Json = ..., *, source: str = ..., id: str | None = ..., subject: str | None = ..., partition_key: str | None = ..., time: datetime | str | float | None = ..., extensions: dict[str, Any] | None = ...) -> PublishAck:
        """Publishes an event of `type` (its topic) carrying `data` and returns once it is durable. Refused with nothing stored (InvalidArgument, NotFound...) for an unknown topic, an invalid event, an oversized one or data failing the topic's schema. `time` is a datetime or RFC 3339 text; `extensions` a dict of extension attributes.
        """
    def publish_event(self, event: dict[str, Any]) -> PublishAck:
        """Publishes a structured-mode CloudEvent given as a dict (type, source, id, data...)."""
    def subscribe(self, group: str, topics: str | list[str], handler: Callable[[Event], object], *, max_deliveries: int = ..., initial_backoff: timedelta | float = ..., max_backoff: timedelta | float = ..., backoff_multiplier: float = ..., parallelism: int = ..., max_in_flight: int = ..., start_from: str = ...) -> Subscription:
        """Joins consumer group `group` on `topics` (a pattern or a list: "permit.*",
        "property.>", exact names) and calls handler(event) for each event, on the node's worker
        threads (with the GIL). Returning acknowledges the event; raising fails this delivery: it is
        retried with backoff and moved to the DLQ after `max_deliveries` (the DLQ entry's error names
        the exception; a civicbus.Error keeps its code). A new group starts at the `start_from` end
        ("latest" or "earliest"). Returns the Subscription; keep it (it stops when dropped).
        """
    def groups(self) -> list[GroupInfo]:
        """Every consumer group with its offsets and lag."""
    def seek_group(self, group: str, position: int | datetime) -> None:
        """Moves an inactive group so that its next delivery is the first matching event at or after `position`: an offset (int) or a time (datetime).
        """
    def read(self, pattern: str, from_offset: int = ..., limit: int = ...) -> list[Event]:
        """Stored events of topics matching `pattern` from `from_offset`, PII redacted."""
    def set_compatibility(self, subject: str, mode: str, *, actor: str = ...) -> None:
        """Sets a subject's compatibility mode: BACKWARD, FORWARD, FULL, NONE or a *_TRANSITIVE one.
        """
    def register_schema(self, subject: str, schema: dict[str, Any], *, actor: str = ...) -> SchemaVersion:
        """Registers a JSON Schema (dict) for `subject`: active at once for a new subject, proposed (after the compatibility check) otherwise.
        """
    def acknowledge_schema(self, subject: str, version: int, group: str) -> SchemaVersion:
        """A consumer group accepts a proposed version."""
    def activate_schema(self, subject: str, version: int, actor: str) -> SchemaVersion:
        """Owner override: activates a version (`actor` must own a topic of the subject)."""
    def schema_versions(self, subject: str) -> list[SchemaVersion]:
        """Every version of a subject."""
    def dead_letters(self, *, id: int | None = ..., group: str = ..., topic: str = ..., dead_after: datetime | float | None = ..., dead_before: datetime | float | None = ..., error_contains: str = ..., include_replayed: bool = ..., limit: int = ...) -> list[DeadLetter]:
        """Dead letters matching the filter (empty strings: any group or topic)."""
    def replay_dead_letters(self, *, id: int | None = ..., group: str = ..., topic: str = ..., dead_after: datetime | float | None = ..., dead_before: datetime | float | None = ..., error_contains: str = ..., include_replayed: bool = ..., limit: int = ..., actor: str = ...) -> int:
        """Queues the matching dead letters for redelivery to their group; returns how many."""
    def grant_pii(self, topic: str, group: str, *, actor: str = ...) -> None:
        """Lets a consumer group see the topic's PII fields in clear."""
    def revoke_pii(self, topic: str, group: str, *, actor: str = ...) -> None:
        """Withdraws a PII grant."""
    def shred_pii(self, topic: str, *, actor: str = ...) -> None:
        """Deletes the topic's PII key: every PII value stored so far becomes unreadable."""
    def audit_records(self, from_seq: int = ..., limit: int = ...) -> list[AuditRecord]:
        """Audit log entries from `from_seq`."""
    def verify_audit(self) -> AuditReport:
        """Checks the audit chain."""
    def asyncapi(self) -> dict[str, Any]:
        """The AsyncAPI 3.0 document of every topic (dict)."""
    def run_maintenance(self) -> None:
        """Runs retention, DLQ expiry and lag gauges now."""

class Cancelled(Error):
    """Raised for a civicbus status 'cancelled' (code 11)."""
    code: str

class ComparisonParameters(metaclass=_Pybind11Type):
    """A comparison's levels."""
    @property
    def name(self) -> str: ...
    @property
    def levels(self) -> list[LevelParameters]: ...

class Connector:
    """Base class of connectors written in Python (the Airbyte/Singer protocol of
        include/civicbus/connect/connector.hpp). Set the class attributes, override the hooks,
        and add the class to a ConnectorCatalog; hubs and pipelines create one instance per use
        (the class is called with no arguments) and call the hooks from their own threads.

        Hooks: check(context) raises when the connection does not work; discover(context) returns
        the streams as dicts {"name", "fields": [{"name", "type", "nullable"}], "primary_key",
        "cursor_field"}; read(context, request, emitter) emits records with emitter.emit();
        write(context, request, records) stores a list of dicts and returns how many it wrote
        (None: all); call(context, operation, input) answers a request/response operation.
        Raising a civicbus.Error gives the caller its code; any other exception is an internal
        error naming the connector.
    """
    name: str
    title: str
    description: str
    format_source: str
    is_source: bool
    is_sink: bool
    config_schema: dict[str, Any]
    def check(self, context: ConnectorContext) -> None:
        """Tests the connection with context.config; raises when it does not work."""
    def discover(self, context: ConnectorContext) -> list[dict[str, Any]]:
        """The streams this connector offers (a list of dicts)."""
    def read(self, context: ConnectorContext, request: ReadRequest, emitter: RecordEmitter) -> None:
        """Emits the requested streams' records (sources)."""
    def write(self, context: ConnectorContext, request: WriteRequest, records: list[dict[str, Any]]) -> int | WriteResult | None:
        """Writes a batch of records (sinks); returns the number written (None: all)."""
    def call(self, context: ConnectorContext, operation: str, input: Any) -> Any:
        """Answers a request/response operation."""
    def operations(self) -> list[str]:
        """The operations call() accepts."""

class ConnectorCatalog(metaclass=_Pybind11Type):
    """The connectors a hub or pipeline can use, by name: the built-in ones and Connector subclasses added from Python. Hubs and pipelines take a copy when they open.
    """
    def __init__(self, *, builtin: bool = ...) -> None:
        """A catalog holding the built-in connectors (or none with builtin=False)."""
    def add(self, connector: type[Connector] | Callable[[], Connector]) -> None:
        """Adds a Connector subclass (or a callable returning a Connector): it is instantiated once now to read its spec. Raises AlreadyExists for a taken name, InvalidArgument for an invalid config_schema.
        """
    def __contains__(self, name: str) -> bool:
        """True when a connector of that name is in the catalog."""
    def names(self) -> list[str]:
        """The connector names, sorted."""
    def specs(self) -> list[dict[str, Any]]:
        """Every connector's spec (dicts: name, title, description, format_source, is_source, is_sink, config_schema).
        """

class ConnectorContext(metaclass=_Pybind11Type):
    """What a connector hook gets: its config (secrets resolved), a working folder and the call timeout.
    """
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def work_dir(self) -> str: ...
    @property
    def timeout(self) -> timedelta: ...
    def now(self) -> datetime:
        """The current time of the caller's clock (UTC)."""

class ConnectorHub(metaclass=_Pybind11Type):
    """Runs connections (a connector with its config) on a node: credentials in a vault sealed under
    the node's master key, cron schedules, field mapping, schema drift, retries and a circuit
    breaker. ConnectorHub(node, catalog=...) opens one on the node's database that can run
    Python connectors; Node.connectors is the node's own (built-in connectors). Syncs run on the
    calling thread without the GIL.
    """
    def __init__(self, node: Node, *, catalog: ConnectorCatalog | None = ..., data_dir: str | None = ..., misfire_grace: timedelta | float = ...) -> None:
        """Opens a hub on `node`'s database and broker with `catalog` (default: the built-in connectors); connection working folders go under `data_dir` (default <node data_dir>/connect-python). Needs the node's master key.
        """
    def add(self, connection: dict[str, Any]) -> None:
        """Adds or replaces a connection given as a dict (ConnectionOptions' JSON form: name, connector, config, streams, schedule, destination...; docs/connectors.md).
        """
    def remove(self, name: str) -> None:
        """Removes a connection."""
    def names(self) -> list[str]:
        """The connections' names."""
    def options(self, name: str) -> dict[str, Any]:
        """A connection's options as stored (dict, secrets redacted)."""
    def status(self, name: str) -> dict[str, Any]:
        """A connection's health, last runs, queue and state (dict; health is "healthy", "degraded", "down" or "paused").
        """
    def check(self, name: str) -> None:
        """Tests the connection; raises with what failed."""
    def test_sync(self, name: str, sample: int = ...) -> dict[str, Any]:
        """check + discover + a mapped sample, writing nothing (dict: ok, check, streams, sample, mapping_problems, sample_errors, drift).
        """
    def sync(self, name: str) -> SyncReport:
        """Runs a sync now, on this thread (without the GIL)."""
    def accept_schema(self, name: str) -> None:
        """Accepts a paused connection's new schema and resumes it."""
    def pause(self, name: str) -> None:
        """Pauses a connection."""
    def resume(self, name: str) -> None:
        """Resumes a paused connection."""
    def call(self, name: str, operation: str, input: _Json = ..., *, cache_key: str = ..., queue_when_down: bool = ...) -> dict[str, Any]:
        """A request/response operation of the connection's connector with retries and the breaker (dict: source "live"/"cache"/"queued", response, cached_at, queue_id).
        """
    def replay(self, name: str) -> int:
        """Replays queued calls in order; returns how many ran."""
    def start(self) -> None:
        """Runs the cron schedules on a thread of the hub."""
    def stop(self) -> None:
        """Stops the schedule thread."""
    def run_due(self) -> int:
        """Runs every connection due now, on this thread; returns how many ran."""
    def next_run(self, name: str) -> datetime:
        """When a scheduled connection runs next (UTC)."""
    def close(self) -> None:
        """Closes a hub opened from Python (idempotent)."""
    def __enter__(self) -> ConnectorHub:
        """Returns the hub."""
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> None:
        """Closes a hub opened from Python."""

class DataLoss(Error):
    """Raised for a civicbus status 'data_loss' (code 12)."""
    code: str

class Dataset(metaclass=_Pybind11Type):
    """A table of text records (from a CSV file or added row by row); empty values are missing values.
    """
    def __init__(self, columns: list[str], *, source: str = ...) -> None:
        """An empty dataset with these columns; `source` names it ("mpac", "tax")."""
    @staticmethod
    def read_csv(path: str, *, source: str = ...) -> Dataset:
        """Reads a CSV file with a header row; errors name the file, line and column."""
    @staticmethod
    def parse_csv(text: str, *, source: str = ...) -> Dataset:
        """Reads CSV text."""
    @staticmethod
    def from_records(records: list[dict[str, Any]], *, columns: list[str] | None = ..., source: str = ...) -> Dataset:
        """A dataset from dicts (columns: the first record's keys unless given; values as str)."""
    def add(self, values: Iterable[object]) -> None:
        """Appends a record (values in column order; may be shorter)."""
    def __len__(self) -> int:
        """The number of records."""
    @property
    def columns(self) -> list[str]: ...
    @property
    def source(self) -> str: ...
    def column(self, name: str) -> int:
        """The column's index, or -1."""
    def value(self, row: int, column: int | str) -> str:
        """A value by row and column (index or name)."""
    def record(self, row: int) -> dict[str, str]:
        """A record as a dict."""

class DeadLetter(metaclass=_Pybind11Type):
    """An event a consumer group gave up on after max_deliveries."""
    @property
    def id(self) -> int: ...
    @property
    def group(self) -> str: ...
    @property
    def topic(self) -> str: ...
    @property
    def offset(self) -> int: ...
    @property
    def event_id(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def payload(self) -> str: ...
    @property
    def error(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def first_failed_at(self) -> datetime: ...
    @property
    def dead_at(self) -> datetime: ...
    @property
    def replay_requested_at(self) -> datetime | None: ...
    @property
    def replayed_at(self) -> datetime | None: ...

class DeadlineExceeded(Error):
    """Raised for a civicbus status 'deadline_exceeded' (code 9)."""
    code: str

class DeviceFleet(metaclass=_Pybind11Type):
    """A node's device fleet (Node.fleet): device types and devices, groups and twins, ingestion and
    time series with rollups, alert rules and alerts, OTA rollouts. Devices, groups, rules and
    rollouts are dicts in their documented JSON forms (docs/fleet.md); times are milliseconds
    since the Unix epoch.
    """
    def register_type(self, device_type: dict[str, Any]) -> None:
        """Adds or replaces a device type ({"name", "metrics": [{"name", "unit", "min", "max"}], "expected_interval_s", "default_rules"...}).
        """
    def device_types(self) -> list[dict[str, Any]]:
        """Every device type (dicts)."""
    def provision(self, device: dict[str, Any], *, actor: str = ...) -> dict[str, Any]:
        """Provisions a device (dict: id, serial, type, location...); returns it with its certificate, key (shown once), MQTT topics and rules.
        """
    def import_devices(self, text: str, *, format: str = ..., actor: str = ...) -> dict[str, Any]:
        """Provisions devices from CSV or JSON text; bad rows are reported by line (dict: provisioned, failed, devices, errors).
        """
    def device(self, id: str) -> dict[str, Any] | None:
        """A device (dict), or None."""
    def devices(self, query: dict[str, Any] | None = ...) -> dict[str, Any]:
        """Devices matching a query dict (type, status, department, tags, bbox, circle, limit, offset): {"devices": [...], "total": n}.
        """
    def update_device(self, id: str, update: dict[str, Any], *, actor: str = ...) -> dict[str, Any] | None:
        """Changes a device's metadata (dict of the fields to change)."""
    def set_status(self, id: str, status: str, *, actor: str = ..., reason: str = ...) -> dict[str, Any] | None:
        """Moves a device to "active", "maintenance" or "decommissioned"."""
    def history(self, id: str) -> list[dict[str, Any]]:
        """A device's status changes (dicts)."""
    def decommission_where(self, query: dict[str, Any], *, actor: str = ..., reason: str = ...) -> list[str]:
        """Decommissions every device matching the query; returns their ids."""
    def create_group(self, group: dict[str, Any], *, actor: str = ...) -> dict[str, Any]:
        """Creates a static ({"name", "members"}) or query ({"name", "kind": "query", "query"}) group.
        """
    def group(self, id: str) -> dict[str, Any]:
        """A group (dict); raises NotFound."""
    def groups(self) -> list[dict[str, Any]]:
        """Every group."""
    def delete_group(self, id: str, *, actor: str = ...) -> None:
        """Deletes a group."""
    def group_members(self, id: str) -> list[str]:
        """The device ids of a group."""
    def push_config(self, device_id: str, patch: dict[str, Any], *, actor: str = ...) -> dict[str, Any]:
        """Merges `patch` into the device twin's desired state; returns the twin."""
    def push_group_config(self, group_id: str, patch: dict[str, Any], *, actor: str = ...) -> list[str]:
        """push_config for every member of a group; returns the ids updated."""
    def report_config(self, device_id: str, reported: dict[str, Any]) -> dict[str, Any]:
        """What the device reports it runs; returns the remaining delta."""
    def twin(self, device_id: str) -> dict[str, Any]:
        """The device twin: desired, reported, delta, versions."""
    def ingest(self, readings: Iterable[Reading | dict[str, Any] | tuple[Any, ...]]) -> IngestResult:
        """Validates, stores and rolls up readings (Reading objects, dicts {device_id, metric, value, time, unit} or tuples (device_id, metric, value, time_ms[, unit])) and evaluates the alert rules.
        """
    def ingest_device_json(self, device_id: str, body: dict[str, Any] | str | bytes) -> IngestResult:
        """A device JSON body (dict or text), as the HTTP route and MQTT link take it."""
    def ingest_senml(self, body: list[Any] | str | bytes, device_id: str = ...) -> IngestResult:
        """A SenML pack (list or text)."""
    def ingest_chirpstack(self, body: dict[str, Any] | str | bytes) -> IngestResult:
        """A ChirpStack v4 uplink."""
    def ingest_tts(self, body: dict[str, Any] | str | bytes) -> IngestResult:
        """A The Things Stack v3 uplink."""
    def ingest_sigfox(self, body: dict[str, Any] | str | bytes) -> IngestResult:
        """A Sigfox callback body."""
    def readings(self, device_id: str, metric: str, start: int, end: int, *, agg: str = ...) -> SeriesResult:
        """A metric's readings in [start, end] (ms): agg "raw", "5m", "1h", "1d" or ""/"auto" (the finest tier with at most 1000 points).
        """
    def latest(self, device_id: str) -> list[LatestReading]:
        """A device's latest value of each metric."""
    def add_rule(self, rule: dict[str, Any]) -> dict[str, Any]:
        """Adds an alert rule (docs/fleet.md, "Rules"); returns it with its id."""
    def put_rule(self, rule: dict[str, Any]) -> dict[str, Any]:
        """Adds or replaces a rule by id."""
    def remove_rule(self, rule_id: str) -> None:
        """Removes a rule."""
    def rules(self) -> Any:
        """Every rule (JSON form)."""
    def alerts(self, *, state: str | None = ..., active_only: bool = ..., device_id: str = ..., severity: str | None = ..., rule_id: str = ..., limit: int = ...) -> list[Alert]:
        """Alerts matching the filters, newest first."""
    def alert(self, id: str) -> Alert:
        """An alert; raises NotFound."""
    def acknowledge(self, alert_id: str, who: str, note: str = ...) -> Alert:
        """Acknowledges a raised alert (who and a note are recorded)."""
    def resolve(self, alert_id: str, who: str, note: str = ...) -> Alert:
        """Resolves an alert."""
    def on_action(self, handler: Callable[[str, str, Alert], object]) -> None:
        """handler(output, command, alert) is called where a rule with actions fires."""
    def start_rollout(self, rollout: dict[str, Any], *, actor: str = ...) -> dict[str, Any]:
        """Starts an OTA rollout (docs/fleet.md, "Rollouts")."""
    def rollout(self, id: str) -> dict[str, Any]:
        """A rollout's progress and devices."""
    def rollouts(self) -> Any:
        """Every rollout."""
    def abort_rollout(self, id: str, *, actor: str = ..., reason: str = ...) -> None:
        """Aborts a rollout."""
    def report_ota(self, device_id: str, result: dict[str, Any]) -> None:
        """A device's answer to an OTA command ({"rollout", "success", "version"})."""
    def tick(self) -> None:
        """Runs inactivity checks, rollout timeouts and retention now."""
    def flush(self) -> None:
        """Makes everything ingested so far durable."""
    @property
    def mqtt_connected(self) -> bool: ...
    @property
    def ca_certificate_pem(self) -> str: ...
    def stats(self) -> FleetStats:
        """Counts of devices, readings and alerts."""

class EnqueueReport(metaclass=_Pybind11Type):
    """What enqueue() did."""
    @property
    def added(self) -> int: ...
    @property
    def updated(self) -> int: ...
    @property
    def already_decided(self) -> int: ...

class Error(Exception):
    """A civicbus call failed. ``code`` is the stable lower-case name of the status code
        ("not_found"); ``message`` (and ``str()``) is the C++ message, which names what is wrong
        and where. Raised as the subclass of the code (``NotFound``, ``InvalidArgument``...);
        raising one of them from a handler gives the C++ side that code.
    """
    code: str
    message: str
    def __init__(self, message: str = "") -> None: ...

class Event(metaclass=_Pybind11Type):
    """An event as a consumer sees it (PII fields decrypted for groups holding a grant, "[redacted]" otherwise).
    """
    @property
    def offset(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def stored_at(self) -> datetime: ...
    @property
    def replay(self) -> bool: ...
    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def time(self) -> str: ...
    @property
    def partition_key(self) -> str: ...
    @property
    def data(self) -> Any: ...
    @property
    def document(self) -> dict[str, Any]: ...

class FailedPrecondition(Error):
    """Raised for a civicbus status 'failed_precondition' (code 4)."""
    code: str

class FieldExplanation(metaclass=_Pybind11Type):
    """One comparison's share of a pair's weight."""
    @property
    def comparison(self) -> str: ...
    @property
    def left_value(self) -> str: ...
    @property
    def right_value(self) -> str: ...
    @property
    def level(self) -> str: ...
    @property
    def m(self) -> float: ...
    @property
    def u(self) -> float: ...
    @property
    def weight(self) -> float: ...
    @property
    def tf_adjustment(self) -> float: ...

class FleetStats(metaclass=_Pybind11Type):
    """Counts of the fleet."""
    @property
    def devices(self) -> int: ...
    @property
    def readings_accepted(self) -> int: ...
    @property
    def readings_rejected(self) -> int: ...
    @property
    def active_alerts(self) -> int: ...
    @property
    def mqtt_messages(self) -> int: ...
    @property
    def edge_buffered(self) -> int: ...

class Gateway(metaclass=_Pybind11Type):
    """The API gateway: routing, authentication (API keys, JWT, HMAC, mTLS), rate limits, CORS, load
    shedding and the admin API, in front of upstreams and of routes served by Python handlers.

    Gateway(config) creates one from the `gateway` section of a node configuration (dict or YAML
    text; docs/gateway.md); start() listens. A node's gateway (Node.gateway) is already listening.
    Handlers run on the gateway's workers (with the GIL); they should not block for long.
    """
    def __init__(self, config: dict[str, Any] | str | None = ..., *, bind_address: str | None = ..., port: int | None = ..., threads: int | None = ..., log_level: str = ...) -> None:
        """Creates a gateway (not listening yet); keyword arguments override the listener's. Logs
        (one access line per request at info) go to stderr from `log_level` up ("trace",
        "debug", "info", "warn", "error" or "off")."""
    def add_route(self, path: str, handler: _RouteHandler, *, id: str | None = ..., method: str = ..., match: str | None = ..., host: str = ..., auth: list[str] = ..., groups: list[str] = ..., summary: str = ..., tags: list[str] = ..., cors: str = ..., version: str = ..., requests_per_minute: int = ..., burst: int = ..., requests_per_day: int = ..., request_schema: _Json = ..., response_schema: _Json = ...) -> None:
        """Serves `path` by handler(request) -> Response | dict | list | str | bytes |
        None. `match` is "prefix", "exact" or "template" (default: template when the path has {params},
        else prefix); `auth` lists the accepted credentials ("api_key", "jwt", "hmac", "mtls"; empty:
        public); `id` defaults to "<method>:<path>". A handler that raises answers 500, or the status
        of a civicbus.Error's code.
        """
    def route(self, path: str, *, id: str | None = ..., method: str = ..., match: str | None = ..., host: str = ..., auth: list[str] = ..., groups: list[str] = ..., summary: str = ..., tags: list[str] = ..., cors: str = ..., version: str = ..., requests_per_minute: int = ..., burst: int = ..., requests_per_day: int = ..., request_schema: _Json = ..., response_schema: _Json = ...) -> Callable[[_H], _H]:
        """A decorator form of add_route(): @gateway.route("/hello", method="GET")."""
    def start(self) -> int:
        """Listens and returns the bound port (FailedPrecondition when already listening)."""
    @property
    def port(self) -> int: ...
    def stop(self) -> None:
        """Stops listening and waits for the workers."""
    def close(self) -> None:
        """Stops and destroys a gateway created from Python (idempotent)."""
    def reload(self, config: dict[str, Any] | str) -> None:
        """Replaces routes, upstreams, consumers, CORS, versions and auth settings (routes added from Python stay); nothing changes when `config` does not validate.
        """
    def add_consumer(self, consumer: dict[str, Any], *, generate_api_key: bool = ...) -> str | None:
        """Adds or replaces a consumer given as in the configuration ({"id", "groups", "api_keys", ...}); with generate_api_key, returns a new API key (shown once).
        """
    def consumers(self) -> list[dict[str, Any]]:
        """The consumers (no secrets): dicts of id, groups, api_keys (a count), hmac_key_ids, client_id, priority_tier.
        """
    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of the routes (dict)."""
    def health(self) -> dict[str, Any]:
        """Health as the admin API serves it (dict)."""
    def metrics(self) -> dict[str, Any]:
        """Metrics as the admin API serves them (dict)."""
    def metrics_text(self) -> str:
        """Metrics in the Prometheus text format."""
    def __enter__(self) -> Gateway:
        """Returns the gateway."""
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> None:
        """Closes a gateway created from Python."""

class GoldenRecord(metaclass=_Pybind11Type):
    """The best view of an entity, attribute by attribute."""
    @property
    def entity_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def attributes(self) -> dict[str, AttributeValue]: ...
    @property
    def members(self) -> list[tuple[str, str]]: ...
    def values(self) -> dict[str, Any]:
        """The values alone (dict)."""

class GoldenRecordChange(metaclass=_Pybind11Type):
    """What one apply() changed."""
    @property
    def entity_id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def created(self) -> bool: ...
    @property
    def changed(self) -> list[AttributeChange]: ...
    @property
    def members_added(self) -> list[tuple[str, str]]: ...
    @property
    def events(self) -> list[str]: ...
    @property
    def empty(self) -> bool: ...

class GoldenRecordStore(metaclass=_Pybind11Type):
    """Golden records built from source records by survivorship rules, with provenance per attribute,
    on a node (its database; changes published on its broker) or on an SQLite file of its own
    (path=...; nothing published). ``options`` is the documented dict ({"kind", "default",
    "attributes", "domain_events", ...}); ``functions`` names the Python functions of "custom"
    rules: function(attribute, candidates) -> index of the surviving candidate, or None.
    """
    def __init__(self, options: dict[str, Any], *, node: Node | None = ..., path: str | None = ..., functions: dict[str, _Survivorship] | None = ...) -> None:
        """Opens (and migrates) the store."""
    def apply(self, entity_id: str, records: Iterable[SourceRecord | dict[str, Any]]) -> GoldenRecordChange:
        """Merges source records (SourceRecord or dicts {source, record_id, fields, updated_at}) into the entity, recomputes its attributes and publishes the change.
        """
    def get(self, entity_id: str) -> GoldenRecord:
        """The golden record; raises NotFound."""
    def entity_of(self, source: str, record_id: str) -> str | None:
        """The entity a source record belongs to, or None."""
    def members(self, entity_id: str) -> list[SourceRecord]:
        """An entity's member records as stored."""
    def publish_pending(self) -> int:
        """Publishes events left queued by earlier applies; returns how many."""
    def pending_events(self) -> int:
        """Events queued and not yet published."""
    def close(self) -> None:
        """Closes the store (idempotent)."""
    def list(self, limit: int = ..., *, after: str = ...) -> builtins.list[GoldenRecord]:
        """Golden records by entity id, after `after`."""

class GroupInfo(metaclass=_Pybind11Type):
    """A consumer group's position and backlog."""
    @property
    def group(self) -> str: ...
    @property
    def topics(self) -> list[str]: ...
    @property
    def committed_offset(self) -> int: ...
    @property
    def lag_events(self) -> int: ...
    @property
    def oldest_unacked_age(self) -> timedelta: ...
    @property
    def dlq_events(self) -> int: ...
    @property
    def active(self) -> bool: ...

class IndexMatch(metaclass=_Pybind11Type):
    """The earlier record a new one matches best."""
    @property
    def row(self) -> int: ...
    @property
    def match_weight(self) -> float: ...
    @property
    def match_probability(self) -> float: ...
    @property
    def decision(self) -> str: ...
    @property
    def deterministic_rule(self) -> str: ...

class IngestResult(metaclass=_Pybind11Type):
    """What ingest() accepted and refused."""
    @property
    def accepted(self) -> int: ...
    @property
    def rejected(self) -> list[Rejection]: ...

class Internal(Error):
    """Raised for a civicbus status 'internal' (code 14)."""
    code: str

class InvalidArgument(Error):
    """Raised for a civicbus status 'invalid_argument' (code 1)."""
    code: str

class IoError(Error):
    """Raised for a civicbus status 'io_error' (code 13)."""
    code: str

class LabelledPair(metaclass=_Pybind11Type):
    """A decided pair of record ids."""
    def __init__(self, left_id: str, right_id: str, match: bool) -> None:
        """A pair decided as the same entity (match=True) or not."""
    @property
    def left_id(self) -> str: ...
    @property
    def right_id(self) -> str: ...
    @property
    def match(self) -> bool: ...

class LatestReading(metaclass=_Pybind11Type):
    """A device's latest value of a metric."""
    @property
    def metric(self) -> str: ...
    @property
    def value(self) -> float: ...
    @property
    def unit(self) -> str: ...
    @property
    def time(self) -> int: ...

class LevelParameters(metaclass=_Pybind11Type):
    """m and u of one comparison level."""
    @property
    def label(self) -> str: ...
    @property
    def m(self) -> float: ...
    @property
    def u(self) -> float: ...

class MatchEngine(metaclass=_Pybind11Type):
    """Record linkage and deduplication by the Fellegi-Sunter model (as Splink does): blocking,
    comparison levels, m/u training by EM, match weights explained field by field, thresholds
    and clusters. Training and matching run on the engine's threads without the GIL.
    """
    def __init__(self, settings: MatchSettings | dict[str, Any]) -> None:
        """An engine from MatchSettings or a settings dict."""
    @property
    def settings(self) -> MatchSettings: ...
    def train(self, left: Dataset, right: Dataset | None = ...) -> TrainingReport:
        """Unsupervised training: u from random pairs, m and the prior by EM (right=None for deduplication).
        """
    def train_from_labels(self, left: Dataset, right: Dataset | None, labels: list[LabelledPair]) -> None:
        """Supervised training from decided pairs (the review queue's labelled())."""
    def run(self, left: Dataset, right: Dataset | None = ..., *, keep_below_review: bool = ...) -> MatchResult:
        """Blocks, compares, scores and clusters (training first when untrained)."""
    def explain(self, left: Dataset, right: Dataset | None, pairs: list[tuple[int, int]]) -> list[PairExplanation]:
        """Explains pairs of rows [(left, right), ...] field by field (needs a trained engine)."""
    def record_id(self, data: Dataset, row: int) -> str:
        """The record id of a row (the unique_id column, or the row number)."""
    def parameters(self) -> list[ComparisonParameters]:
        """The model: m/u per comparison level."""
    @property
    def prior(self) -> float: ...
    @property
    def trained(self) -> bool: ...
    def model(self) -> dict[str, Any]:
        """The model as a dict (save it; load_model() it)."""
    def load_model(self, model: dict[str, Any]) -> None:
        """Loads a model saved with model()."""

class MatchIndex(metaclass=_Pybind11Type):
    """Incremental deduplication for streams: each record added is compared with earlier ones sharing a blocking key (train the engine first).
    """
    def __init__(self, engine: MatchEngine, columns: list[str]) -> None:
        """An index scoring with `engine`'s model; `columns` name add()'s values."""
    def add(self, values: Iterable[object]) -> IndexMatch | None:
        """Adds a record; returns the earlier record it matches best (IndexMatch) or None."""
    def __len__(self) -> int:
        """Records added."""
    @property
    def compared_pairs(self) -> int: ...
    @property
    def skipped_blocks(self) -> int: ...

class MatchResult(metaclass=_Pybind11Type):
    """The pairs, decisions and clusters of a run."""
    @property
    def rules(self) -> list[RuleReport]: ...
    @property
    def pairs(self) -> list[ScoredPair]: ...
    @property
    def candidate_pairs(self) -> int: ...
    @property
    def matches(self) -> int: ...
    @property
    def reviews(self) -> int: ...
    @property
    def cluster(self) -> list[int]: ...
    @property
    def clusters(self) -> int: ...
    @property
    def training(self) -> TrainingReport: ...
    @property
    def block_seconds(self) -> float: ...
    @property
    def train_seconds(self) -> float: ...
    @property
    def score_seconds(self) -> float: ...
    @property
    def cluster_seconds(self) -> float: ...

class MatchSettings(metaclass=_Pybind11Type):
    """Match configuration (docs/match.md): link type, comparisons, blocking and deterministic rules, thresholds, training.
    """
    def __init__(self, settings: dict[str, Any]) -> None:
        """Settings from a dict of the documented shape."""
    @staticmethod
    def from_dict(settings: dict[str, Any]) -> MatchSettings:
        """The same as MatchSettings(settings)."""
    @staticmethod
    def from_json(text: str) -> MatchSettings:
        """Settings from JSON text."""
    @staticmethod
    def from_file(path: str) -> MatchSettings:
        """Settings from a YAML (or JSON) rules file; errors name the file."""
    @property
    def link_type(self) -> str: ...
    @property
    def unique_id(self) -> str: ...
    @property
    def match_threshold(self) -> float: ...
    @property
    def review_threshold(self) -> float: ...
    @property
    def threads(self) -> int: ...
    @property
    def comparisons(self) -> list[str]: ...
    def fields(self) -> list[str]:
        """Every column the settings read."""
    def validate(self) -> None:
        """Raises InvalidArgument when the settings are inconsistent."""

class Node(metaclass=_Pybind11Type):
    """A civicbus node: broker, event log, storage and, as configured, the API gateway, the device
    fleet and the connector hub, all running from the moment it is opened.

    ``config`` is a dict of the node.yaml sections (``{"node": {...}, "topics": [...],
    "gateway": {...}, "fleet": {...}, "connectors": {...}}``, values written as in the YAML file,
    see docs/CONFIG.md), YAML text, or None for the embedded defaults. ``data_dir`` overrides
    ``node.data_dir``. A data directory is used by one node at a time.

    Use it as a context manager, or call close(): the node stops its subscriptions, gateway,
    fleet and hub, and releases the data directory.
    """
    def __init__(self, config: dict[str, Any] | str | None = ..., *, data_dir: str | None = ...) -> None:
        """Opens (and starts) a node; see the class documentation."""
    @staticmethod
    def open(config: dict[str, Any] | str | None = ..., *, data_dir: str | None = ...) -> Node:
        """The same as Node(config, data_dir=...): opens and starts a node."""
    @staticmethod
    def from_file(path: str, *, data_dir: str | None = ...) -> Node:
        """Opens a node from a node.yaml file (relative paths in it are taken from the file's folder); errors name the file and line.
        """
    @property
    def name(self) -> str: ...
    @property
    def data_dir(self) -> str: ...
    @property
    def config_file(self) -> str: ...
    @property
    def broker(self) -> Broker: ...
    @property
    def gateway(self) -> Gateway | None: ...
    @property
    def fleet(self) -> DeviceFleet | None: ...
    @property
    def connectors(self) -> ConnectorHub | None: ...
    def metrics_text(self) -> str:
        """The node's metrics in the Prometheus text format."""
    def reload_gateway(self, config: dict[str, Any] | str | None = ...) -> None:
        """Replaces the gateway's routes, upstreams, consumers and auth settings with `config` (the `gateway` section as a dict or YAML text), or with the node's file again when None. Raises FailedPrecondition when the node runs no gateway.
        """
    def run(self) -> None:
        """Blocks (without the GIL) until stop() or close() is called, or the process gets SIGINT or SIGTERM (while it runs, those stop the node instead of raising KeyboardInterrupt). The node's components run whether or not run() is called.
        """
    def stop(self) -> None:
        """Makes run() return. Thread-safe and idempotent."""
    @property
    def stop_requested(self) -> bool: ...
    def close(self) -> None:
        """Stops the node: subscriptions and what was opened on it first, then the gateway, fleet, hub, broker and storage. Idempotent; later calls on the node or its components raise FailedPrecondition.
        """
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> Node:
        """Returns the node."""
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> None:
        """Closes the node."""

class NotFound(Error):
    """Raised for a civicbus status 'not_found' (code 2)."""
    code: str

class OutOfRange(Error):
    """Raised for a civicbus status 'out_of_range' (code 15)."""
    code: str

class PairExplanation(metaclass=_Pybind11Type):
    """A pair's weight explained field by field."""
    @property
    def left_id(self) -> str: ...
    @property
    def right_id(self) -> str: ...
    @property
    def prior_weight(self) -> float: ...
    @property
    def fields(self) -> list[FieldExplanation]: ...
    @property
    def match_weight(self) -> float: ...
    @property
    def match_probability(self) -> float: ...
    @property
    def deterministic_rule(self) -> str: ...
    def to_dict(self) -> dict[str, Any]:
        """The explanation as a dict."""
    def to_text(self) -> str:
        """A waterfall, one line per field."""
    def __str__(self) -> str:
        """The waterfall text."""

class PermissionDenied(Error):
    """Raised for a civicbus status 'permission_denied' (code 5)."""
    code: str

class Pipeline(metaclass=_Pybind11Type):
    """A multi-stage ETL run: a source connector's records in batches through the stages into a sink
    connector, with checkpoints (a stopped run resumes) and an error report for failing records.

    ``options`` is the pipeline file's shape as a dict (docs/pipelines.md: name, source, stages,
    sink, batch_size, error_report_dir...). ``catalog`` supplies the connectors (Python ones too);
    ``stage_types`` maps stage type names to factories called with the stage's config dict and
    returning a Stage; with ``node``, checkpoints live in the node's database and progress events
    go to its broker (otherwise in <name>.pipeline.db beside the error report);
    ``on_progress(progress)`` runs after each committed batch.
    """
    def __init__(self, options: dict[str, Any], *, catalog: ConnectorCatalog | None = ..., stage_types: dict[str, Callable[[dict[str, Any]], Stage]] | None = ..., node: Node | None = ..., on_progress: Callable[[Progress], object] | None = ...) -> None:
        """Builds the pipeline (connectors and stages)."""
    @staticmethod
    def from_file(path: str, *, catalog: ConnectorCatalog | None = ..., stage_types: dict[str, Callable[[dict[str, Any]], Stage]] | None = ..., node: Node | None = ..., on_progress: Callable[[Progress], object] | None = ...) -> Pipeline:
        """Builds a pipeline from a pipeline file (YAML; relative paths from its folder)."""
    def add_stage(self, stage: Stage) -> None:
        """Appends a Stage after the configured ones."""
    def run(self) -> RunReport:
        """Runs to the end of the source (blocking, without the GIL) and returns the report. A cancelled run raises Cancelled; running again resumes it.
        """
    def cancel(self) -> None:
        """Makes a running run() stop soon (thread-safe)."""
    @property
    def name(self) -> str: ...
    def close(self) -> None:
        """Cancels a run in progress, waits for it and releases the connectors."""

class PipelineError(metaclass=_Pybind11Type):
    """A record that failed a stage or the load."""
    @property
    def batch(self) -> int: ...
    @property
    def stage(self) -> str: ...
    @property
    def position(self) -> int: ...
    @property
    def field(self) -> str: ...
    @property
    def value(self) -> str: ...
    @property
    def reason(self) -> str: ...

class Progress(metaclass=_Pybind11Type):
    """A pipeline run's progress after a batch."""
    @property
    def rows_read(self) -> int: ...
    @property
    def rows_loaded(self) -> int: ...
    @property
    def rows_failed(self) -> int: ...
    @property
    def batches(self) -> int: ...
    @property
    def rows_per_second(self) -> float: ...
    @property
    def eta(self) -> timedelta | None: ...

class PublishAck(metaclass=_Pybind11Type):
    """What publish() answers once the event is durable."""
    @property
    def offset(self) -> int: ...
    @property
    def duplicate(self) -> bool: ...
    @property
    def id(self) -> str: ...

class ReadRequest(metaclass=_Pybind11Type):
    """What a source is asked to read."""
    @property
    def streams(self) -> list[str]: ...
    @property
    def state(self) -> Any: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def max_records(self) -> int: ...
    def stream_state(self, stream: str) -> Any:
        """The committed state of one stream, or None."""

class Reading(metaclass=_Pybind11Type):
    """One measurement of one device."""
    def __init__(self, device_id: str, metric: str, value: float, time: int, *, unit: str = ...) -> None:
        """A reading; `time` in milliseconds since the Unix epoch, `unit` "" for the type's."""
    @property
    def device_id(self) -> str: ...
    @property
    def metric(self) -> str: ...
    @property
    def value(self) -> float: ...
    @property
    def unit(self) -> str: ...
    @property
    def time(self) -> int: ...

class RecordEmitter(metaclass=_Pybind11Type):
    """How a Python source hands records on during read(); valid only during that call."""
    def emit(self, stream: str, records: Iterable[dict[str, Any]], *, positions: list[int] | None = ...) -> None:
        """Hands a batch of records (dicts) of `stream` on; `positions` are their line or row numbers (default 1, 2, ...). Raises when downstream failed or the run was cancelled: let it propagate.
        """
    def checkpoint(self, stream: str, state: _Json) -> None:
        """The state reached after the batches emitted so far for `stream` (committed once the sink acknowledged them).
        """
    def reject(self, position: int, reason: str, *, field: str = ..., value: str = ...) -> None:
        """Reports a record the source could not read; reading goes on."""
    @property
    def cancelled(self) -> bool: ...

class Rejection(metaclass=_Pybind11Type):
    """A reading refused at ingestion, and why."""
    @property
    def reading(self) -> Reading: ...
    @property
    def reason(self) -> str: ...
    @property
    def message(self) -> str: ...

class Request(metaclass=_Pybind11Type):
    """An HTTP request as a route handler gets it (a copy: it stays valid after the handler returns).
    """
    @property
    def method(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def query(self) -> str: ...
    @property
    def headers(self) -> list[tuple[str, str]]: ...
    @property
    def body(self) -> bytes: ...
    @property
    def text(self) -> str: ...
    @property
    def remote_address(self) -> str: ...
    @property
    def remote_port(self) -> int: ...
    @property
    def route_id(self) -> str: ...
    @property
    def params(self) -> dict[str, str]: ...
    @property
    def consumer_id(self) -> str: ...
    @property
    def consumer_groups(self) -> list[str]: ...
    @property
    def request_id(self) -> str: ...
    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive), or None."""
    def param(self, name: str) -> str:
        """A path parameter's value, or ""."""
    def json(self) -> Any:
        """The body parsed as JSON; raises InvalidArgument when it is not JSON."""

class ResourceExhausted(Error):
    """Raised for a civicbus status 'resource_exhausted' (code 7)."""
    code: str

class Response(metaclass=_Pybind11Type):
    """An HTTP response for a route handler to return. A handler may also return a dict or list (JSON), str, bytes, None (204) or (body, status).
    """
    def __init__(self, body: str | bytes | _Json = ..., status: int = ..., *, headers: dict[str, str] | list[tuple[str, str]] | None = ..., content_type: str | None = ...) -> None:
        """A response: `body` is str, bytes, or a JSON value (dict, list...); `headers` a dict or a list of (name, value); the Content-Type follows the body unless given.
        """
    @staticmethod
    def json(value: Any, status: int = ...) -> Response:
        """A JSON response."""
    @property
    def status(self) -> int: ...
    @status.setter
    def status(self, value: int) -> None: ...
    @property
    def reason(self) -> str: ...
    @reason.setter
    def reason(self, value: str) -> None: ...
    @property
    def headers(self) -> list[tuple[str, str]]: ...
    @headers.setter
    def headers(self, value: list[tuple[str, str]]) -> None: ...
    @property
    def body(self) -> bytes: ...
    @body.setter
    def body(self, value: Any) -> None: ...

class ReviewCounts(metaclass=_Pybind11Type):
    """Items by status."""
    @property
    def pending(self) -> int: ...
    @property
    def accepted(self) -> int: ...
    @property
    def rejected(self) -> int: ...

class ReviewItem(metaclass=_Pybind11Type):
    """A pair waiting for (or given) a clerk's decision."""
    def __init__(self, left_id: str, right_id: str, match_probability: float, *, match_weight: float = ..., explanation: dict[str, Any] | None = ...) -> None:
        """An item to enqueue (explanation: PairExplanation.to_dict())."""
    @property
    def id(self) -> int: ...
    @property
    def left_id(self) -> str: ...
    @property
    def right_id(self) -> str: ...
    @property
    def match_probability(self) -> float: ...
    @property
    def match_weight(self) -> float: ...
    @property
    def explanation(self) -> Any: ...
    @property
    def status(self) -> str: ...
    @property
    def enqueued_at(self) -> datetime: ...
    @property
    def decided_by(self) -> str: ...
    @property
    def decided_at(self) -> datetime | None: ...
    @property
    def reason(self) -> str: ...

class ReviewQueue(metaclass=_Pybind11Type):
    """The clerical review queue, on a node's database (node=...) or an SQLite file (path=...). Decisions become training labels.
    """
    def __init__(self, *, node: Node | None = ..., path: str | None = ...) -> None:
        """Opens (and migrates) the queue."""
    def enqueue(self, items: list[ReviewItem]) -> EnqueueReport:
        """Queues pairs (one transaction); decided pairs are never reopened."""
    def pending(self, limit: int = ...) -> list[ReviewItem]:
        """Pending items, most probable first."""
    def get(self, id: int) -> ReviewItem:
        """An item; raises NotFound."""
    def decide(self, id: int, accept: bool, who: str, reason: str = ...) -> ReviewItem:
        """Records a clerk's decision; raises NotFound or FailedPrecondition (already decided)."""
    def labelled(self) -> list[LabelledPair]:
        """Every decided pair (training labels for MatchEngine.train_from_labels)."""
    def counts(self) -> ReviewCounts:
        """Items by status."""
    def close(self) -> None:
        """Closes the queue (idempotent)."""

class RowError(metaclass=_Pybind11Type):
    """A record refused: where, which field, why."""
    def __init__(self, position: int, reason: str, field: str = ..., value: str = ...) -> None:
        """A row error (for WriteResult.rejected)."""
    @property
    def position(self) -> int: ...
    @property
    def field(self) -> str: ...
    @property
    def value(self) -> str: ...
    @property
    def reason(self) -> str: ...

class RuleReport(metaclass=_Pybind11Type):
    """What one blocking rule contributed."""
    @property
    def rule(self) -> str: ...
    @property
    def candidate_pairs(self) -> int: ...
    @property
    def blocks(self) -> int: ...
    @property
    def skipped_blocks(self) -> int: ...
    @property
    def skipped_pairs(self) -> int: ...

class RunReport(metaclass=_Pybind11Type):
    """What a pipeline run did."""
    @property
    def run_id(self) -> str: ...
    @property
    def resumed(self) -> bool: ...
    @property
    def resumed_after_rows(self) -> int: ...
    @property
    def rows_read(self) -> int: ...
    @property
    def rows_loaded(self) -> int: ...
    @property
    def rows_failed(self) -> int: ...
    @property
    def batches(self) -> int: ...
    @property
    def elapsed(self) -> timedelta: ...
    @property
    def error_csv_path(self) -> str: ...
    @property
    def error_json_path(self) -> str: ...
    @property
    def errors(self) -> list[PipelineError]: ...
    def success_rate(self) -> float:
        """Loaded / (loaded + failed); 1 when nothing was read."""

class SchemaVersion(metaclass=_Pybind11Type):
    """One version of a schema subject."""
    @property
    def subject(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def schema(self) -> Any: ...
    @property
    def state(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def activated_at(self) -> datetime | None: ...
    @property
    def acknowledged_by(self) -> list[str]: ...
    @property
    def waiting_for(self) -> list[str]: ...

class ScoredPair(metaclass=_Pybind11Type):
    """A candidate pair by row index (left, right)."""
    @property
    def left(self) -> int: ...
    @property
    def right(self) -> int: ...
    @property
    def match_weight(self) -> float: ...
    @property
    def match_probability(self) -> float: ...
    @property
    def pattern(self) -> int: ...
    @property
    def deterministic_rule(self) -> int: ...
    @property
    def decision(self) -> str: ...

class SeriesPoint(metaclass=_Pybind11Type):
    """A point of a series: a raw reading (count 1) or a bucket."""
    @property
    def time(self) -> int: ...
    @property
    def count(self) -> int: ...
    @property
    def sum(self) -> float: ...
    @property
    def min(self) -> float: ...
    @property
    def max(self) -> float: ...
    @property
    def avg(self) -> float: ...
    @property
    def first(self) -> float: ...
    @property
    def last(self) -> float: ...

class SeriesResult(metaclass=_Pybind11Type):
    """A device metric's readings over a range."""
    @property
    def tier(self) -> str: ...
    @property
    def points(self) -> list[SeriesPoint]: ...
    def to_dict(self) -> dict[str, Any]:
        """The HTTP API's JSON form."""

class SourceRecord(metaclass=_Pybind11Type):
    """One record of one source system about an entity."""
    def __init__(self, source: str, record_id: str, fields: dict[str, Any], *, updated_at: datetime | float | None = ...) -> None:
        """A record: its source system, its id there, its attributes (dict) and when the source last changed it.
        """
    @property
    def source(self) -> str: ...
    @property
    def record_id(self) -> str: ...
    @property
    def updated_at(self) -> datetime | None: ...
    @property
    def fields(self) -> dict[str, Any]: ...

class Stage:
    """Base class of pipeline stages written in Python. process(batch) gets a StageBatch:
        edit batch.records (a list of dicts) in place or assign a new list, and call
        batch.reject(record, reason) for a record that fails (it leaves the batch and goes to the
        run's error report with its position). Raising fails the whole run: use it for faults of
        the stage itself, never for bad records. Stages of a pipeline run one batch at a time, in
        order, so a stage may keep state across batches.
    """
    name: str
    def process(self, batch: StageBatch) -> None:
        """Processes one batch in place."""

class StageBatch(metaclass=_Pybind11Type):
    """One batch as a Python stage gets it."""
    @property
    def stream(self) -> str: ...
    @property
    def records(self) -> list[dict[str, Any]]: ...
    @records.setter
    def records(self, value: list[dict[str, Any]]) -> None: ...
    def reject(self, record: dict[str, Any] | int, reason: str, *, field: str = ..., value: str = ...) -> None:
        """Refuses a record (the dict itself, or its index in records now): it leaves the batch and goes to the error report with its position.
        """
    def __len__(self) -> int:
        """The number of records."""

class Subscription(metaclass=_Pybind11Type):
    """A running consumer group member. stop() (or leaving a `with` block) stops fetching, waits for running handlers and commits the group's offset.
    """
    @property
    def group(self) -> str: ...
    @property
    def active(self) -> bool: ...
    def stop(self) -> None:
        """Stops the member (idempotent). Must not be called from its own handler."""
    def __enter__(self) -> Subscription:
        """Returns the subscription."""
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> None:
        """Stops the member."""

class SurvivorCandidate(metaclass=_Pybind11Type):
    """A candidate value of an attribute with its provenance (for custom survivorship functions)."""
    @property
    def value(self) -> Any: ...
    @property
    def source(self) -> str: ...
    @property
    def record_id(self) -> str: ...
    @property
    def updated_at(self) -> datetime | None: ...

class SyncReport(metaclass=_Pybind11Type):
    """What one sync of a connection did."""
    @property
    def connection(self) -> str: ...
    @property
    def records_read(self) -> int: ...
    @property
    def records_written(self) -> int: ...
    @property
    def records_rejected(self) -> int: ...
    @property
    def errors(self) -> list[RowError]: ...
    @property
    def drift(self) -> list[str]: ...
    @property
    def state(self) -> Any: ...
    @property
    def elapsed(self) -> timedelta: ...

class TopicInfo(metaclass=_Pybind11Type):
    """A topic's settings and what it stores now."""
    @property
    def name(self) -> str: ...
    @property
    def owner(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def retention(self) -> timedelta: ...
    @property
    def retention_bytes(self) -> int: ...
    @property
    def sensitivity(self) -> str: ...
    @property
    def pii_fields(self) -> list[str]: ...
    @property
    def schema_subject(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def records(self) -> int: ...
    @property
    def bytes(self) -> int: ...

class TrainingReport(metaclass=_Pybind11Type):
    """What unsupervised training did."""
    @property
    def iterations(self) -> int: ...
    @property
    def converged(self) -> bool: ...
    @property
    def prior(self) -> float: ...
    @property
    def u_sample_pairs(self) -> int: ...
    @property
    def em_pairs(self) -> int: ...
    @property
    def candidate_pairs(self) -> int: ...
    @property
    def expected_matches(self) -> float: ...

class Unauthenticated(Error):
    """Raised for a civicbus status 'unauthenticated' (code 6)."""
    code: str

class Unavailable(Error):
    """Raised for a civicbus status 'unavailable' (code 8)."""
    code: str

class WriteRequest(metaclass=_Pybind11Type):
    """What a sink is asked to write."""
    @property
    def stream(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def key(self) -> list[str]: ...
    @property
    def batch_id(self) -> str: ...

class WriteResult(metaclass=_Pybind11Type):
    """What a Python sink's write() may return when it refuses some records."""
    def __init__(self, written: int, rejected: list[RowError] = ...) -> None:
        """`written` records stored, `rejected` the others with their reasons."""
    @property
    def written(self) -> int: ...
    @property
    def rejected(self) -> list[RowError]: ...

def builtin_stage_types() -> list[str]:
    """The built-in stage types (types, map_codes, validate, normalize_address, ...)."""

def damerau_levenshtein(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (adjacent transpositions count 1)."""

def date_distance_days(a: str, b: str) -> int | None:
    """|days between two dates|, or None when either is not a date."""

def days_since_epoch(date: str) -> int | None:
    """Days since 1970-01-01 of YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD, or None."""

def double_metaphone(name: str, max_length: int = ...) -> tuple[str, str]:
    """Double Metaphone: (primary, alternate) ("SMITH" → ("SM0", "XMT"))."""

def fold(text: str) -> str:
    """Text as comparators want it: upper case, accents and punctuation removed, blanks collapsed ("  Marie-Ève  O'Neil " → "MARIE EVE ONEIL").
    """

def format_duration(duration: timedelta | float) -> str:
    """The short form of a duration (timedelta or seconds): "7d", "90m", "1500ms"."""

def format_size(bytes: int) -> str:
    """The short form of a size in bytes: "1GiB", "1500B"."""

def jaro(a: str, b: str) -> float:
    """Jaro similarity in [0, 1]."""

def jaro_winkler(a: str, b: str, prefix_scale: float = ...) -> float:
    """Jaro-Winkler similarity in [0, 1]."""

def levenshtein(a: str, b: str) -> int:
    """Levenshtein distance."""

def levenshtein_similarity(a: str, b: str) -> float:
    """1 - distance / longer length."""

def levenshtein_within(a: str, b: str, limit: int) -> int:
    """The Levenshtein distance when at most `limit`, else limit + 1 (cheap on long values)."""

def library_version() -> str:
    """The version of the civicbus C++ library this module was built with ("0.1.0")."""

def name_key(name: str) -> str:
    """fold() with the words sorted ("Smith, John" → "JOHN SMITH")."""

def name_similarity(a: str, b: str) -> float:
    """Word-by-word name similarity (best pairs first, unpaired words count 0)."""

def normalize_address(text: str) -> Address:
    """Normalises one address line with the built-in rules (see AddressNormalizer)."""

def nysiis(name: str) -> str:
    """NYSIIS code ("KNIGHT" → "NAGT")."""

def parse_duration(text: str) -> timedelta:
    """Reads a duration as configuration writes it ("30s", "15m", "12h", "7d", "2w", "250ms", "1h30m" or "0") and returns it as a timedelta. Raises InvalidArgument.
    """

def parse_number(text: str) -> float | None:
    """A number written in a field ("1,234.50"), or None."""

def parse_size(text: str) -> int:
    """Reads a size ("512", "10KiB", "5MiB", "1GB") in bytes. Raises InvalidArgument."""

def qgram_similarity(a: str, b: str, q: int = ...) -> float:
    """Dice coefficient of padded q-grams."""

def relative_difference(a: float, b: float) -> float:
    """|a - b| / max(|a|, |b|)."""

def soundex(name: str) -> str:
    """American Soundex ("ROBERT" → "R163")."""

def token_set_similarity(a: str, b: str) -> float:
    """Jaccard similarity of the words (after fold)."""

def topic_matches(pattern: str, topic: str) -> bool:
    """True when a dotted topic matches a NATS-style pattern ("*" one token, ">" the rest)."""

def validate_topic_name(name: str) -> None:
    """Raises InvalidArgument unless `name` is a valid topic name (tokens of [a-z0-9_-] separated by dots).
    """
