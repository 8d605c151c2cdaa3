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

# KEYS: session, last_seen. ARGV: agent_id. Drops a last_seen member whose hash has expired.
PRUNE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 0
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
# ARGV: now_ms, new_guid, SHA-1 hex of the presented GUID ('' when none was presented: no digest
#       equals it), agent_id, and the rules' constants in one string: "idle_timeout_ms
#       touch_every_ms rotate_after_ms (-1: never) guid_timeout_ms ttl_ms" (each argument costs
#       redis-py some microseconds to pack).
# Returns a refusal, having changed nothing, as {reason, the session's version (0 without one)}:
# reason 1 without a session, 2 when idle, 3 when the GUID is not accepted. Else one JSON object:
# {"session": the hash's fields after the poll, "generation": n, "event": the event's JSON or
# false}. One bulk string, not an array of fields: parsing the reply is the client's biggest cost
# (some 5 us per element in redis-py without hiredis).
# GUIDs are compared by their SHA-1 digests: how long a comparison takes can tell an attacker
# about the digest of the GUID at most, not about the GUID.
POLL = """
local s = redis.call('HMGET', KEYS[1], 'guid', 'guid_issued_ms', 'last_seen_ms', 'retired',
  'version')
local guid, version = s[1], s[5]
if not guid or not version then
  return {1, 0}
end
local now = tonumber(ARGV[1])
local idle, touch, rotate, grace, ttl = string.match(ARGV[5], '^(%d+) (%d+) (-?%d+) (%d+) (%d+)$')
local seen = tonumber(s[3])
if now - seen > tonumber(idle) then
  return {2, tonumber(version)}
end
local retired = cjson.decode(s[4])
local accepted = redis.sha1hex(guid) == ARGV[3]
for _, pair in ipairs(retired) do
  if redis.sha1hex(pair[1]) == ARGV[3] and now <= pair[2] then
    accepted = true
  end
end
if not accepted then
  return {3, tonumber(version)}
end
rotate = tonumber(rotate)
local due = rotate >= 0 and now - tonumber(s[2]) >= rotate
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
