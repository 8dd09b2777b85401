"""The data contract: the `page_views` and `rerank_lists` tables (design.md, "The data contract").

Both tables are parquet, Hive-partitioned by `date` (the `date` column lives in the directory
name, not in the files). Every file carries in its schema metadata:

- ``ecomrl.schema_version``: `SCHEMA_VERSION`; readers refuse any other version;
- ``ecomrl.table``: ``page_views`` or ``rerank_lists``;
- ``ecomrl.spec``: the `LogSpec` as JSON (attribute cardinalities, action dimension, ...), so a
  reader knows the dimensions without guessing from the data.

Feedback columns are nullable: a log with clicks only (no purchase signal) is valid, and which
column is the reward is a config choice of the consumer (`RewardColumn`).
"""

from __future__ import annotations

import enum
import json

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.errors import UserError

SCHEMA_VERSION = "1"
META_VERSION = b"ecomrl.schema_version"
META_TABLE = b"ecomrl.table"
META_SPEC = b"ecomrl.spec"

PAGE_VIEWS = "page_views"
RERANK_LISTS = "rerank_lists"
# Written by ingestion (pipeline/logs/ingest.py), sharded by user id hash.
ENGINE_TRANSITIONS = "engine_transitions"
CUSTOMER_TRANSITIONS = "customer_transitions"
CUSTOMER_FEATURES = "customer_features"
QUARANTINE = "quarantine"
TABLES = (
    PAGE_VIEWS,
    RERANK_LISTS,
    ENGINE_TRANSITIONS,
    CUSTOMER_TRANSITIONS,
    CUSTOMER_FEATURES,
    QUARANTINE,
)


class CustomerAction(enum.StrEnum):
    """The customer's action a^c after a page view (paper, "Problem Description")."""

    BUY = "buy"
    TURN_PAGE = "turn_page"
    LEAVE = "leave"


class RewardColumn(enum.StrEnum):
    """Which feedback column is the engine's reward (paper: purchase = 1)."""

    PURCHASE = "purchase"
    CLICKS = "num_clicks"
    AMOUNT = "purchase_amount"


class LogSpec(BaseModel):
    """Dimensions of a log source. Defaults follow the public VirtualTaobao release."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attr_names: tuple[str, ...] = (
        "history_turnover_level",
        "purchase_power_level",
        "age_band",
        "region",
        "active_days_level",
        "brand_loyalty_level",
        "gender",
        "is_member",
        "device",
        "customer_category",
        "price_preference",
    )
    attr_cardinalities: tuple[int, ...] = (8, 8, 11, 11, 11, 11, 2, 2, 3, 18, 3)
    n_query_categories: int = Field(12, ge=1)
    dense_names: tuple[str, ...] = ("history_turnover_log", "activity_rate")
    action_dim: int = Field(27, ge=1)
    page_size: int = Field(10, ge=1)
    max_index: int = Field(9, ge=0, description="MaxIndex: the last page index a session can reach")
    scenarios: tuple[str, ...] = ("main_search", "in_shop")
    rerank_feature_dim: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _check(self) -> LogSpec:
        if len(self.attr_names) != len(self.attr_cardinalities):
            raise ValueError("attr_names and attr_cardinalities differ in length")
        if any(c < 2 for c in self.attr_cardinalities):
            raise ValueError("every attribute group needs at least 2 categories")
        if not self.dense_names:
            raise ValueError("dense_names must name at least one dense feature")
        return self

    @property
    def n_attrs(self) -> int:
        return len(self.attr_cardinalities)

    @property
    def dense_dim(self) -> int:
        return len(self.dense_names)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> LogSpec:
        return cls.model_validate(json.loads(text))


def _metadata(table: str, spec: LogSpec) -> dict[bytes, bytes]:
    return {
        META_VERSION: SCHEMA_VERSION.encode(),
        META_TABLE: table.encode(),
        META_SPEC: spec.to_json().encode(),
    }


def _customer_fields(spec: LogSpec, with_date: bool = True) -> list[pa.Field]:
    """The customer feature with its request: the part of s that GAN-SD generates. Log files
    carry `date` in their partition path; the training tables carry it as a column."""
    date = [pa.field("date", pa.string(), nullable=False)] if with_date else []
    return [
        pa.field("session_id", pa.int64(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        *date,
        pa.field("ts", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("scenario", pa.string(), nullable=False),
        pa.field("query_category", pa.int16(), nullable=False),
        # One code per attribute group (cardinalities in the spec).
        pa.field("customer_attrs", pa.list_(pa.int16(), spec.n_attrs), nullable=False),
        # Optional dense customer features: null when the source has none.
        pa.field("customer_dense", pa.list_(pa.float32(), spec.dense_dim), nullable=True),
    ]


def _feedback_fields() -> list[pa.Field]:
    """Feedback. Null means "not logged by this source", never "zero"."""
    return [
        pa.field("num_clicks", pa.int16(), nullable=True),
        pa.field("purchase", pa.bool_(), nullable=True),
        pa.field("purchase_amount", pa.float32(), nullable=True),
        pa.field("customer_action", pa.string(), nullable=False),
    ]


def page_views_schema(spec: LogSpec) -> pa.Schema:
    """One row per page view (PV) shown to a customer. Excludes the `date` partition column.

    `session_id` is unique across the whole dataset (not per day): ingestion groups by it."""
    fields = [
        *_customer_fields(spec, with_date=False),
        pa.field("page_index", pa.int16(), nullable=False),
        # The ranking weights that produced the page: the engine action a.
        pa.field("engine_action", pa.list_(pa.float32(), spec.action_dim), nullable=False),
        pa.field("item_ids", pa.list_(pa.int64(), spec.page_size), nullable=False),
        pa.field("item_prices", pa.list_(pa.float32(), spec.page_size), nullable=False),
        *_feedback_fields(),
    ]
    return pa.schema(fields, metadata=_metadata(PAGE_VIEWS, spec))


def rerank_lists_schema(spec: LogSpec) -> pa.Schema:
    """One row per re-ranking request: n candidates, the first k shown in `shown_order`.

    `click_labels` / `pay_labels` are per shown position (length k, aligned with `shown_order`).
    """
    fields = [
        pa.field("request_id", pa.int64(), nullable=False),
        pa.field("session_id", pa.int64(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("ts", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("scenario", pa.string(), nullable=False),
        pa.field("query_category", pa.int16(), nullable=False),
        pa.field("customer_attrs", pa.list_(pa.int16(), spec.n_attrs), nullable=False),
        pa.field("candidate_item_ids", pa.list_(pa.int64()), nullable=False),
        pa.field(
            "candidate_features",
            pa.list_(pa.list_(pa.float32(), spec.rerank_feature_dim)),
            nullable=False,
        ),
        pa.field("candidate_prices", pa.list_(pa.float32()), nullable=False),
        pa.field("shown_order", pa.list_(pa.int16()), nullable=False),
        pa.field("click_labels", pa.list_(pa.int8()), nullable=False),
        pa.field("pay_labels", pa.list_(pa.int8()), nullable=True),
    ]
    return pa.schema(fields, metadata=_metadata(RERANK_LISTS, spec))


def engine_transitions_schema(spec: LogSpec) -> pa.Schema:
    """The engine MDP M = <S, A, T, R, pi> as (s, a, r, s', done) rows, one per page view.

    s = (customer fields, page_index, last_clicks). The paper's T(s, a) keeps the customer when
    the customer turns the page and draws a new one otherwise, so s' shares the customer fields
    of s and differs in (next_page_index, next_last_clicks); when `done`, s' is terminal.
    `reward` is the feedback column chosen at ingestion (see the `ecomrl.reward` metadata).
    """
    fields = [
        *_customer_fields(spec),
        pa.field("page_index", pa.int16(), nullable=False),
        pa.field("last_clicks", pa.int16(), nullable=False),
        pa.field("engine_action", pa.list_(pa.float32(), spec.action_dim), nullable=False),
        pa.field("reward", pa.float32(), nullable=False),
        *_feedback_fields(),
        pa.field("next_page_index", pa.int16(), nullable=False),
        pa.field("next_last_clicks", pa.int16(), nullable=False),
        pa.field("done", pa.bool_(), nullable=False),
    ]
    return pa.schema(fields, metadata=_metadata(ENGINE_TRANSITIONS, spec))


def customer_transitions_schema(spec: LogSpec) -> pa.Schema:
    """The customer MDP M^c: s^c = <s, a, n> (customer fields, engine_action, page_index) and
    the customer's action a^c (`customer_action`), with the feedback that came with it."""
    fields = [
        *_customer_fields(spec),
        pa.field("engine_action", pa.list_(pa.float32(), spec.action_dim), nullable=False),
        pa.field("page_index", pa.int16(), nullable=False),
        *_feedback_fields(),
    ]
    return pa.schema(fields, metadata=_metadata(CUSTOMER_TRANSITIONS, spec))


def customer_features_schema(spec: LogSpec) -> pa.Schema:
    """One row per session: the customer (with request) that arrived, what GAN-SD learns (P^c).
    `time_slice` is the two-hour slice (0..11) of the session start, for per-slice simulators."""
    fields = [
        *_customer_fields(spec),
        pa.field("time_slice", pa.int8(), nullable=False),
        pa.field("num_pages", pa.int16(), nullable=False),
        pa.field("purchased", pa.bool_(), nullable=True),
    ]
    return pa.schema(fields, metadata=_metadata(CUSTOMER_FEATURES, spec))


def quarantine_schema(spec: LogSpec) -> pa.Schema:
    """Rejected input: where it came from, why, and the row itself as JSON (nothing is lost).
    `row` is the 0-based row number in `source_file`; -1 marks a whole unreadable file."""
    fields = [
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("row", pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("row_json", pa.string(), nullable=True),
    ]
    return pa.schema(fields, metadata=_metadata(QUARANTINE, spec))


SCHEMAS = {
    PAGE_VIEWS: page_views_schema,
    RERANK_LISTS: rerank_lists_schema,
    ENGINE_TRANSITIONS: engine_transitions_schema,
    CUSTOMER_TRANSITIONS: customer_transitions_schema,
    CUSTOMER_FEATURES: customer_features_schema,
    QUARANTINE: quarantine_schema,
}


class ContractError(UserError):
    """A file does not follow the data contract at file level (version, table, spec)."""


def read_contract(schema: pa.Schema, where: str) -> tuple[str, LogSpec]:
    """Return (table, spec) from a file's schema metadata, or raise `ContractError`."""
    meta = schema.metadata or {}
    version = meta.get(META_VERSION)
    if version is None:
        raise ContractError(f"{where}: no ecomrl schema version in the parquet metadata")
    if version.decode() != SCHEMA_VERSION:
        raise ContractError(
            f"{where}: schema version {version.decode()!r}, this ecomrl reads {SCHEMA_VERSION!r}"
        )
    table = meta.get(META_TABLE, b"").decode()
    if table not in TABLES:
        raise ContractError(f"{where}: unknown table {table!r} in the parquet metadata")
    try:
        spec = LogSpec.from_json(meta[META_SPEC])
    except (KeyError, ValueError) as exc:
        raise ContractError(f"{where}: missing or invalid ecomrl.spec metadata ({exc})") from exc
    return table, spec
