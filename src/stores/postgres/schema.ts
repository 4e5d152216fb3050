import { MAX_REASON_LENGTH, MAX_REPORTERS } from '../../core/reducer.js';
import { SCHEMA_VERSION } from '../../core/types.js';
import type { SchemaObjects } from './names.js';
import { MAX_PLAIN_KEY_CHARS, channelOf, objectsOf, quoteIdent, quoteLiteral } from './names.js';

/*
 * The SQL a PostgresStore needs: one table (a row per breaker), a side table of batch ids, and a
 * PL/pgSQL function per store operation. The functions are a port of src/core/reducer.ts,
 * window.ts and policy.ts (the spec), as the Redis Lua is; the conformance suite runs the same
 * scenarios against both. Generated here, from one source, for `createBreakerSchema` and for
 * docs/postgres.md (a test checks the doc is up to date; `npm run build:docs` rewrites it).
 *
 * Every function takes the same leading arguments:
 *   name_    the breaker name
 *   kind_    trip kind: consecutive-failures | failures-in-window | failure-rate | custom
 *   p_       the policy, float8[]: [1] threshold, [2] ratio, [3] minimumCalls, [4] windowMs,
 *            [5] bucketMs, [6] bucketCount, [7] openMs, [8] backoffMultiplier, [9] maxOpenMs,
 *            [10] jitterRatio, [11] halfOpenMaxCalls, [12] successThreshold, [13] probeLeaseMs,
 *            [14] maxConcurrent (0: no limit), [15] concurrencyLeaseMs
 *   offset_  milliseconds added to the server's clock (0; tests move the store's time with it)
 * and returns one row (inspect: none when nothing is stored) of REPLY_COLUMNS.
 *
 * Row columns: `key` (the name, or for a name longer than 600 characters its first 600, `#` and
 * its SHA-256: a btree entry is limited to ~2.7 KB), `name`, `version` (record schema), `state`,
 * `override` (NULL for none), `generation`, `opened_at`, `open_until`, `reopens`,
 * `consecutive_failures`, `probe_successes`, `lease_seq` (so lease ids are unique per breaker),
 * `lease_ids` and `lease_expires` (parallel arrays), `slot_ids` and `slot_expires` (the
 * concurrency slots held, parallel arrays; NULL until a breaker with `maxConcurrent` takes one),
 * `buckets` (flat: index, successes, failures, slow, ignored per bucket, oldest first) and
 * `expires_at` (GC: ms of store time; NULL with an override). Columns are nullable and unchecked on purpose: a row another writer spoiled is reset
 * by the functions (and reported), never an error.
 */

/** Added to every GC expiry, as the Redis store's GC_MARGIN_MS. */
const GC_MARGIN_MS = 60_000;
/**
 * An expiry is rewritten only when it falls short, and then this far ahead: `expires_at` is
 * indexed, and an update that leaves every indexed column alone can be HOT (no index writes, the
 * new version on the same page). So a busy breaker rewrites its expiry once every five minutes.
 */
const EXPIRY_SLACK_MS = 300_000;
/** How long a batch id is remembered (as the Redis store's DEDUP_MS). */
export const BATCH_ID_MS = 60_000;
/** Rows deleted by one GC pass, per table. */
const GC_BATCH = 100;

/** The columns every function returns, in order. */
export const REPLY_COLUMNS = `o_corrupt boolean, o_stale boolean, o_now bigint, o_admitted boolean,
  o_reason text, o_retry_after bigint, o_lease text, o_state text, o_override text,
  o_generation bigint, o_open_until bigint, o_successes bigint, o_failures bigint, o_slow bigint,
  o_ignored bigint, o_consecutive bigint, o_active_probes integer, o_probe_successes integer,
  o_reopens integer, o_from text, o_to text, o_transition_generation bigint, o_override_until bigint,
  o_override_reason text, o_closed_at bigint, o_slot text, o_active_slots integer, o_below boolean,
  o_throttle_rate integer, o_throttle_at bigint`;

const LEADING = 'name_ text, kind_ text, p_ float8[], offset_ bigint';

/** Everything `schemaSql` needs: the schema is explicit, so function bodies never depend on `search_path`. */
export interface QualifiedTable {
  /** The schema the table and its functions are in, unquoted. */
  readonly schema: string;
  /** The table's name, unquoted, without the schema. */
  readonly table: string;
}

// ---- fragments shared by the functions (the Lua's common.lua) --------------------------------

const NOW = `floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint + offset_`;

const KEY = `CASE WHEN length(name_) <= ${MAX_PLAIN_KEY_CHARS} THEN name_
    ELSE left(name_, ${MAX_PLAIN_KEY_CHARS}) || '#' || encode(sha256(convert_to(name_, 'UTF8')), 'hex') END`;

/**
 * The checks of `valid` on the row's scalar columns: cheap to evaluate, and all that `peekSql`
 * reads (its admission depends on nothing else).
 */
function validScalars(a: string): string {
  return `${a}version = ${SCHEMA_VERSION}
      AND ${a}state IN ('closed', 'open', 'half-open')
      AND (${a}override IS NULL OR ${a}override IN ('forced-open', 'forced-closed', 'metrics-only'))
      AND ${a}generation >= 1 AND ${a}opened_at >= 0 AND ${a}open_until >= 0 AND ${a}reopens >= 0
      AND ${a}consecutive_failures >= 0 AND ${a}probe_successes >= 0 AND ${a}lease_seq >= 0
      AND coalesce(${a}override_until, 0) >= 0 AND coalesce(${a}closed_at, 0) >= 0 AND coalesce(length(${a}override_reason), 0) <= ${MAX_REASON_LENGTH}
      AND coalesce(${a}throttle_rate, 0) BETWEEN 0 AND 1000000 AND coalesce(${a}throttle_at, 0) >= 0`;
}

/** Whether the row `a` (an alias with a dot, or '' for bare columns) is a record this version can use. */
function valid(a: string): string {
  return `coalesce(${validScalars(a)}
      AND coalesce(cardinality(${a}reporter_ids), 0) = coalesce(cardinality(${a}reporter_buckets), 0)
      AND CASE WHEN coalesce(array_ndims(${a}lease_ids), 1) = 1 AND coalesce(array_ndims(${a}lease_expires), 1) = 1
          AND coalesce(array_ndims(${a}buckets), 1) = 1
          AND coalesce(array_ndims(${a}slot_ids), 1) = 1 AND coalesce(array_ndims(${a}slot_expires), 1) = 1
        THEN cardinality(${a}lease_ids) = cardinality(${a}lease_expires) AND cardinality(${a}buckets) % 5 = 0
          AND array_position(${a}lease_ids, NULL) IS NULL AND array_position(${a}lease_expires, NULL) IS NULL
          AND array_position(${a}buckets, NULL) IS NULL
          AND coalesce(cardinality(${a}slot_ids), 0) = coalesce(cardinality(${a}slot_expires), 0)
          AND (${a}slot_ids IS NULL OR array_position(${a}slot_ids, NULL) IS NULL)
          AND (${a}slot_expires IS NULL OR array_position(${a}slot_expires, NULL) IS NULL)
        ELSE false END, false)`;
}

/**
 * A read of what admitting a call or resetting nothing needs, without a function call (a plain
 * indexed SELECT costs about half of one). $1 is the row's key (`keyOf(name)`: computed by the
 * caller, as the SQL form costs a tenth of the read), $2 the time offset. One row always, of two
 * columns (each column costs the client a little on every call): `now_`, and `row_`, which is
 * NULL when the table holds no record for the key (none, or an expired one), '' for a row the
 * functions would repair (they report it), else `state override generation closed_at` separated
 * by spaces (override `-` for none, closed_at 0 for never).
 *
 * The check is the functions' own on the row's scalar columns; the arrays (leases, buckets,
 * slots) are left to them, as checking their shape costs another tenth of the read. What that
 * leaves: a closed row whose arrays another writer spoiled admits a call here (as the function
 * would: a reset record is closed), and the next write resets and reports it, as the function
 * would have one step earlier; the outcome of that one call is stale to the reset record.
 */
export function peekSql(table: string): string {
  return `SELECT t.now_, CASE WHEN r.key IS NULL THEN NULL
      WHEN NOT coalesce(${validScalars('r.')}, false) THEN ''
      WHEN r.expires_at <= t.now_ THEN NULL
      ELSE concat_ws(' ', r.state, coalesce(r.override, '-'), r.generation, coalesce(r.closed_at, 0)) END AS row_
  FROM (SELECT ${NOW.replace('offset_', '$2::bigint')} AS now_) AS t LEFT JOIN ${table} AS r ON r.key = $1::text`;
}

/**
 * A quorum's heartbeat ($1 reporter, $2 ttlMs, $3 time offset): marks the reporter active until
 * now + ttlMs, drops reporters gone for a minute, and answers the active ones, this one included
 * (the count reads the table as it was before the statement, so it adds itself).
 */
export function heartbeatSql(reporters: string): string {
  const now = NOW.replace('offset_', '$3::bigint');
  return `WITH t AS (SELECT ${now} AS now_),
  up AS (INSERT INTO ${reporters} AS x (id, expires_at) SELECT $1::text, now_ + $2::bigint FROM t
    ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at RETURNING 1),
  gone AS (DELETE FROM ${reporters} WHERE expires_at < (SELECT now_ FROM t) - 60000 AND id <> $1::text RETURNING 1)
  SELECT 1 + (SELECT count(*) FROM ${reporters}, t WHERE id <> $1::text AND expires_at > now_) AS active`;
}

/** Makes `r` a fresh closed record created at `now_` (reducer.ts emptyRecord, initialGeneration). */
const FRESH = `r.version := ${SCHEMA_VERSION}; r.state := 'closed'; r.override := NULL;
    r.generation := greatest(1, now_ * 100); r.opened_at := 0; r.open_until := 0; r.reopens := 0;
    r.consecutive_failures := 0; r.probe_successes := 0; r.lease_seq := 0;
    r.lease_ids := '{}'; r.lease_expires := '{}'; r.buckets := '{}';
    r.override_until := NULL; r.override_reason := NULL; r.closed_at := NULL;
    r.slot_ids := NULL; r.slot_expires := NULL; r.reporter_ids := NULL; r.reporter_buckets := NULL;
    r.throttle_rate := NULL; r.throttle_at := NULL;`;

/**
 * The GC horizon of `r` (Lua gc_ttl_ms): never before anything the record still remembers (an
 * open period, a probe lease, a concurrency slot).
 */
const NEED = `now_ + ceil(greatest(
      p_[4] + greatest(p_[7], p_[9]) * (1 + greatest(0, p_[10])) + greatest(p_[13], p_[15]),
      (greatest(r.open_until, coalesce(r.override_until, 0)) - now_) + p_[4] + greatest(p_[13], p_[15])) + ${GC_MARGIN_MS})::bigint`;

const CIRCUIT = `CASE WHEN r.override IN ('forced-open', 'forced-closed') THEN r.override ELSE r.state END`;

/** Locks the row, inserting a fresh one if there is none (a concurrent insert wins, and is locked). */
function lockOrInsert(o: SchemaObjects): string {
  return `LOOP
    SELECT * INTO r FROM ${o.table} WHERE key = k FOR UPDATE;
    EXIT WHEN FOUND;
    INSERT INTO ${o.table} AS b (key, name, version, state, override, generation, opened_at, open_until,
        reopens, consecutive_failures, probe_successes, lease_seq, lease_ids, lease_expires, buckets, expires_at)
      VALUES (k, name_, ${SCHEMA_VERSION}, 'closed', NULL, greatest(1, now_ * 100), 0, 0, 0, 0, 0, 0, '{}', '{}', '{}',
        ${NEED.replace('(greatest(r.open_until, coalesce(r.override_until, 0)) - now_)', '(0 - now_)')} + ${EXPIRY_SLACK_MS})
      ON CONFLICT (key) DO NOTHING;
  END LOOP;`;
}

/** After loading: a spoiled row is reset (and reported), an expired one starts over. */
const RESET = `IF NOT ${valid('r.')} THEN
    corrupt := true; ${FRESH} dirty := true;
  ELSIF r.expires_at IS NOT NULL AND r.expires_at <= now_ THEN
    ${FRESH} dirty := true;
  END IF;`;

/**
 * Drops probe leases and concurrency slots whose holder did not report in time (not a change worth
 * a write on its own).
 */
const EXPIRE_LEASES = `IF cardinality(r.lease_ids) > 0 THEN
    ids := '{}'; exps := '{}';
    FOR i IN 1 .. cardinality(r.lease_ids) LOOP
      IF r.lease_expires[i] > now_ THEN ids := ids || r.lease_ids[i]; exps := exps || r.lease_expires[i]; END IF;
    END LOOP;
    r.lease_ids := ids; r.lease_expires := exps;
  END IF;
  IF coalesce(cardinality(r.slot_ids), 0) > 0 THEN
    ids := '{}'; exps := '{}';
    FOR i IN 1 .. cardinality(r.slot_ids) LOOP
      IF r.slot_expires[i] > now_ THEN ids := ids || r.slot_ids[i]; exps := exps || r.slot_expires[i]; END IF;
    END LOOP;
    r.slot_ids := ids; r.slot_expires := exps;
  END IF;`;

/**
 * reducer.ts lapse: ends a timed override whose time is up, at a new generation (a forced-open
 * lapses to half-open, any other to the computed state); \`lapsed_\` holds the circuit state before.
 */
const LAPSE = `lapsed_ := NULL;
  IF r.override IS NOT NULL AND coalesce(r.override_until, 0) > 0 AND now_ >= r.override_until THEN
    lapsed_ := ${CIRCUIT};
    IF r.override = 'forced-open' THEN
      r.state := 'half-open'; r.open_until := 0; r.probe_successes := 0;
      r.lease_ids := '{}'; r.lease_expires := '{}';
    END IF;
    r.override := NULL; r.override_until := NULL; r.override_reason := NULL;
    r.generation := r.generation + CASE WHEN r.generation % 100 = 99 THEN 2 ELSE 1 END;
    dirty := true;
  END IF;`;

/** reducer.ts noteClose: a close callers see (from a state that rejected) anchors the recovery ramp. */
const NOTE_CLOSE = `IF coalesce(lapsed_, from_) NOT IN ('closed', 'forced-closed') AND (${CIRCUIT}) = 'closed' THEN
    r.closed_at := now_; dirty := true;
  END IF;`;

/** reducer.ts open: backoff on consecutive re-opens, capped, then jitter (Math.round). */
const OPEN = `IF r.state = 'half-open' THEN r.reopens := r.reopens + 1; ELSE r.reopens := 0; END IF;
      r.state := 'open'; r.generation := r.generation + CASE WHEN r.generation % 100 = 99 THEN 2 ELSE 1 END; r.opened_at := now_;
      base := least(p_[9], p_[7] * power(p_[8], r.reopens));
      r.open_until := now_ + floor(base + base * p_[10] * random_ + jitter_ + 0.5)::bigint;
      r.lease_ids := '{}'; r.lease_expires := '{}'; r.probe_successes := 0;`;

const CLOSE = `r.state := 'closed'; r.generation := r.generation + CASE WHEN r.generation % 100 = 99 THEN 2 ELSE 1 END; r.open_until := 0; r.reopens := 0;
      r.consecutive_failures := 0; r.probe_successes := 0; r.lease_ids := '{}'; r.lease_expires := '{}';
      r.buckets := '{}'; r.reporter_ids := NULL; r.reporter_buckets := NULL;`;

/** Writes the whole record; the expiry only when it falls short (see EXPIRY_SLACK_MS). */
function write(o: SchemaObjects): string {
  return `need := ${NEED};
    UPDATE ${o.table} AS b SET name = name_, version = r.version, state = r.state, override = r.override,
        generation = r.generation, opened_at = r.opened_at, open_until = r.open_until, reopens = r.reopens,
        consecutive_failures = r.consecutive_failures, probe_successes = r.probe_successes,
        lease_seq = r.lease_seq, lease_ids = r.lease_ids, lease_expires = r.lease_expires, buckets = r.buckets,
        override_until = r.override_until, override_reason = r.override_reason, closed_at = r.closed_at,
        slot_ids = r.slot_ids, slot_expires = r.slot_expires,
        reporter_ids = r.reporter_ids, reporter_buckets = r.reporter_buckets,
        throttle_rate = r.throttle_rate, throttle_at = r.throttle_at,
        expires_at = CASE WHEN r.override IS NOT NULL AND coalesce(r.override_until, 0) = 0 THEN NULL
          WHEN b.expires_at >= need THEN b.expires_at ELSE need + ${EXPIRY_SLACK_MS} END
      WHERE key = k;`;
}

/**
 * What a write ends with: counting outcomes (no transition) commits without waiting for the WAL
 * flush, so a server crash can lose the last moments of counts but never a transition (`durable`:
 * never, for an operator's write that must not come undone); the
 * transition is told to listeners (delivered at commit); and now and then, when the store asks,
 * a bounded pass deletes expired rows. SKIP LOCKED: a row in use is never waited for.
 */
function finish(o: SchemaObjects, channel: string, durable = false): string {
  return `IF lapsed_ IS NOT NULL THEN from_ := lapsed_; END IF;
  moved := from_ IS DISTINCT FROM ${CIRCUIT};
  IF moved THEN
    PERFORM pg_notify(${quoteLiteral(channel)}, json_build_object('key', k, 'hashed', k <> name_,
      'from', from_, 'to', ${CIRCUIT}, 'generation', r.generation, 'openUntil', r.open_until,
      'now', now_, 'override', coalesce(r.override, ''))::text);
    o_from := from_; o_to := ${CIRCUIT}; o_transition_generation := r.generation;${
      durable
        ? ''
        : `
  ELSE
    PERFORM set_config('synchronous_commit', 'off', true);`
    }
  END IF;
  IF gc_ THEN
    DELETE FROM ${o.table} WHERE key IN (SELECT g.key FROM ${o.table} AS g WHERE g.expires_at < now_
      ORDER BY g.expires_at LIMIT ${GC_BATCH} FOR UPDATE SKIP LOCKED);
    DELETE FROM ${o.batches} WHERE (key, id) IN (SELECT g.key, g.id FROM ${o.batches} AS g
      WHERE g.expires_at < now_ ORDER BY g.expires_at LIMIT ${GC_BATCH * 5} FOR UPDATE SKIP LOCKED);
  END IF;`;
}

/** Fills the snapshot columns from `r` at `now_` (reducer.ts snapshot; leases already expired). */
function snapshot(o: SchemaObjects): string {
  return `c := ${o.window}(r.buckets, now_, p_[5]::bigint, p_[6]::bigint);
  o_state := r.state; o_override := r.override; o_generation := r.generation; o_open_until := r.open_until;
  o_successes := c[1]; o_failures := c[2]; o_slow := c[3]; o_ignored := c[4];
  o_consecutive := r.consecutive_failures; o_active_probes := cardinality(r.lease_ids);
  o_probe_successes := r.probe_successes; o_reopens := r.reopens; o_now := now_;
  o_override_until := CASE WHEN r.override IS NULL THEN 0 ELSE coalesce(r.override_until, 0) END;
  o_override_reason := CASE WHEN r.override IS NULL THEN NULL ELSE r.override_reason END;
  o_closed_at := coalesce(r.closed_at, 0); o_active_slots := coalesce(cardinality(r.slot_ids), 0);
  o_throttle_rate := r.throttle_rate; o_throttle_at := coalesce(r.throttle_at, 0);`;
}

function declarations(o: SchemaObjects): string {
  return `k text := ${KEY};
  now_ bigint := ${NOW};
  r ${o.table}%ROWTYPE;
  corrupt boolean := false;
  dirty boolean := false;
  moved boolean := false;
  from_ text;
  c bigint[];
  ids text[];
  exps bigint[];
  need bigint;
  lapsed_ text;`;
}

const DEFAULTS = `o_corrupt := false; o_stale := false; o_admitted := false; o_retry_after := 0; o_below := false;`;

// ---- the SQL ----------------------------------------------------------------------------------

/** The whole schema for one table, idempotent (`IF NOT EXISTS`, `CREATE OR REPLACE`). */
export function schemaSql(name: QualifiedTable): string {
  const o = objectsOf(name);
  const channel = channelOf(name.schema, name.table);
  const index = (suffix: string): string => quoteIdent(`${name.table}${suffix}`);
  return `-- circuitry PostgresStore schema (record schema ${SCHEMA_VERSION}) for ${o.table}.
-- Generated by src/stores/postgres/schema.ts; createBreakerSchema() runs it under an advisory lock.

-- One row per breaker. fillfactor 70 leaves room on each page, so the frequent updates of a hot
-- breaker are HOT (heap-only: no index writes, pruned without a vacuum).
CREATE TABLE IF NOT EXISTS ${o.table} (
  key text COLLATE "C" PRIMARY KEY,
  name text NOT NULL,
  version smallint,
  state text,
  override text,
  generation bigint,
  opened_at bigint,
  open_until bigint,
  reopens integer,
  consecutive_failures bigint,
  probe_successes integer,
  lease_seq bigint,
  lease_ids text[],
  lease_expires bigint[],
  buckets bigint[],
  expires_at bigint,
  override_until bigint,
  override_reason text,
  closed_at bigint,
  slot_ids text[],
  slot_expires bigint[],
  reporter_ids text[],
  reporter_buckets bigint[],
  throttle_rate integer,
  throttle_at bigint
) WITH (fillfactor = 70);
-- Added by later versions (timed overrides, the recovery ramp, concurrency limits): a table made
-- before gets them here.
ALTER TABLE ${o.table} ADD COLUMN IF NOT EXISTS override_until bigint;
ALTER TABLE ${o.table} ADD COLUMN IF NOT EXISTS override_reason text;
ALTER TABLE ${o.table} ADD COLUMN IF NOT EXISTS closed_at bigint;
ALTER TABLE ${o.table} ADD COLUMN IF NOT EXISTS slot_ids text[];
ALTER TABLE ${o.table} ADD COLUMN IF NOT EXISTS slot_expires bigint[];
ALTER TABLE ${o.table} ADD COLUMN IF NOT EXISTS reporter_ids text[];
ALTER TABLE ${o.table} ADD COLUMN IF NOT EXISTS reporter_buckets bigint[];
ALTER TABLE ${o.table} ADD COLUMN IF NOT EXISTS throttle_rate integer;
ALTER TABLE ${o.table} ADD COLUMN IF NOT EXISTS throttle_at bigint;
CREATE INDEX IF NOT EXISTS ${index('_expires_at')} ON ${o.table} (expires_at) WHERE expires_at IS NOT NULL;

-- Batch ids seen in the last ${BATCH_ID_MS / 1000} s, so a batch re-sent after a lost reply is counted once.
CREATE TABLE IF NOT EXISTS ${o.batches} (
  key text COLLATE "C" NOT NULL,
  id text NOT NULL,
  expires_at bigint NOT NULL,
  PRIMARY KEY (key, id)
);
CREATE INDEX IF NOT EXISTS ${index('_batches_expires_at')} ON ${o.batches} (expires_at);

-- Active reporters (a quorum's heartbeat): one row per factory, until it stops counting.
CREATE TABLE IF NOT EXISTS ${o.reporters} (
  id text COLLATE "C" PRIMARY KEY,
  expires_at bigint NOT NULL
);

-- Functions made by an earlier version answer fewer columns (or take fewer arguments): they are
-- dropped, to be made again below.
DO $do$
DECLARE f regprocedure;
BEGIN
  FOR f IN SELECT p.oid::regprocedure FROM pg_proc AS p
    WHERE p.pronamespace = (SELECT n.oid FROM pg_namespace AS n WHERE n.nspname = ${quoteLiteral(name.schema)})
      AND p.proname IN (${['_acquire', '_record', '_inspect', '_force', '_reset'].map((suffix) => quoteLiteral(`${name.table}${suffix}`)).join(', ')})
      AND (pg_get_function_result(p.oid) NOT LIKE '%o_throttle_at%'
        OR (p.proname = ${quoteLiteral(`${name.table}_force`)} AND p.pronargs <> 9))
  LOOP
    EXECUTE 'DROP FUNCTION ' || f;
  END LOOP;
END $do$;

-- The NOTIFY channel transitions are sent on.
CREATE OR REPLACE FUNCTION ${o.channelFunction}() RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT ${quoteLiteral(channel)}::text $$;

-- Sums the buckets inside the window ending at now_, or at the newest bucket if later (window.ts
-- windowCounts): [successes, failures, slow, ignored].
CREATE OR REPLACE FUNCTION ${o.window}(buckets bigint[], now_ bigint, bucket_ms bigint, bucket_count bigint)
RETURNS bigint[] LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  n integer := coalesce(cardinality(buckets), 0) / 5;
  newest bigint := now_ / bucket_ms;
  c bigint[] := ARRAY[0, 0, 0, 0]::bigint[];
BEGIN
  IF n > 0 AND buckets[(n - 1) * 5 + 1] > newest THEN newest := buckets[(n - 1) * 5 + 1]; END IF;
  FOR i IN 0 .. n - 1 LOOP
    IF buckets[i * 5 + 1] >= newest - bucket_count + 1 THEN
      c[1] := c[1] + buckets[i * 5 + 2]; c[2] := c[2] + buckets[i * 5 + 3];
      c[3] := c[3] + buckets[i * 5 + 4]; c[4] := c[4] + buckets[i * 5 + 5];
    END IF;
  END LOOP;
  RETURN c;
END $$;

-- Adds outcomes to the bucket counting at now_ (window.ts currentBucket): the newest bucket if
-- the clock is behind it, else a new one, dropping those out of the window (at most bucket_count).
CREATE OR REPLACE FUNCTION ${o.add}(buckets bigint[], now_ bigint, bucket_ms bigint, bucket_count bigint,
  s bigint, f bigint, sl bigint, ig bigint)
RETURNS bigint[] LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  n integer := coalesce(cardinality(buckets), 0) / 5;
  idx bigint := now_ / bucket_ms;
  j integer;
  drop_ integer := 0;
BEGIN
  IF n > 0 AND buckets[(n - 1) * 5 + 1] >= idx THEN
    j := (n - 1) * 5;
    buckets[j + 2] := buckets[j + 2] + s; buckets[j + 3] := buckets[j + 3] + f;
    buckets[j + 4] := buckets[j + 4] + sl; buckets[j + 5] := buckets[j + 5] + ig;
    RETURN buckets;
  END IF;
  WHILE drop_ < n AND (buckets[drop_ * 5 + 1] < idx - bucket_count + 1 OR n - drop_ >= bucket_count) LOOP
    drop_ := drop_ + 1;
  END LOOP;
  RETURN coalesce(buckets[drop_ * 5 + 1 : n * 5], '{}') || ARRAY[idx, s, f, sl, ig];
END $$;

-- acquire (reducer.ts acquire): admits, moves an open breaker whose period ended to half-open
-- (reported once), hands out probe leases up to halfOpenMaxCalls and, with a concurrency limit
-- (p_[14] > 0) and no override, a slot to every call it admits (or rejects with
-- concurrency-limit when they are all taken). A first pass reads without a lock and answers
-- whatever needs no write (closed without a limit, open, half-open full, every slot taken); only
-- a call that changes the row locks it and decides again.
CREATE OR REPLACE FUNCTION ${o.acquire}(${LEADING}, gc_ boolean)
RETURNS TABLE (${REPLY_COLUMNS})
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  ${declarations(o)}
  soonest bigint;
  limited boolean;
  full_ boolean;
BEGIN
  FOR pass IN 1 .. 2 LOOP
    ${DEFAULTS}
    corrupt := false; dirty := false; o_lease := NULL; o_slot := NULL; o_reason := NULL;
    IF pass = 1 THEN
      SELECT * INTO r FROM ${o.table} WHERE key = k;
      -- No row (or an expired one): closed, admitted under generation 0 (reducer.ts NO_RECORD)
      -- without a write, so a tenant that never failed costs no row. A slot needs a row: it is
      -- made in the locked pass.
      IF (NOT FOUND OR (${valid('r.')} AND r.expires_at <= now_)) AND p_[14] > 0 THEN
        CONTINUE;
      ELSIF NOT FOUND OR (${valid('r.')} AND r.expires_at <= now_) THEN
        o_admitted := true; o_now := now_; o_state := 'closed'; o_generation := 0; o_open_until := 0;
        o_closed_at := 0;
        RETURN NEXT;
        RETURN;
      END IF;
      CONTINUE WHEN NOT ${valid('r.')};
    ELSE
      ${lockOrInsert(o)}
      ${RESET}
    END IF;
    ${EXPIRE_LEASES}
    ${LAPSE}
    from_ := ${CIRCUIT};
    -- A breaker with an override does not limit concurrency (reducer.ts acquire).
    limited := p_[14] > 0 AND r.override IS NULL;
    full_ := limited AND coalesce(cardinality(r.slot_ids), 0) >= p_[14];
    IF full_ THEN
      SELECT min(e) INTO soonest FROM unnest(r.slot_expires) AS e;
    END IF;
    IF r.override = 'forced-open' THEN
      o_reason := 'forced-open';
      o_retry_after := CASE WHEN coalesce(r.override_until, 0) > 0 THEN greatest(1, r.override_until - now_)
        ELSE p_[7]::bigint END;
    ELSIF r.override = 'forced-closed' OR r.state = 'closed' THEN
      IF full_ THEN
        o_reason := 'concurrency-limit'; o_retry_after := greatest(1, soonest - now_);
      ELSE
        o_admitted := true;
      END IF;
    ELSIF r.state = 'open' AND now_ < r.open_until THEN
      IF r.override = 'metrics-only' THEN o_admitted := true;
      ELSE o_reason := 'open'; o_retry_after := r.open_until - now_; END IF;
    ELSE
      IF r.state = 'open' THEN
        r.state := 'half-open'; r.generation := r.generation + CASE WHEN r.generation % 100 = 99 THEN 2 ELSE 1 END; r.open_until := 0;
        r.probe_successes := 0; r.lease_ids := '{}'; r.lease_expires := '{}';
        dirty := true;
      END IF;
      IF cardinality(r.lease_ids) < p_[11] AND full_ THEN
        o_reason := 'concurrency-limit'; o_retry_after := greatest(1, soonest - now_);
      ELSIF cardinality(r.lease_ids) < p_[11] THEN
        r.lease_seq := r.lease_seq + 1;
        o_lease := now_::text || '-' || r.lease_seq::text;
        r.lease_ids := r.lease_ids || o_lease; r.lease_expires := r.lease_expires || (now_ + p_[13]::bigint);
        o_admitted := true; dirty := true;
      ELSIF r.override = 'metrics-only' THEN
        o_admitted := true;
      ELSE
        SELECT min(e) INTO soonest FROM unnest(r.lease_expires) AS e;
        o_reason := 'half-open-full';
        -- halfOpenMaxCalls < 1 leaves no lease to wait for (the reducer's Infinity): say "soon".
        o_retry_after := CASE WHEN soonest IS NULL THEN p_[13]::bigint ELSE greatest(1, soonest - now_) END;
      END IF;
    END IF;
    IF o_admitted AND limited THEN
      -- The probe's lease id names its slot too (they are kept apart).
      IF o_lease IS NULL THEN
        r.lease_seq := r.lease_seq + 1;
        o_slot := now_::text || '-' || r.lease_seq::text;
      ELSE
        o_slot := o_lease;
      END IF;
      r.slot_ids := coalesce(r.slot_ids, '{}') || o_slot;
      r.slot_expires := coalesce(r.slot_expires, '{}') || (now_ + p_[15]::bigint);
      dirty := true;
    END IF;
    CONTINUE WHEN dirty AND pass = 1;
    IF dirty THEN ${write(o)} END IF;
    moved := from_ IS DISTINCT FROM ${CIRCUIT};
    ${finish(o, channel)}
    o_corrupt := corrupt; o_now := now_; o_state := r.state; o_override := r.override;
    o_generation := r.generation; o_open_until := r.open_until; o_closed_at := coalesce(r.closed_at, 0);
    RETURN NEXT;
    RETURN;
  END LOOP;
END $$;

-- record (reducer.ts record): outcomes of calls admitted under generation_. A batch from another
-- generation, or under forced-closed, changes nothing (stale); so does a batch whose id was seen
-- in the last ${BATCH_ID_MS / 1000} s (a re-send of a write whose reply was lost).
CREATE OR REPLACE FUNCTION ${o.record}(${LEADING}, gc_ boolean,
  generation_ bigint, successes_ bigint, failures_ bigint, trailing_ bigint, slow_ bigint, ignored_ bigint,
  trip_ boolean, random_ float8, jitter_ float8, batch_ text, probe_leases_ text[], probe_outcomes_ text[],
  slots_ text[], reporter_ text, quorum_ bigint, throttle_ integer)
RETURNS TABLE (${REPLY_COLUMNS})
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  ${declarations(o)}
  base float8;
  failed boolean := false;
  quiet boolean;
  bare boolean;
  releases boolean := coalesce(cardinality(slots_), 0) > 0;
  at integer;
  newest_ bigint;
  reporters_ integer := 0;
BEGIN
  ${DEFAULTS}
  -- reducer.ts resetsOnly: under a count policy, a batch of successes or ignored calls without
  -- failures only resets the run of failures. Read first without a lock: with no row, or no run
  -- to reset, nothing is written (and no row made).
  quiet := kind_ IN ('consecutive-failures', 'failures-in-window') AND failures_ = 0 AND NOT trip_
    AND coalesce(cardinality(probe_leases_), 0) = 0 AND successes_ + slow_ + ignored_ > 0;
  -- A batch that only gives back concurrency slots.
  bare := releases AND successes_ + failures_ + slow_ + ignored_ = 0 AND NOT trip_
    AND coalesce(cardinality(probe_leases_), 0) = 0;
  IF releases AND (quiet OR bare) THEN
    -- Giving slots back is a write, whatever else the batch does; but with no row (or an expired
    -- one) there is nothing to give back, and no row is made for it.
    SELECT * INTO r FROM ${o.table} WHERE key = k FOR UPDATE;
    IF NOT FOUND OR NOT ${valid('r.')} OR r.expires_at <= now_ THEN
      ${FRESH}
      ${snapshot(o)}
      o_generation := 0;
      RETURN NEXT;
      RETURN;
    END IF;
  ELSIF quiet THEN
    SELECT * INTO r FROM ${o.table} WHERE key = k;
    IF NOT FOUND OR NOT ${valid('r.')} OR r.expires_at <= now_ THEN
      ${FRESH}
      ${snapshot(o)}
      o_generation := 0;
      RETURN NEXT;
      RETURN;
    END IF;
    -- (A timed override whose time is up lapses in the locked path below: a write, and a transition.)
    IF (r.consecutive_failures = 0 OR successes_ = 0 OR r.state <> 'closed')
        AND NOT (r.override IS NOT NULL AND coalesce(r.override_until, 0) > 0 AND now_ >= r.override_until) THEN
      ${EXPIRE_LEASES}
      o_stale := NOT (generation_ = r.generation OR (generation_ = 0 AND r.state = 'closed'
        AND r.override IS NULL AND r.generation % 100 = 0)) OR r.override = 'forced-closed';
      ${snapshot(o)}
      RETURN NEXT;
      RETURN;
    END IF;
  END IF;
  ${lockOrInsert(o)}
  ${RESET}
  ${EXPIRE_LEASES}
  -- Concurrency slots go back whatever the generation (a stale batch, a re-send included).
  IF releases AND coalesce(cardinality(r.slot_ids), 0) > 0 THEN
    ids := '{}'; exps := '{}';
    FOR i IN 1 .. cardinality(r.slot_ids) LOOP
      IF NOT (r.slot_ids[i] = ANY (slots_)) THEN ids := ids || r.slot_ids[i]; exps := exps || r.slot_expires[i]; END IF;
    END LOOP;
    IF cardinality(ids) < cardinality(r.slot_ids) THEN dirty := true; END IF;
    r.slot_ids := ids; r.slot_expires := exps;
  END IF;
  ${LAPSE}
  from_ := ${CIRCUIT};
  IF batch_ IS NOT NULL AND batch_ <> '' THEN
    -- A re-send of a batch that changed the record (its id is remembered below) changes nothing.
    PERFORM 1 FROM ${o.batches} WHERE key = k AND id = batch_ AND expires_at > now_;
    o_stale := FOUND;
  END IF;
  -- reducer.ts admittedUnder: the record's generation, or 0 while it has not changed state.
  IF o_stale OR NOT (generation_ = r.generation OR (generation_ = 0 AND r.state = 'closed'
      AND r.override IS NULL AND r.generation % 100 = 0)) OR r.override = 'forced-closed' THEN
    o_stale := true;
  ELSIF r.state = 'closed' AND quiet THEN
    -- (Here with a success, or with slots to give back: ignored calls alone leave the run.)
    IF successes_ > 0 THEN r.consecutive_failures := trailing_; dirty := true; END IF;
  ELSIF r.state = 'closed' THEN
    -- reducer.ts noteReporter: who reported failures in the window (a quorum), newest last.
    IF reporter_ IS NOT NULL AND failures_ > 0 THEN
      newest_ := greatest(now_ / p_[5]::bigint, coalesce(r.reporter_buckets[cardinality(r.reporter_buckets)], 0));
      ids := '{}'; exps := '{}';
      FOR i IN 1 .. coalesce(cardinality(r.reporter_ids), 0) LOOP
        IF r.reporter_ids[i] <> reporter_ AND r.reporter_buckets[i] > newest_ - p_[6]::bigint THEN
          ids := ids || r.reporter_ids[i]; exps := exps || r.reporter_buckets[i];
        END IF;
      END LOOP;
      ids := ids || reporter_; exps := exps || newest_;
      IF cardinality(ids) > ${MAX_REPORTERS} THEN
        ids := ids[cardinality(ids) - ${MAX_REPORTERS - 1} :]; exps := exps[cardinality(exps) - ${MAX_REPORTERS - 1} :];
      END IF;
      r.reporter_ids := ids; r.reporter_buckets := exps;
      dirty := true;
    END IF;
    -- A throttled breaker's failures tell operators its rejection rate (reducer.ts noteThrottle).
    IF throttle_ IS NOT NULL AND failures_ > 0 THEN
      r.throttle_rate := throttle_; r.throttle_at := now_; dirty := true;
    END IF;
    IF successes_ + failures_ + slow_ + ignored_ > 0 THEN
      r.buckets := ${o.add}(r.buckets, now_, p_[5]::bigint, p_[6]::bigint, successes_, failures_, slow_, ignored_);
      r.consecutive_failures := CASE WHEN successes_ > 0 THEN trailing_ ELSE r.consecutive_failures + failures_ END;
      dirty := true;
    END IF;
    c := ${o.window}(r.buckets, now_, p_[5]::bigint, p_[6]::bigint);
    -- policy.ts outcomesCanTrip and shouldTrip; a rate is a quotient, compared as the reducer does.
    IF ((failures_ > 0 OR (successes_ > 0 AND kind_ = 'failure-rate')) AND CASE kind_
          WHEN 'consecutive-failures' THEN r.consecutive_failures >= p_[1]
          WHEN 'failures-in-window' THEN c[2] >= p_[1]
          WHEN 'failure-rate' THEN CASE WHEN c[1] + c[2] > 0 AND c[1] + c[2] >= p_[3]
            THEN c[2]::float8 / (c[1] + c[2])::float8 >= p_[2] ELSE false END
          ELSE false END)
        OR (trip_ AND kind_ = 'custom') THEN
      -- reducer.ts reportersInWindow: below the batch's quorum the breaker stays closed.
      IF coalesce(quorum_, 1) > 1 THEN
        newest_ := greatest(now_ / p_[5]::bigint, coalesce(r.reporter_buckets[cardinality(r.reporter_buckets)], 0));
        FOR i IN 1 .. coalesce(cardinality(r.reporter_ids), 0) LOOP
          IF r.reporter_buckets[i] > newest_ - p_[6]::bigint THEN reporters_ := reporters_ + 1; END IF;
        END LOOP;
      END IF;
      IF coalesce(quorum_, 1) <= 1 OR reporters_ >= quorum_ THEN
        ${OPEN}
      ELSE
        -- The reporter of the failures opens on its own (a success reports nothing).
        o_below := reporter_ IS NOT NULL AND failures_ > 0;
      END IF;
      dirty := true;
    END IF;
  ELSIF r.state = 'half-open' AND cardinality(probe_leases_) > 0 THEN
    FOR i IN 1 .. cardinality(probe_leases_) LOOP
      at := array_position(r.lease_ids, probe_leases_[i]);
      -- An expired or unknown lease's slot was already given back.
      CONTINUE WHEN at IS NULL;
      r.lease_ids := r.lease_ids[1 : at - 1] || r.lease_ids[at + 1 :];
      r.lease_expires := r.lease_expires[1 : at - 1] || r.lease_expires[at + 1 :];
      dirty := true;
      IF probe_outcomes_[i] = 'success' THEN r.probe_successes := r.probe_successes + 1;
      ELSIF probe_outcomes_[i] = 'failure' THEN failed := true; END IF;
    END LOOP;
    IF failed THEN
      ${OPEN}
    ELSIF r.probe_successes >= p_[12] THEN
      ${CLOSE}
    END IF;
  END IF;
  ${NOTE_CLOSE}
  IF dirty AND NOT o_stale AND batch_ IS NOT NULL AND batch_ <> '' THEN
    INSERT INTO ${o.batches} AS b (key, id, expires_at) VALUES (k, batch_, now_ + ${BATCH_ID_MS})
      ON CONFLICT (key, id) DO UPDATE SET expires_at = excluded.expires_at;
  END IF;
  IF dirty THEN ${write(o)} END IF;
  moved := from_ IS DISTINCT FROM ${CIRCUIT};
  ${finish(o, channel)}
  o_corrupt := corrupt;
  ${snapshot(o)}
  RETURN NEXT;
END $$;

-- inspect (reducer.ts snapshot): no row when nothing is stored (or it expired). Changes nothing:
-- a spoiled row is reported (o_corrupt) and left as it is; repairing it is an operator's reset.
CREATE OR REPLACE FUNCTION ${o.inspect}(${LEADING})
RETURNS TABLE (${REPLY_COLUMNS})
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  ${declarations(o)}
BEGIN
  ${DEFAULTS}
  SELECT * INTO r FROM ${o.table} WHERE key = k;
  IF NOT FOUND THEN RETURN; END IF;
  IF NOT ${valid('r.')} THEN
    corrupt := true;
    ${FRESH}
  ELSIF r.expires_at <= now_ THEN
    RETURN;
  END IF;
  ${EXPIRE_LEASES}
  -- A timed override whose time is up reads as lapsed (nothing is written).
  ${LAPSE}
  o_corrupt := corrupt;
  ${snapshot(o)}
  RETURN NEXT;
END $$;

-- force (reducer.ts force): sets or clears an operator override; any change starts a generation.
-- for_ms_ > 0 makes it lapse after that long; yield_ (openFor) leaves an override without a time
-- alone and never shortens a timed forced-open. A row with an override without a time never expires.
CREATE OR REPLACE FUNCTION ${o.force}(${LEADING}, gc_ boolean, override_ text, for_ms_ bigint,
  reason_ text, yield_ boolean)
RETURNS TABLE (${REPLY_COLUMNS})
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  ${declarations(o)}
  until_ bigint := 0;
  why_ text;
BEGIN
  ${DEFAULTS}
  IF override_ IS NOT NULL AND override_ NOT IN ('forced-open', 'forced-closed', 'metrics-only') THEN
    RAISE EXCEPTION 'circuitry: not an override: %', override_ USING ERRCODE = '22023';
  END IF;
  ${lockOrInsert(o)}
  ${RESET}
  ${EXPIRE_LEASES}
  ${LAPSE}
  from_ := ${CIRCUIT};
  IF override_ IS NOT NULL AND for_ms_ > 0 THEN until_ := now_ + for_ms_; END IF;
  IF NOT (yield_ AND override_ = 'forced-open' AND r.override IS NOT NULL
      AND (r.override <> 'forced-open' OR coalesce(r.override_until, 0) = 0 OR until_ <= r.override_until)) THEN
    IF r.override IS DISTINCT FROM override_ THEN
      r.override := override_; r.generation := r.generation + CASE WHEN r.generation % 100 = 99 THEN 2 ELSE 1 END;
      r.lease_ids := '{}'; r.lease_expires := '{}'; r.probe_successes := 0;
      dirty := true;
    END IF;
    why_ := CASE WHEN override_ IS NULL OR reason_ = '' THEN NULL ELSE left(reason_, ${MAX_REASON_LENGTH}) END;
    IF coalesce(r.override_until, 0) <> until_ OR r.override_reason IS DISTINCT FROM why_ THEN
      r.override_until := NULLIF(until_, 0); r.override_reason := why_;
      dirty := true;
    END IF;
  END IF;
  ${NOTE_CLOSE}
  IF dirty THEN ${write(o)} END IF;
  moved := from_ IS DISTINCT FROM ${CIRCUIT};
  ${finish(o, channel)}
  o_corrupt := corrupt;
  ${snapshot(o)}
  RETURN NEXT;
END $$;

-- reset (reducer.ts reset): starts a breaker afresh for an operator (closed; counts, consecutive
-- failures, backoff, probe leases and probe successes forgotten; a new generation), keeping its
-- override. A breaker with no row (or an expired one) gets none: the reply is a fresh record's
-- snapshot. Committed durably even when no transition is made: an operator's reset must not
-- come undone in a crash.
CREATE OR REPLACE FUNCTION ${o.reset}(${LEADING}, gc_ boolean)
RETURNS TABLE (${REPLY_COLUMNS})
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  ${declarations(o)}
  held boolean;
BEGIN
  ${DEFAULTS}
  SELECT * INTO r FROM ${o.table} WHERE key = k FOR UPDATE;
  held := FOUND;
  IF held AND NOT ${valid('r.')} THEN
    corrupt := true; ${FRESH}
  ELSIF held AND r.expires_at <= now_ THEN
    held := false;
  END IF;
  IF NOT held THEN
    ${FRESH}
    ${snapshot(o)}
    RETURN NEXT;
    RETURN;
  END IF;
  ${EXPIRE_LEASES}
  ${LAPSE}
  from_ := ${CIRCUIT};
  ${CLOSE}
  ${NOTE_CLOSE}
  ${write(o)}
  moved := from_ IS DISTINCT FROM ${CIRCUIT};
  ${finish(o, channel, true)}
  o_corrupt := corrupt;
  ${snapshot(o)}
  RETURN NEXT;
END $$;
`;
}
