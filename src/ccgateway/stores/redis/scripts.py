"""The Lua scripts of the Redis stores, each with the keys and arguments it takes.

Key names are ``keys.RedisKeys``'s. ``POLL_SCRIPT`` and ``CLAIM_SCRIPT``, the scripts every event
poll runs, go over the bus's ``ScriptLane`` (``lane.py``); the others through redis-py.
"""

from __future__ import annotations

from ccgateway.stores.redis.lane import Script

# KEYS: session, last_seen. ARGV: ttl_ms, last_seen_ms, agent_id, field, value, ...
CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
"""

# KEYS: session, last_seen. ARGV: expected version, ttl_ms, last_seen_ms, agent_id, field, ...
SWAP = """
local version = redis.call('HGET', KEYS[1], 'version')
if not version or version ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
"""

# KEYS: session, last_seen. ARGV: agent_id, version ('' for any).
DELETE = """
local version = redis.call('HGET', KEYS[1], 'version')
if not version then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
if ARGV[2] ~= '' and version ~= ARGV[2] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: session, last_seen. ARGV: agent_id, key_id. Drops a last_seen member whose hash has
# expired, and a hash of another key_id (or none: an older version's) with its member: no session.
PRUNE = """
if redis.call('HGET', KEYS[1], 'key_id') ~= ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 0
"""

# A sign-in in one step (``RedisSessionStore.sign_in``): unless the agent's session may not be
# replaced, the new session in place of any, the queue cleared (as ``CLEAR``) and the sign-in
# events queued (as ``PUBLISH``).
#
# MIRRORS ``stores/base.py`` ``may_replace`` (the sign-in rule): a session (of this key_id) that
# is not idle is replaced only by a force sign-in. A change to one must change the other;
# ``tests/contract/test_session_store.py`` runs its cases against both stores.
#
# KEYS: session, last_seen, events, inflight, gen.
# ARGV: now_ms, idle_timeout_ms, force ('1' or '0'), key_id, ttl_ms, agent_id, last_seen_ms,
#       the number of events n, n event JSONs, then the session's fields and values.
# Returns 0 when refused (nothing changed), else the new session's version: the replaced
# session's + 1 (any hash's, even another key_id's: a stale version never matches it), or 1.
SIGN_IN = """
local s = redis.call('HMGET', KEYS[1], 'key_id', 'last_seen_ms', 'version')
if s[1] == ARGV[4] and s[2] and ARGV[3] ~= '1'
    and tonumber(ARGV[1]) - tonumber(s[2]) <= tonumber(ARGV[2]) then
  return 0
end
local version = (tonumber(s[3]) or 0) + 1
local n = tonumber(ARGV[8])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 9 + n))
redis.call('HSET', KEYS[1], 'version', version, 'key_id', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[6])
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('INCR', KEYS[5])
redis.call('PEXPIRE', KEYS[5], ARGV[5])
if n > 0 then
  redis.call('RPUSH', KEYS[3], unpack(ARGV, 9, 8 + n))
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
return version
"""

# A sign-out in one step (``RedisSessionStore.sign_out``): ``DELETE`` and ``CLEAR`` together.
# KEYS: session, last_seen, events, inflight, gen. ARGV: agent_id, version ('' for any), ttl_ms.
SIGN_OUT = """
local version = redis.call('HGET', KEYS[1], 'version')
if not version then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
if ARGV[2] ~= '' and version ~= ARGV[2] then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[5])
redis.call('PEXPIRE', KEYS[5], ARGV[3])
return 1
"""

# KEYS: events, inflight. ARGV: event JSON, max_queued, ttl_ms.
PUBLISH = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""

# KEYS: inflight, events, gen. ARGV: ttl_ms, the poll's generation ('' on its first claim).
# Returns {generation, event or nil}. The oldest event: inflight's head, else events' head; none
# if the generation is not the poll's (the queue was cleared since the poll began). Then whatever
# ``inflight`` holds (say what this poll's own wait just moved there) goes back to the head of
# ``events``, in order: a poll of the new session blocked on ``events`` wakes up to claim it.
CLAIM = """
local generation = tonumber(redis.call('GET', KEYS[3]) or '0')
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= generation then
  if redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT') then
    while redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT') do end
    redis.call('PEXPIRE', KEYS[2], ARGV[1])
  end
  return {generation, false}
end
local event = redis.call('LPOP', KEYS[1])
if event then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
  end
  return {generation, event}
end
return {generation, redis.call('LPOP', KEYS[2])}
"""

# An event poll's first step, in one round trip (``RedisSessionStore.poll``): the poll rule, then
# the claim of the oldest event (as ``CLAIM`` does on a poll's first claim).
#
# MIRRORS ``sessions/pollrule.py`` (``decide``), step for step: a change to one must change the
# other. ``tests/contract/test_poll_rule.py`` runs every branch against both and catches a
# divergence.
#
# KEYS: session, last_seen, inflight, events, gen.
# ARGV: now_ms, new_guid ('' unless the caller knows a rotation is due: then a poll that would
#       rotate is refused with reason 4 and the caller asks again with one), the presented
#       GUID's digest ('' when none was presented: no digest equals it), agent_id, and in one
#       string "idle_timeout_ms touch_every_ms rotate_after_ms (-1: never) guid_timeout_ms ttl_ms
#       key_id" (each argument costs redis-py some microseconds to pack).
# Returns a refusal, having changed nothing, as {reason, the session's version (0 without one)}:
# reason 1 without a session (a hash of another ``key_id``, or of none, is no session: written
# under another GUID_DIGEST_KEY or by an older version), 2 when idle, 3 when the GUID is not
# accepted, 4 when a rotation is due and ARGV[2] is ''. Else one JSON object:
# {"session": the hash's fields after the poll, "generation": n, "event": the event's JSON or
# false}. One bulk string, not an array of fields: parsing the reply is the client's biggest cost
# (some 5 us per element in redis-py without hiredis).
# The GUIDs are keyed digests (HMAC-SHA256, ``sessions/manager.py``): Redis never sees a GUID, and
# how long a comparison takes tells nothing about one.
POLL = """
local s = redis.call('HMGET', KEYS[1], 'guid', 'guid_issued_ms', 'last_seen_ms', 'retired',
  'version', 'key_id')
local guid, version = s[1], s[5]
local idle, touch, rotate, grace, ttl, key_id = string.match(ARGV[5],
  '^(%d+) (%d+) (-?%d+) (%d+) (%d+) (%S+)$')
if not guid or not version or s[6] ~= key_id then
  return {1, 0}
end
local now = tonumber(ARGV[1])
local seen = tonumber(s[3])
if now - seen > tonumber(idle) then
  return {2, tonumber(version)}
end
local retired = cjson.decode(s[4])
local accepted = guid == ARGV[3] and ARGV[3] ~= ''
for _, pair in ipairs(retired) do
  if pair[1] == ARGV[3] and now <= pair[2] then
    accepted = true
  end
end
if not accepted then
  return {3, tonumber(version)}
end
rotate = tonumber(rotate)
local due = rotate >= 0 and now - tonumber(s[2]) >= rotate
if due and ARGV[2] == '' then
  return {4, tonumber(version)}
end
if due or now - seen >= tonumber(touch) then
  local fields = {'last_seen_ms', ARGV[1], 'version', tostring(tonumber(version) + 1)}
  if due then
    local kept = {}
    for _, pair in ipairs(retired) do
      if pair[2] >= now then
        kept[#kept + 1] = '[' .. cjson.encode(pair[1]) .. ',' ..
          string.format('%.0f', pair[2]) .. ']'
      end
    end
    kept[#kept + 1] = '[' .. cjson.encode(guid) .. ',' ..
      string.format('%.0f', now + tonumber(grace)) .. ']'
    table.insert(fields, 'guid')
    table.insert(fields, ARGV[2])
    table.insert(fields, 'guid_issued_ms')
    table.insert(fields, ARGV[1])
    table.insert(fields, 'retired')
    table.insert(fields, '[' .. table.concat(kept, ',') .. ']')
  end
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[4])
end
local generation = tonumber(redis.call('GET', KEYS[5]) or '0')
local event = redis.call('LPOP', KEYS[3])
if event then
  if redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('PEXPIRE', KEYS[3], ttl)
  end
else
  event = redis.call('LPOP', KEYS[4])
end
local fields = redis.call('HGETALL', KEYS[1])
local session = {}
for i = 1, #fields, 2 do
  session[fields[i]] = fields[i + 1]
end
return cjson.encode({session = session, generation = generation, event = event})
"""

# KEYS: inflight, gen. ARGV: generation, event JSON, ttl_ms. An event claimed by a cancelled poll
# goes back to inflight's head, unless the queue was cleared since (it is the old session's).
GIVE_BACK = """
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('LPUSH', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: events, inflight, gen. ARGV: ttl_ms.
CLEAR = """
redis.call('DEL', KEYS[1], KEYS[2])
local generation = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[1])
return generation
"""

POLL_SCRIPT = Script(POLL)
CLAIM_SCRIPT = Script(CLAIM)
