"""The chunk ledger: every chunk of a job pending -> leased -> done | failed in Redis, workers' heartbeats, and the
reconciler that re-sends what a dead worker held or a lost message carried. The ledger is the truth; a broker
message is only a wake-up, and every transition is one atomic, idempotent Lua step, so a duplicate is harmless.

Per job (all expiring with the job record): ``pending`` (sorted set: chunk -> when its last message was sent, Redis
time), ``leases`` (hash: chunk -> "holder|since"), ``done`` (set), ``failed`` (hash: chunk -> JSON failure). A chunk
is pending while it is in ``pending`` and not leased; done and failed chunks leave both.

The steps that change state also count the change in ``keys.STATS`` (never expiring, for ``/metrics``), in the branch
that actually changes it, so a duplicate step counts nothing: jobs finished by outcome, chunks done and failed, texts
scored and failed alone, chunks re-sent.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from sentq import keys
from sentq.rows import is_zipped
from sentq.store import text

# The ledger's clocks (heartbeat, its lifetime, the reconciler's sweep and lock, when a message counts as lost) are
# settings, the same on every host: Settings.heartbeat_s and the four after it say why each default has its value.
# At most this many old pending chunks of one job are examined per sweep (oldest sends first): a sweep stays cheap.
SWEEP_CHUNKS_PER_JOB = 1000
# A dead worker stays listed by `sentq workers` this long after it was found holding chunks.
DEAD_KEEP_S = 3600
# A job's ETA comes from its texts scored over about the last RATE_WINDOW_S: long enough to smooth chunks of any size,
# short enough that a slower or faster pace shows within half a minute. A chunk that starts RATE_GAP_S or more after
# the job's last one finished starts the window afresh: the pause (no worker, or all of them on other jobs) says
# nothing about the pace once scoring goes on; the workers take the next message within milliseconds otherwise.
# Only the newest RATE_KEEP chunks are kept in the window (a job of tiny chunks finishes thousands a second).
RATE_WINDOW_S = 30.0
RATE_GAP_S = 5.0
RATE_KEEP = 256

_NOW = "local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"

# A key of a job's expires at the same instant as the job record; a settled chunk leaves the lease and pending sets.
_HELPERS = """
local function expire_with(key, job)
  local ttl = redis.call('PTTL', job)
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
end
local function release(leases, pending, item)
  redis.call('HDEL', leases, item)
  redis.call('ZREM', pending, item)
end
"""

# Settle the job after its counts moved: running once a chunk is counted, finished when every chunk is accounted for
# (then it leaves the active index and is counted finished in ``stats``, in the same step).
_SETTLE = """
local function settle(job, active, stats, job_id, now, counted)
  local state = redis.call('HGET', job, 'state')
  if counted and state == 'queued' then redis.call('HSET', job, 'state', 'running'); state = 'running' end
  local total = tonumber(redis.call('HGET', job, 'total_chunks'))
  if total and (state == 'running' or state == 'queued') then
    local done = tonumber(redis.call('HGET', job, 'chunks_done') or '0')
    local failed = tonumber(redis.call('HGET', job, 'chunks_failed') or '0')
    local bad = tonumber(redis.call('HGET', job, 'texts_failed') or '0')
    if done + failed >= total then
      local final = (failed > 0 or bad > 0) and 'failed' or 'done'
      redis.call('HSET', job, 'state', final, 'finished_at', string.format('%.3f', now))
      redis.call('ZREM', active, job_id)
      redis.call('HINCRBY', stats, 'jobs_finished:' .. final, 1)
    end
  end
end
"""

# The producer stages a batch of chunks and marks them sent, in one step, only while its job is still being staged or
# run: a job cancelled or found invalid meanwhile gets nothing more (and is not made "queued" again), and a job
# forgotten (its record deleted) gets no key at all (none would expire). The payloads are SET in the same MULTI just
# before this script, never passed through Lua (a 375 KB string costs Redis ~0.45 ms in a script, 0.07 ms in a SET):
# a refusal deletes them again, inside the transaction.
# KEYS: job, pending, digests, then each chunk's input key   ARGV: heartbeat, then each chunk's item and digest
# Returns {0, stamp} | {-1} no job | {-2, state} stopped.
_STAGE = (
    _NOW
    + _HELPERS
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'cancelled' or state == 'invalid' then
  if #KEYS > 3 then redis.call('DEL', unpack(KEYS, 4)) end
  if not state then return {-1} end
  return {-2, state}
end
for i = 4, #KEYS do
  local item = ARGV[2 * i - 6]
  redis.call('HSET', KEYS[3], item, ARGV[2 * i - 5])
  redis.call('ZADD', KEYS[2], now, item)
end
if state == 'staging' then redis.call('HSET', KEYS[1], 'state', 'queued') end
redis.call('HSET', KEYS[1], 'heartbeat', ARGV[1])
expire_with(KEYS[2], KEYS[1])
expire_with(KEYS[3], KEYS[1])
return {0, tostring(now)}
"""
)

# A stopped job's staged inputs, each dropped unless its chunk is done, failed or leased (scoring: it will finish).
# KEYS: done, failed, leases, then each chunk's input   ARGV: each chunk's index
_DROP_INPUTS = """
local dropped = 0
for i = 1, #ARGV do
  local item = ARGV[i]
  if redis.call('SISMEMBER', KEYS[1], item) == 0 and redis.call('HEXISTS', KEYS[2], item) == 0
     and redis.call('HEXISTS', KEYS[3], item) == 0 then
    dropped = dropped + redis.call('DEL', KEYS[3 + i])
  end
end
return dropped
"""

# `sentq submit --resume`: a job whose submission stopped before the end of its input (interrupted, its producer
# dead, a bad line) runs again: its staged chunks not scored are pending, sent now, and it is in the reconciler's
# index, in one step; its producer then stages the rest. Only a job with no total yet whose producer is silent.
# KEYS: job, active, stats, pending   ARGV: job_id, heartbeat, silent_before, then chunk indexes to send
# Returns {0, stamp} | {-1} no job | {-2, state} cancelled or finished | {-3} its input is all staged |
# {-4, heartbeat} its producer is alive.
_RESUME = (
    _NOW
    + _HELPERS
    + """
local st = redis.call('HMGET', KEYS[1], 'state', 'total_chunks', 'heartbeat', 'created', 'chunks_done')
if not st[1] then return {-1} end
if st[2] and st[2] ~= '' then return {-3} end
if st[1] == 'cancelled' or st[1] == 'done' or st[1] == 'failed' then return {-2, st[1]} end
if tonumber(st[3] or '0') >= tonumber(ARGV[3]) then return {-4, st[3]} end
if st[1] == 'invalid' then redis.call('HINCRBY', KEYS[3], 'jobs_finished:invalid', -1) end
for i = 4, #ARGV do redis.call('ZADD', KEYS[4], now, ARGV[i]) end
expire_with(KEYS[4], KEYS[1])
local state = 'staging'
if redis.call('EXISTS', KEYS[4]) == 1 or tonumber(st[5] or '0') > 0 then
  state = tonumber(st[5] or '0') > 0 and 'running' or 'queued'
end
redis.call('HSET', KEYS[1], 'state', state, 'heartbeat', ARGV[2], 'finished_at', '', 'error', '')
redis.call('ZADD', KEYS[2], tonumber(st[4]) or now, ARGV[1])
return {0, tostring(now)}
"""
)

# KEYS: job   ARGV: heartbeat
_PRODUCER_BEAT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'heartbeat', ARGV[1])
return 1
"""

# Mark chunks sent now (their message is being published). KEYS: pending, job  ARGV: items...
_SENT = (
    _NOW
    + _HELPERS
    + """
for i = 1, #ARGV do redis.call('ZADD', KEYS[1], now, ARGV[i]) end
expire_with(KEYS[1], KEYS[2])
return tostring(now)
"""
)

# `sentq retry`: a job that finished with failed chunks gets exactly the failed chunks it was shown back to pending,
# sent now, in one step; anything else changes nothing (a job not finished as failed, a failed set that changed since
# it was read: another retry, a late write). A crash after this step loses nothing: the chunks are pending with a
# send stamp, and the reconciler re-sends what no message carries.
# KEYS: job, failed, deliveries, probe, pending, active, stats, then each chunk's output and partial keys
# ARGV: job_id, n, then per chunk: index, its failure as read, texts it had scored
# Returns {0, stamp} | {-1} no job | {-2, state} not finished as failed | {-3} its failed chunks changed.
_REOPEN = (
    _NOW
    + _HELPERS
    + """
local st = redis.call('HMGET', KEYS[1], 'state', 'created', 'chunks_done')
if not st[1] then return {-1} end
if st[1] ~= 'failed' then return {-2, st[1]} end
local n = tonumber(ARGV[2])
if redis.call('HLEN', KEYS[2]) ~= n then return {-3} end
local scored = 0
for i = 1, n do
  if redis.call('HGET', KEYS[2], ARGV[3 * i]) ~= ARGV[3 * i + 1] then return {-3} end
  scored = scored + tonumber(ARGV[3 * i + 2])
end
redis.call('DEL', KEYS[2])
for i = 1, n do
  local item = ARGV[3 * i]
  redis.call('HDEL', KEYS[3], item)
  redis.call('HDEL', KEYS[4], item)
  redis.call('DEL', KEYS[6 + 2 * i], KEYS[7 + 2 * i])
  redis.call('ZADD', KEYS[5], now, item)
end
expire_with(KEYS[5], KEYS[1])
if scored > 0 then redis.call('HINCRBY', KEYS[1], 'texts_done', -scored) end  -- Lua's -0 is no integer to Redis
local state = tonumber(st[3] or '0') > 0 and 'running' or 'queued'
redis.call('HSET', KEYS[1], 'state', state, 'chunks_failed', 0, 'texts_failed', 0, 'finished_at', '')
redis.call('ZADD', KEYS[6], tonumber(st[2]) or now, ARGV[1])
redis.call('HINCRBY', KEYS[7], 'chunk_retries', n)
return {0, tostring(now)}
"""
)

# A worker takes a chunk: count the delivery, lease it to ``holder`` unless it is done, failed or its job stopped.
# Only a chunk the ledger knows (pending, leased, done or failed) is taken: a message naming any other (forged, or of
# a job staged differently) changes nothing.
# The chunk's input is read by a GET after this script in the same MULTI (big strings stay out of Lua, see _STAGE).
# KEYS: job, deliveries, done, failed, leases, pending   ARGV: item, holder
# Returns {code, state, model, deliveries}; code 0 work, 1 done, 2 failed, 3 job stopped, 4 no such chunk, -1 no job.
_CLAIM = (
    _NOW
    + """
local st = redis.call('HMGET', KEYS[1], 'state', 'model')
if not st[1] then return {-1, '', '', 0} end
local model = st[2] or ''
if not redis.call('ZSCORE', KEYS[6], ARGV[1]) and redis.call('HEXISTS', KEYS[5], ARGV[1]) == 0
   and redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 and redis.call('HEXISTS', KEYS[4], ARGV[1]) == 0 then
  return {4, st[1], model, 0}
end
local d = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return {1, st[1], model, d} end
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then return {2, st[1], model, d} end
if st[1] == 'cancelled' or st[1] == 'invalid' then return {3, st[1], model, d} end
redis.call('HSET', KEYS[5], ARGV[1], ARGV[2] .. '|' .. string.format('%.6f', now))
if ttl > 0 then redis.call('PEXPIRE', KEYS[5], ttl) end
return {0, st[1], model, d}
"""
)

# The job's recent scoring rate (what its ETA is computed from, never the rate since submission: after a wait for a
# worker that would be wrong by orders of magnitude). Each chunk scored joins the job's ``recent`` sorted set (member
# "index:texts:started", scored by when it finished) and its texts the record's ``recent_texts``; chunks that finished
# over RATE_WINDOW_S ago leave both, and a chunk that started more than RATE_GAP_S after the job's last one finished
# (no worker meanwhile, or they were busy elsewhere) starts the window afresh. The record keeps ``recent_from`` (when
# the oldest chunk in the window started), ``recent_at`` (the last finish) and ``recent_chunk_s`` (its scoring time):
# recent texts/s = recent_texts / (now - recent_from), in one HGETALL with the record.
# KEYS: job, recent   ARGV (of the caller, from 2): item, texts, compute_s
_RECENT = """
local function recent(job, window, item, texts, compute_s, now)
  local started = now - tonumber(compute_s)
  local last = tonumber(redis.call('HGET', job, 'recent_at') or '')
  local sum = tonumber(redis.call('HGET', job, 'recent_texts') or '0')
  if not last or started - last > RATE_GAP_S then
    redis.call('DEL', window)
    sum = 0
  else
    local old = redis.call('ZRANGEBYSCORE', window, '-inf', '(' .. tostring(now - RATE_WINDOW_S))
    local n = redis.call('ZCARD', window) - #old
    if n >= RATE_KEEP then  -- a job of tiny chunks: the newest RATE_KEEP of them are window enough
      old = redis.call('ZRANGE', window, 0, #old + n - RATE_KEEP)
    end
    for _, m in ipairs(old) do sum = sum - tonumber(string.match(m, '^[^:]*:([^:]*):')) end
    if #old > 0 then redis.call('ZREM', window, unpack(old)) end
  end
  redis.call('ZADD', window, now, item .. ':' .. texts .. ':' .. string.format('%.6f', started))
  expire_with(window, job)
  local first = redis.call('ZRANGE', window, 0, 0)[1]
  local from = math.min(tonumber(string.match(first, ':([^:]*)$')), started)
  redis.call('HSET', job, 'recent_texts', sum + tonumber(texts), 'recent_from', string.format('%.3f', from),
    'recent_at', string.format('%.3f', now), 'recent_chunk_s', compute_s)
end
"""
for _name, _value in (("RATE_WINDOW_S", RATE_WINDOW_S), ("RATE_GAP_S", RATE_GAP_S), ("RATE_KEEP", RATE_KEEP)):
    _RECENT = _RECENT.replace(_name, repr(_value))

# The last hour minute by minute, for the console's dashboard: texts scored, chunks failed and texts failed alone in
# each minute (Redis time), counted in the same step (and branch) as the cumulative counters. A ring of
# MINUTE_SLOTS slots in one small hash (keys.STATS_MINUTES): slot m % MINUTE_SLOTS holds minute m, and the first
# count of a new minute in a slot resets what an older minute left there, so the hash never grows past
# 4 x MINUTE_SLOTS fields and needs no expiry; a reader keeps only the slots whose minute is recent. O(1) a chunk.
MINUTE_SLOTS = 64
_PER_MINUTE = """
local function per_minute(key, now, texts, chunks_failed, texts_failed)
  local m = tostring(math.floor(now / 60))
  local s = tostring(math.floor(now / 60) % MINUTE_SLOTS)
  if redis.call('HGET', key, 'm' .. s) ~= m then
    redis.call('HSET', key, 'm' .. s, m, 't' .. s, 0, 'c' .. s, 0, 'f' .. s, 0)
  end
  if tonumber(texts) > 0 then redis.call('HINCRBY', key, 't' .. s, texts) end
  if tonumber(chunks_failed) > 0 then redis.call('HINCRBY', key, 'c' .. s, chunks_failed) end
  if tonumber(texts_failed) > 0 then redis.call('HINCRBY', key, 'f' .. s, texts_failed) end
end
""".replace("MINUTE_SLOTS", str(MINUTE_SLOTS))

# A chunk's result is in: store it and count the chunk once (a second delivery, even a concurrent one, is a no-op).
# With ``failure`` (JSON) the chunk had texts that failed alone: its good rows are kept and it is recorded failed.
# The result was SET at KEYS[11] in the same MULTI just before (big strings stay out of Lua, see _STAGE): it becomes
# the chunk's output if this delivery counts, and is deleted if not. A result that holds its texts (``drop``: 1) lets
# the staged input go once the chunk is done; otherwise (or if the chunk failed: `sentq retry` re-runs it) it stays.
# KEYS: job, done, failed, output, input, leases, pending, active, stats, recent, new output, stats per minute
# ARGV: job_id, item, texts, compute_s, wait_s, drop, failure ('' if none), bad texts
_COMPLETE = (
    _NOW
    + _HELPERS
    + _SETTLE
    + _RECENT
    + _PER_MINUTE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('DEL', KEYS[11]); return -1 end
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 or redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 then
  redis.call('DEL', KEYS[11])
  return 0
end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('RENAME', KEYS[11], KEYS[4])
if ttl > 0 then redis.call('PEXPIRE', KEYS[4], ttl) else redis.call('PERSIST', KEYS[4]) end
release(KEYS[6], KEYS[7], ARGV[2])
if ARGV[7] == '' then
  if ARGV[6] == '1' then redis.call('DEL', KEYS[5]) end
  redis.call('SADD', KEYS[2], ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'chunks_done', 1)
  redis.call('HINCRBY', KEYS[9], 'chunks:done', 1)
else
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[7])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
  redis.call('HINCRBY', KEYS[1], 'chunks_failed', 1)
  redis.call('HINCRBY', KEYS[1], 'texts_failed', ARGV[8])
  redis.call('HINCRBY', KEYS[9], 'chunks:failed', 1)
  redis.call('HINCRBY', KEYS[9], 'texts_failed', ARGV[8])
end
redis.call('HINCRBY', KEYS[1], 'texts_done', ARGV[3])
redis.call('HINCRBY', KEYS[9], 'texts_scored', ARGV[3])
redis.call('HINCRBYFLOAT', KEYS[1], 'compute_s', ARGV[4])
redis.call('HINCRBYFLOAT', KEYS[1], 'wait_s', ARGV[5])
-- When the first chunk to finish started scoring (its compute time back from now): texts/s spans real work.
redis.call('HSETNX', KEYS[1], 'first_started', string.format('%.3f', now - tonumber(ARGV[4])))
recent(KEYS[1], KEYS[10], ARGV[2], ARGV[3], ARGV[4], now)
per_minute(KEYS[12], now, ARGV[3], ARGV[7] == '' and 0 or 1, ARGV[8])
settle(KEYS[1], KEYS[8], KEYS[9], ARGV[1], now, true)
return 1
"""
)

# Record a whole chunk failed (once), keeping its input so `sentq retry` can run it again.
# KEYS: job, done, failed, leases, pending, active, stats, stats per minute   ARGV: job_id, item, failure JSON
_FAIL = (
    _NOW
    + _HELPERS
    + _SETTLE
    + _PER_MINUTE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 then return 0 end
release(KEYS[4], KEYS[5], ARGV[2])
-- The first record of a chunk's failure stays: a later one (a late delivery's) must not erase the lines that failed
-- alone and the texts scored anyway, which `retry` takes back.
if redis.call('HSETNX', KEYS[3], ARGV[2], ARGV[3]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'chunks_failed', 1)
  redis.call('HINCRBY', KEYS[7], 'chunks:failed', 1)
  per_minute(KEYS[8], now, 0, 1, 0)
  expire_with(KEYS[3], KEYS[1])
end
settle(KEYS[1], KEYS[6], KEYS[7], ARGV[1], now, true)
return 1
"""
)

# The producer's last word: totals known, and finished at once if the workers were faster.
# KEYS: job, active, stats   ARGV: job_id, total_chunks, total_texts, blank_lines
_SEAL = (
    _NOW
    + _SETTLE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'total_chunks', ARGV[2], 'total_texts', ARGV[3], 'blank_lines', ARGV[4])
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'staging' then redis.call('HSET', KEYS[1], 'state', 'queued') end
settle(KEYS[1], KEYS[2], KEYS[3], ARGV[1], now, false)
return 1
"""
)

# Stop a job before it settles (cancelled, or its input invalid), unless it already finished: only the step that
# finishes it counts it. KEYS: job, active, stats   ARGV: job_id, final state, error ('' keeps the record's)
_STOP = (
    _NOW
    + """
redis.call('ZREM', KEYS[2], ARGV[1])
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'done' or state == 'failed' or state == 'cancelled' or state == 'invalid' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'finished_at', string.format('%.3f', now))
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[3]) end
redis.call('HINCRBY', KEYS[3], 'jobs_finished:' .. ARGV[2], 1)
return 1
"""
)

# The reconciler re-sends chunks, each only if it is still as the sweep saw it (another sweep, a claim or a
# completion in between wins). KEYS: pending, leases, job, stats   ARGV: (item, lease or '', stamp) triples.
# A triple with a lease re-sends a chunk whose holder is dead (if that lease still stands); without, one whose message
# was lost (if it is still unleased and its last send is the one the sweep saw).
_RESEND = (
    _NOW
    + _HELPERS
    + """
local out = {tostring(now)}
for i = 1, #ARGV, 3 do
  local item, lease, stamp = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local score = redis.call('ZSCORE', KEYS[1], item)
  local held = redis.call('HGET', KEYS[2], item)
  if lease ~= '' and held == lease then
    redis.call('HDEL', KEYS[2], item)
    redis.call('ZADD', KEYS[1], now, item)
    table.insert(out, item)
  elseif lease == '' and not held and score and tonumber(score) == tonumber(stamp) then
    redis.call('ZADD', KEYS[1], now, item)
    table.insert(out, item)
  end
end
expire_with(KEYS[1], KEYS[3])
if #out > 1 then redis.call('HINCRBY', KEYS[4], 'chunk_retries', #out - 1) end
return out
"""
)

# A worker's heartbeat. KEYS: beat hash, live index   ARGV: instance, info JSON, running JSON, ttl_ms
_BEAT = (
    _NOW
    + """
redis.call('HSET', KEYS[1], 'info', ARGV[2], 'running', ARGV[3], 'beat', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], now, ARGV[1])
return tostring(now)
"""
)

# Take or keep the reconciler's lock. KEYS: lock   ARGV: holder, ttl_ms
_LOCK = """
local v = redis.call('GET', KEYS[1])
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# A probed chunk's checkpoint carries a version ``v`` that every write raises by one; a write names the version it
# read and is refused if another delivery of the chunk (the broker's redelivery and the reconciler's re-send can
# both be running it) wrote since. So no piece is ever appended twice.
_PROBE_VERSION = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local v = cur and (cjson.decode(cur)['v'] or 0) or 0
"""

# Probe a chunk that kills its process: save the checkpoint before trying a piece, if it is still the version read.
# KEYS: probe hash, job   ARGV: index, checkpoint JSON, version read
_PROBE_SAVE = (
    _HELPERS
    + _PROBE_VERSION
    + """
if v ~= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
expire_with(KEYS[1], KEYS[2])
return 1
"""
)

# Commit one scored piece if the checkpoint is still the version read (at the piece's offset).
# KEYS: probe hash, partial rows, job   ARGV: index, expected offset, new checkpoint JSON, rows, version read
_PROBE_COMMIT = (
    _HELPERS
    + _PROBE_VERSION
    + """
local offset = cur and cjson.decode(cur)['offset'] or 0
if v ~= tonumber(ARGV[5]) or offset ~= tonumber(ARGV[2]) then return 0 end
if ARGV[4] ~= '' then redis.call('APPEND', KEYS[2], ARGV[4]) end
if offset == 0 and ARGV[4] == '' then redis.call('SET', KEYS[2], '') end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
expire_with(KEYS[1], KEYS[3])
expire_with(KEYS[2], KEYS[3])
return 1
"""
)


# ----- producer side -----


def mark_sent(client: redis.Redis | redis.client.Pipeline, job_id: str, indexes: Iterable[int]) -> Any:
    """Record ``indexes`` pending, sent now (Redis time); returns the stamp (or queues the call on a pipeline)."""
    items = [str(i) for i in indexes]
    return client.eval(_SENT, 2, keys.job_pending(job_id), keys.job(job_id), *items)


def stage(
    client: redis.Redis, job_id: str, chunks: list[tuple[int, bytes]], *, expire_s: int, heartbeat: float
) -> tuple[int, str | float]:
    """Store staged chunks (index, payload) and mark them sent now, if the job is still staging or running.
    Returns (0, stamp), (-1, "") if the job is gone, (-2, state) if it was cancelled or found invalid."""
    args: list[Any] = [f"{heartbeat:.3f}"]
    pipe = client.pipeline(transaction=True)
    for index, payload in chunks:
        pipe.set(keys.chunk_input(job_id, index), payload, ex=expire_s)
        args += [str(index), digest(payload)]
    pipe.eval(
        _STAGE,
        3 + len(chunks),
        keys.job(job_id),
        keys.job_pending(job_id),
        keys.job_digests(job_id),
        *[keys.chunk_input(job_id, index) for index, _ in chunks],
        *args,
    )
    reply = pipe.execute()[-1]
    code = int(reply[0])
    return (0, float(reply[1])) if code == 0 else (code, text(reply[1]) if len(reply) > 1 else "")


def drop_inputs(client: redis.Redis, job_id: str, indexes: Iterable[int]) -> int:
    """Delete the staged inputs of a stopped job's ``indexes`` that are not done, failed or leased, in one step (a
    completion cannot slip between the check and the delete); returns how many went."""
    items = [str(i) for i in indexes]
    return int(
        client.eval(
            _DROP_INPUTS,
            3 + len(items),
            keys.job_done(job_id),
            keys.job_failed(job_id),
            keys.job_leases(job_id),
            *[keys.chunk_input(job_id, int(i)) for i in items],
            *items,
        )
    )


def digest(payload: bytes) -> bytes:
    """A staged chunk's digest (its input as staged: the same file read with the same options gives the same). SHA-1
    is a check against a different or changed file, not against an adversary (who could write the ledger anyway),
    and the fastest hashlib has here: 0.66 GB/s against blake2b's 0.38 on this box's cores."""
    return hashlib.sha1(payload).digest()


def resume(
    client: redis.Redis, job_id: str, indexes: list[int], *, heartbeat: float, silent_before: float
) -> tuple[int, str | float]:
    """Run a job whose submission stopped part-way again (see _RESUME), sending ``indexes`` now.
    Returns (0, stamp) or (code, detail): -1 no job, -2 cancelled/finished (state), -3 all staged, -4 producer alive."""
    reply = client.eval(
        _RESUME,
        4,
        keys.job(job_id),
        keys.ACTIVE_JOBS,
        keys.STATS,
        keys.job_pending(job_id),
        job_id,
        f"{heartbeat:.3f}",
        f"{silent_before:.3f}",
        *[str(i) for i in indexes],
    )
    code = int(reply[0])
    return (0, float(reply[1])) if code == 0 else (code, text(reply[1]) if len(reply) > 1 else "")


def producer_beat(client: redis.Redis, job_id: str, at: float) -> bool:
    """The producer is alive at ``at``: refresh its job's heartbeat (never recreating a forgotten job's record)."""
    return bool(client.eval(_PRODUCER_BEAT, 1, keys.job(job_id), f"{at:.3f}"))


def track(pipe: redis.client.Pipeline, job_id: str, created: float) -> None:
    """Put a new job in the active index (in the pipeline that creates its record)."""
    pipe.zadd(keys.ACTIVE_JOBS, {job_id: created})


def stop(client: redis.Redis | redis.client.Pipeline, job_id: str, state: str, *, error: str = "") -> Any:
    """Finish a job early as ``state`` (cancelled, invalid) unless it already finished; nothing of it needs
    reconciling either way. Returns 1 if this call finished it (or queues the call on a pipeline)."""
    return client.eval(_STOP, 3, keys.job(job_id), keys.ACTIVE_JOBS, keys.STATS, job_id, state, error)


def seal(client: redis.Redis, job_id: str, *, chunks: int, texts: int, blank_lines: int) -> None:
    """The producer read the whole input: record the totals (and finish the job if every chunk is in)."""
    client.eval(_SEAL, 3, keys.job(job_id), keys.ACTIVE_JOBS, keys.STATS, job_id, chunks, texts, blank_lines)


# ----- worker side -----


@dataclass(frozen=True)
class ChunkWork:
    """What a worker needs to score one chunk, read (and leased) in one atomic step."""

    state: str | None  # the job's state; None: the job expired or never existed
    model: str
    deliveries: int
    done: bool  # already scored: this delivery is a duplicate
    failed: bool  # already recorded failed (`sentq retry` re-runs it)
    stopped: bool  # the job was cancelled or its input found invalid
    payload: bytes | None
    unknown: bool = False  # the ledger has no such chunk (a forged message): nothing was changed


def claim(client: redis.Redis, job_id: str, index: int, *, holder: str) -> ChunkWork:
    """Count this delivery and lease the chunk to ``holder`` (one atomic step); see ChunkWork."""
    pipe = client.pipeline(transaction=True)
    pipe.eval(
        _CLAIM,
        6,
        keys.job(job_id),
        keys.job_deliveries(job_id),
        keys.job_done(job_id),
        keys.job_failed(job_id),
        keys.job_leases(job_id),
        keys.job_pending(job_id),
        str(index),
        holder,
    )
    pipe.get(keys.chunk_input(job_id, index))
    (code, state, model, deliveries), payload = pipe.execute()
    code = int(code)
    return ChunkWork(
        state=None if code == -1 else text(state),
        model=text(model),
        deliveries=int(deliveries),
        done=code == 1,
        failed=code == 2,
        stopped=code == 3,
        payload=bytes(payload) if code == 0 and payload is not None else None,
        unknown=code == 4,
    )


def complete(
    client: redis.Redis,
    job_id: str,
    index: int,
    *,
    rows: bytes,
    texts: int,
    compute_s: float,
    wait_s: float,
    bad: dict[int, str] | None = None,
    worker: tuple[str, str] | None = None,
) -> bool:
    """Store the chunk's rows and count it once; False if it was already counted (a duplicate delivery).

    ``bad`` (input line -> error) names texts that failed alone: the chunk's other rows are kept, and it is recorded
    failed with those lines. ``worker`` (name, JSON) is recorded for `sentq workers` in the same round trip.
    """
    failure = ""
    if bad:
        lines = sorted(bad)
        shown = ", ".join(map(str, lines[:10])) + (f" and {len(lines) - 10} more" if len(lines) > 10 else "")
        failure = failure_json(
            f"{len(lines)} of {texts + len(lines)} texts failed (input lines {shown}); the others were scored",
            scored=texts,
            lines=bad,
        )
    fresh = keys.chunk_output(job_id, index) + ":new"
    pipe = client.pipeline(transaction=True)
    pipe.set(fresh, rows, ex=3600)  # renamed or deleted by _COMPLETE in this transaction
    pipe.eval(
        _COMPLETE,
        12,
        keys.job(job_id),
        keys.job_done(job_id),
        keys.job_failed(job_id),
        keys.chunk_output(job_id, index),
        keys.chunk_input(job_id, index),
        keys.job_leases(job_id),
        keys.job_pending(job_id),
        keys.ACTIVE_JOBS,
        keys.STATS,
        keys.job_recent(job_id),
        fresh,
        keys.STATS_MINUTES,
        job_id,
        str(index),
        texts,
        f"{compute_s:.6f}",
        f"{wait_s:.6f}",
        "1" if is_zipped(rows) else "0",
        failure,
        len(bad or ()),
    )
    if worker is not None:
        pipe.hset(keys.WORKER_STATS, worker[0], worker[1])
    return int(pipe.execute()[1]) == 1


def fail(client: redis.Redis, job_id: str, index: int, error: str) -> None:
    """Record the whole chunk failed with ``error`` (for `sentq status JOB`); its input stays for `sentq retry`."""
    client.eval(
        _FAIL,
        8,
        keys.job(job_id),
        keys.job_done(job_id),
        keys.job_failed(job_id),
        keys.job_leases(job_id),
        keys.job_pending(job_id),
        keys.ACTIVE_JOBS,
        keys.STATS,
        keys.STATS_MINUTES,
        job_id,
        str(index),
        failure_json(error[:2000], scored=0),
    )


def failure_json(error: str, *, scored: int, lines: dict[int, str] | None = None) -> str:
    record: dict[str, Any] = {"error": error, "scored": scored}
    if lines:
        record["lines"] = {str(line): why[:500] for line, why in sorted(lines.items())}
    return json.dumps(record, ensure_ascii=False)


@dataclass(frozen=True)
class Failure:
    """One failed chunk: why, how many of its texts were scored anyway, and the input lines that failed alone."""

    error: str
    scored: int = 0
    lines: dict[int, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: bytes | str) -> Failure:
        value = text(raw)
        try:
            data = json.loads(value)
        except ValueError:
            return cls(value)  # written by an older sentq: the error text alone
        if not isinstance(data, dict):
            return cls(value)
        return cls(
            str(data.get("error", "")),
            int(data.get("scored", 0)),
            {int(k): str(v) for k, v in (data.get("lines") or {}).items()},
        )


def failures(client: redis.Redis, job_id: str) -> dict[int, Failure]:
    """Chunk index -> its failure, for the job's failed chunks."""
    return {int(k): Failure.parse(v) for k, v in client.hgetall(keys.job_failed(job_id)).items()}


def reopen(client: redis.Redis, job_id: str, seen: Mapping[int, bytes]) -> tuple[int, str | float]:
    """Move exactly the failed chunks ``seen`` (index -> failure as read) back to pending, sent now, if the job
    finished as failed and its failed hash is still ``seen``. Returns (0, stamp), (-1, "") for no job, (-2, state)
    for a job not finished as failed, (-3, "") if its failed chunks changed since they were read."""
    items = sorted(seen)
    chunk_keys = [
        key for index in items for key in (keys.chunk_output(job_id, index), keys.chunk_partial(job_id, index))
    ]
    args: list[Any] = [job_id, len(items)]
    for index in items:
        args += [str(index), seen[index], Failure.parse(seen[index]).scored]
    reply = client.eval(
        _REOPEN,
        7 + len(chunk_keys),
        keys.job(job_id),
        keys.job_failed(job_id),
        keys.job_deliveries(job_id),
        keys.job_probe(job_id),
        keys.job_pending(job_id),
        keys.ACTIVE_JOBS,
        keys.STATS,
        *chunk_keys,
        *args,
    )
    code = int(reply[0])
    if code == 0:
        return 0, float(reply[1])
    return code, text(reply[1]) if len(reply) > 1 else ""


# ----- probing a chunk that kills its process (see worker.score_chunk) -----


def probe_state(client: redis.Redis, job_id: str, index: int) -> dict[str, Any] | None:
    raw = client.hget(keys.job_probe(job_id), str(index))
    return json.loads(raw) if raw else None


def probe_save(client: redis.Redis, job_id: str, index: int, state: dict[str, Any], *, read: int) -> bool:
    """Write the checkpoint (version ``read`` + 1) before trying a piece, so if the process dies the next delivery
    knows where; False if another delivery wrote it since version ``read``."""
    new = json.dumps(dict(state, v=read + 1))
    return int(client.eval(_PROBE_SAVE, 2, keys.job_probe(job_id), keys.job(job_id), str(index), new, read)) == 1


def probe_commit(
    client: redis.Redis, job_id: str, index: int, *, offset: int, state: dict[str, Any], rows: bytes, read: int
) -> bool:
    """Append a scored piece's rows and move the checkpoint to ``state`` (version ``read`` + 1) if it is still version
    ``read`` at ``offset``; False if a racing delivery wrote it since (nothing is appended then)."""
    done = client.eval(
        _PROBE_COMMIT,
        3,
        keys.job_probe(job_id),
        keys.chunk_partial(job_id, index),
        keys.job(job_id),
        str(index),
        offset,
        json.dumps(dict(state, v=read + 1)),
        rows,
        read,
    )
    return int(done) == 1


def runs(client: redis.Redis, instance: str, item: str) -> bool:
    """Whether worker ``instance`` is alive and running ``item`` (``job:chunk``), by its heartbeat."""
    raw = client.hget(keys.worker_beat(instance), "running")
    return raw is not None and item in json.loads(raw)


def probe_rows(client: redis.Redis, job_id: str, index: int) -> bytes:
    return client.get(keys.chunk_partial(job_id, index)) or b""  # type: ignore[return-value]


def probe_clear(client: redis.Redis, job_id: str, index: int) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.hdel(keys.job_probe(job_id), str(index))
    pipe.delete(keys.chunk_partial(job_id, index))
    pipe.execute()


# ----- worker liveness -----


def beat(client: redis.Redis, instance: str, *, info: dict[str, Any], running: list[str], ttl_s: float) -> float:
    """Refresh ``instance``'s heartbeat with what it runs (``job:chunk`` items) for ``ttl_s``; returns the Redis time
    of the beat."""
    now = client.eval(
        _BEAT,
        2,
        keys.worker_beat(instance),
        keys.WORKERS_LIVE,
        instance,
        json.dumps(info),
        json.dumps(running),
        int(ttl_s * 1000),
    )
    return float(now)


def farewell(client: redis.Redis, instance: str) -> None:
    """A worker stopping cleanly: it is gone now, not when its heartbeat lapses (its unfinished chunks are re-sent at
    once)."""
    pipe = client.pipeline(transaction=False)
    pipe.delete(keys.worker_beat(instance))
    pipe.zrem(keys.WORKERS_LIVE, instance)
    pipe.execute()


@dataclass(frozen=True)
class LiveWorker:
    instance: str
    info: dict[str, Any]
    running: list[str]
    beat: float

    @property
    def queues(self) -> list[str]:
        return list(self.info.get("queues", []))


def live_workers(client: redis.Redis) -> list[LiveWorker]:
    """Workers whose heartbeat has not expired (two round trips; forgets the ones that expired)."""
    instances = [text(i) for i in client.zrange(keys.WORKERS_LIVE, 0, -1)]  # type: ignore[arg-type]
    pipe = client.pipeline(transaction=False)
    for instance in instances:
        pipe.hmget(keys.worker_beat(instance), ["info", "running", "beat"])
    found, gone = [], []
    for instance, (info, running, at) in zip(instances, pipe.execute(), strict=True):
        if at is None:
            gone.append(instance)
            continue
        found.append(LiveWorker(instance, json.loads(info or "{}"), json.loads(running or "[]"), float(at)))
    forget_gone(client, gone)
    return found


def forget_gone(client: redis.Redis, instances: list[str]) -> None:
    """Drop from the live index the workers whose heartbeat a reader found expired. Every reader of the index does
    this (``live_workers``, the metrics snapshot): each worker start adds an instance, so an index that only one kind
    of reader pruned would grow with every restart between two of its reads. A worker that beats again is back."""
    if instances:
        client.zrem(keys.WORKERS_LIVE, *instances)


# HSCAN page of the worker stats hash the prune reads at a time (and deletes from in one step).
PRUNE_SCAN = 500

# Forget worker stats entries still as they were read (a worker that finished a task meanwhile keeps its fresh one).
# KEYS: stats hash  ARGV: name, value as read, ...
_FORGET_STATS = """
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then n = n + redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return n
"""


def prune_workers(client: redis.Redis, *, keep_s: float, now: float) -> int:
    """Forget what `sentq workers` keeps of each node name (its model, its last task) once its last task is over
    ``keep_s`` old, and the expired heartbeats left in the live index; returns the stats entries dropped.

    Run by the reconciler now and then: the hash is read a page at a time, so a pass costs what is kept (the names
    seen within ``keep_s``), and a name that is never seen again is gone after ``keep_s``.
    """
    live_workers(client)
    dropped = 0
    stale: list[Any] = []
    for name, raw in client.hscan_iter(keys.WORKER_STATS, count=PRUNE_SCAN):
        try:
            at = float(json.loads(raw).get("at", 0))
        except (ValueError, TypeError, AttributeError):
            at = 0.0  # not of sentq's making: nothing to show for it
        if now - at > keep_s:
            stale += [name, raw]
        if len(stale) >= 2 * PRUNE_SCAN:
            dropped += int(client.eval(_FORGET_STATS, 1, keys.WORKER_STATS, *stale))
            stale = []
    if stale:
        dropped += int(client.eval(_FORGET_STATS, 1, keys.WORKER_STATS, *stale))
    return dropped


def worker_stats(client: redis.Redis, names: list[str]) -> dict[str, dict[str, Any]]:
    """What the stats hash holds of ``names`` (the live workers'): never the whole hash, whose size is every node
    name seen within Settings.worker_stats_keep_s."""
    if not names:
        return {}
    raw = client.hmget(keys.WORKER_STATS, names)
    return {name: json.loads(value) for name, value in zip(names, raw, strict=True) if value is not None}


def dead_workers(client: redis.Redis) -> list[dict[str, Any]]:
    """Workers found dead holding chunks within the last DEAD_KEEP_S, newest first."""
    found = [json.loads(v) | {"instance": text(k)} for k, v in client.hgetall(keys.WORKERS_DEAD).items()]
    return sorted(found, key=lambda d: -float(d.get("found_at", 0)))


def consumers(client: redis.Redis, queue: str) -> list[LiveWorker]:
    """Live workers that consume ``queue``."""
    return [w for w in live_workers(client) if queue in w.queues]


@dataclass(frozen=True)
class Ledger:
    """Where a job's chunks are right now (for `sentq status`)."""

    pending: int
    leased: dict[int, str]  # chunk -> holder
    probing: list[int]


def summary(client: redis.Redis, job_id: str) -> Ledger:
    pipe = client.pipeline(transaction=False)
    pipe.zcard(keys.job_pending(job_id))
    pipe.hgetall(keys.job_leases(job_id))
    pipe.hkeys(keys.job_probe(job_id))
    pending, leases, probing = pipe.execute()
    leased = {int(k): text(v).rsplit("|", 1)[0] for k, v in leases.items()}
    return Ledger(pending - len(leased), leased, sorted(int(i) for i in probing))


# ----- the reconciler -----


def lock(client: redis.Redis, broker_id: str, holder: str, *, ttl_s: float) -> bool:
    """Take (or keep) the one reconciler lock for jobs on this broker, for ``ttl_s``."""
    return bool(client.eval(_LOCK, 1, keys.reconciler_lock(broker_id), holder, int(ttl_s * 1000)))


def unlock(client: redis.Redis, broker_id: str, holder: str) -> None:
    client.eval(_UNLOCK, 1, keys.reconciler_lock(broker_id), holder)


@dataclass
class QueueView:
    """What the broker says of one queue, as the reconciler needs it."""

    depth: int
    oldest_stamp: float | None = None  # send stamp of the next message to be taken, when the broker can tell
    carried: set[tuple[str, int]] = field(default_factory=set)  # (job, chunk) of messages delivered, not acked


@dataclass
class Sweep:
    """One reconciler pass: what it found and did, and what it cost."""

    jobs: int = 0
    chunks_seen: int = 0
    dead: list[tuple[str, int, str]] = field(default_factory=list)  # (job, chunk, holder) re-sent
    lost: list[tuple[str, int]] = field(default_factory=list)  # (job, chunk) re-sent
    forgotten: int = 0  # finished or vanished jobs dropped from the index
    commands: int = 0
    ms: float = 0.0


def reconcile(
    client: redis.Redis,
    *,
    broker_id: str,
    view: Callable[[str], QueueView],
    publish: Callable[[str, str, list[int], float], None],
    beat_every_s: float,
    lost_after_s: float,
) -> Sweep:
    """One pass over unfinished jobs: re-send chunks whose holder is dead and chunks whose message was lost.

    ``view(queue)`` reads the broker; ``publish(job, queue, chunks, stamp)`` sends the messages. Cost: a few
    pipelined round trips, bounded by the chunks in flight (SWEEP_CHUNKS_PER_JOB per job at most).
    """
    started = time.perf_counter()
    sweep = Sweep()
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.zrange(keys.ACTIVE_JOBS, 0, -1)
    (secs, micros), raw_ids = pipe.execute()
    sweep.commands += 2
    now = secs + micros / 1e6
    ids = [text(i) for i in raw_ids]
    if not ids:
        sweep.ms = (time.perf_counter() - started) * 1000
        return sweep
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(keys.job(job_id), ["state", "queue", "broker"])
        pipe.hgetall(keys.job_leases(job_id))
    replies = pipe.execute()
    sweep.commands += len(replies)
    jobs: list[tuple[str, str, dict[int, str]]] = []
    forget = []
    for n, job_id in enumerate(ids):
        (state, queue, broker), leases = replies[2 * n : 2 * n + 2]
        if state is None or text(state) in ("done", "failed", "cancelled", "invalid"):
            forget.append(job_id)
            continue
        if broker is not None and text(broker) != broker_id:
            continue  # another broker's workers reconcile it
        jobs.append((job_id, text(queue) if queue else "", {int(k): text(v) for k, v in leases.items()}))
    if forget:
        client.zrem(keys.ACTIVE_JOBS, *forget)
        sweep.commands += 1
        sweep.forgotten = len(forget)
    sweep.jobs = len(jobs)
    holders = sorted({lease.rsplit("|", 1)[0] for _, _, leases in jobs for lease in leases.values()})
    alive: dict[str, tuple[float, set[str]]] = {}
    if holders:
        pipe = client.pipeline(transaction=False)
        for holder in holders:
            pipe.hmget(keys.worker_beat(holder), ["beat", "running"])
        for holder, (at, running) in zip(holders, pipe.execute(), strict=True):
            if at is not None:
                alive[holder] = (float(at), set(json.loads(running or "[]")))
        sweep.commands += len(holders)
    views: dict[str, QueueView] = {}
    for queue in sorted({queue for _, queue, _ in jobs if queue}):
        views[queue] = view(queue)
        sweep.commands += 3
    # A chunk's message counts as lost only if it was sent over lost_after_s ago and, while its queue holds messages,
    # over lost_after_s before the oldest of them: only chunks sent before that bound are read (the oldest first, a
    # bounded number per job), so a healthy sweep reads no chunk at all, however many a job has.
    bounds: dict[str, float] = {}
    for job_id, queue, _ in jobs:
        q = views.get(queue)
        if q is not None and (q.depth == 0 or q.oldest_stamp is not None):
            bounds[job_id] = now - lost_after_s if q.depth == 0 else min(now, q.oldest_stamp) - lost_after_s
    pipe = client.pipeline(transaction=False)
    for job_id, bound in bounds.items():
        pipe.zrangebyscore(
            keys.job_pending(job_id), "-inf", f"({bound!r}", start=0, num=SWEEP_CHUNKS_PER_JOB, withscores=True
        )
    pending_of = dict(zip(bounds, pipe.execute() if bounds else [], strict=True))
    sweep.commands += len(bounds)
    for job_id, queue, leases in jobs:
        pending = [(int(i), float(s)) for i, s in pending_of.get(job_id, [])]
        sweep.chunks_seen += len(pending)
        dead: list[tuple[int, str, float]] = []
        for index, lease in leases.items():
            holder, _, since = lease.rpartition("|")
            beat_at, running = alive.get(holder, (None, set()))
            stale = beat_at is None or (
                float(since or 0) < beat_at - beat_every_s and f"{job_id}:{index}" not in running
            )
            if stale:
                dead.append((index, lease, 0.0))
        carried = views[queue].carried if queue in views else set()
        lost = [(i, s) for i, s in pending if i not in leases and (job_id, i) not in carried]
        if not dead and not lost:
            continue
        args: list[Any] = []
        for index, lease, stamp in dead:
            args += [str(index), lease, repr(stamp)]
        for index, stamp in lost:
            args += [str(index), "", repr(stamp)]
        stamp_s, *resent = client.eval(
            _RESEND, 4, keys.job_pending(job_id), keys.job_leases(job_id), keys.job(job_id), keys.STATS, *args
        )
        sweep.commands += 1
        chosen = {int(i) for i in resent}
        if not chosen:
            continue
        publish(job_id, queue, sorted(chosen), float(stamp_s))
        for index, lease, _ in dead:
            if index in chosen:
                sweep.dead.append((job_id, index, lease.rpartition("|")[0]))
        sweep.lost += [(job_id, index) for index, _ in lost if index in chosen]
    if sweep.dead:
        _remember_dead(client, sweep.dead, now)
        sweep.commands += 2
    sweep.ms = (time.perf_counter() - started) * 1000
    return sweep


def _remember_dead(client: redis.Redis, found: list[tuple[str, int, str]], now: float) -> None:
    """Note the dead holders for `sentq workers` (and forget the ones noted over DEAD_KEEP_S ago)."""
    by_holder: dict[str, list[str]] = {}
    for job_id, index, holder in found:
        by_holder.setdefault(holder, []).append(f"{job_id}:{index}")
    old = {text(k): json.loads(v) for k, v in client.hgetall(keys.WORKERS_DEAD).items()}
    pipe = client.pipeline(transaction=False)
    for instance, record in old.items():
        if now - float(record.get("found_at", 0)) > DEAD_KEEP_S:
            pipe.hdel(keys.WORKERS_DEAD, instance)
    for holder, chunks in by_holder.items():
        record = old.get(holder, {"chunks": []})
        held = (record.get("chunks", []) + chunks)[-50:]
        pipe.hset(keys.WORKERS_DEAD, holder, json.dumps({"found_at": now, "chunks": held}))
    pipe.execute()
