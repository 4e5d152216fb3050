import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import { LUA_DIR } from '../../scripts/build-lua.js';
import { useRedisServer } from '../helpers/redis-server.js';

// The record script's own functions, run by EVAL: common.lua and op-record.lua as the scripts
// include them, then a check written in Lua that calls their locals. A fast path is checked
// against the general code it stands in for, over random inputs (the seed is in the message).
const SOURCE = ['common.lua', 'op-record.lua'].map((f) => readFileSync(join(LUA_DIR, f), 'utf8')).join('\n');

async function runLua(client: Redis, check: string, seed: number): Promise<unknown> {
  return client.eval(`${SOURCE}\nmath.randomseed(tonumber(ARGV[1]))\n${check}`, 0, seed);
}

describe('the record script, function by function', () => {
  let client: Redis;
  useRedisServer((_server, c) => {
    client = c;
  });

  it('writes field w for one writer alone as its general code does', async () => {
    const seed = Math.floor(Math.random() * 2 ** 31);
    const reply = await runLua(
      client,
      `
      local ids = { 'a1', 'b.2', 'c-3' }
      local fast, differ = 0, {}
      for case = 1, 3000 do
        local writers = no_writers()
        for i = 1, math.random(0, 3) do
          local numbers = {}
          for _ = 1, math.random(0, 3) do numbers[#numbers + 1] = math.random(0, 12) end
          local e = { id = ids[i], floor = math.random(0, 10), untilS = 1000 + math.random(0, 99), numbers = numbers }
          writers.list[#writers.list + 1] = e
          writers.by[e.id] = e
        end
        local writer = ids[math.random(1, 3)]
        local n = math.random(0, 15)
        local floor = math.random(0, n)
        local now = 900000 + math.random(0, 99999)
        local got = encode_writers(writers, writer, n, floor, now)
        local want = encode_writers_all(writers, writer, n, floor, math.floor((now + DEDUP_MS) / 1000) + 1)
        if not string.find(got, ',', 1, true) and select(2, string.gsub(got, ':', ':')) == 2 then fast = fast + 1 end
        if got ~= want and #differ < 5 then differ[#differ + 1] = writer .. ' ' .. n .. ' ' .. floor .. ': ' .. got .. ' ~= ' .. want end
      end
      return { fast, unpack(differ) }
      `,
      seed,
    );
    const [oneEntry, ...differ] = reply as [number, ...string[]];
    assert.deepEqual(differ, [], `seed ${seed}`);
    assert.ok(oneEntry > 500, `the one-entry field came up ${oneEntry} times of 3,000 (seed ${seed})`);
  });

  it('keeps the buckets it wrote as parsing the field would give them, whoever wrote the field before', async () => {
    const seed = Math.floor(Math.random() * 2 ** 31);
    const reply = await runLua(
      client,
      `
      local p = { bucketMs = 10, bucketCount = 4 }
      local text, t, hits, differ = '', 0, 0, {}
      for step = 1, 3000 do
        if math.random() < 0.1 then
          -- Another writer's field: up to five buckets, anywhere around the clock.
          local parts, index = {}, math.floor(t / 10) + math.random(-6, 2)
          for _ = 1, math.random(0, 5) do
            parts[#parts + 1] = string.format('%d:%d:%d:%d:%d', index, math.random(0, 9), math.random(0, 9), math.random(0, 2), 0)
            index = index + math.random(1, 3)
          end
          text = table.concat(parts, ',')
        end
        local kept = buckets_kept['k']
        if kept ~= nil and kept.text == text then hits = hits + 1 end
        local buckets = hot_buckets('k', text)
        -- The clock mostly moves on, sometimes steps back.
        t = math.max(0, t + math.random(-8, 15))
        local r = { buckets = buckets, cf = 0 }
        local b = current_bucket(r, p, t)
        b.s = b.s + 1
        b.f = b.f + math.random(0, 1)
        local field = encode_counted(text, r.buckets)
        keep_buckets('k', field, r.buckets)
        -- What the next write will use, against what parsing the field gives.
        local held, parsed = buckets_kept['k'], parse_buckets(field)
        local same = held.text == field and held.n == #r.buckets and parsed ~= nil
          and #parsed == #held.buckets and field == encode_buckets(parsed)
        for i = 1, same and #parsed or 0 do
          local x, y = parsed[i], held.buckets[i]
          if x.index ~= y.index or x.s ~= y.s or x.f ~= y.f or x.sl ~= y.sl or x.ig ~= y.ig or x.at ~= y.at then
            same = false
          end
        end
        if not same and #differ < 5 then differ[#differ + 1] = 'step ' .. step .. ': ' .. text .. ' -> ' .. field end
        text = field
      end
      return { hits, unpack(differ) }
      `,
      seed,
    );
    const [hits, ...differ] = reply as [number, ...string[]];
    assert.deepEqual(differ, [], `seed ${seed}`);
    assert.ok(hits > 2_000, `the kept buckets were used ${hits} times of 3,000 (seed ${seed})`);
  });

  it('keeps at most BUCKETS_KEPT_MAX buckets in all, and counts them right', async () => {
    const seed = Math.floor(Math.random() * 2 ** 31);
    const reply = await runLua(
      client,
      `
      local dropped, wrong = 0, {}
      for step = 1, 6000 do
        local n = math.random(1, 12)
        local parts = {}
        for i = 1, n do parts[i] = string.format('%d:1:0:0:0', i) end
        local text = table.concat(parts, ',')
        local before = buckets_kept_size
        keep_buckets('k' .. math.random(1, 2000), text, parse_buckets(text))
        if buckets_kept_size < before then dropped = dropped + 1 end
        local held = 0
        for _, kept in pairs(buckets_kept) do held = held + #kept.buckets end
        if (held ~= buckets_kept_size or held > BUCKETS_KEPT_MAX) and #wrong < 5 then
          wrong[#wrong + 1] = 'step ' .. step .. ': holds ' .. held .. ', counted ' .. buckets_kept_size
        end
      end
      return { dropped, unpack(wrong) }
      `,
      seed,
    );
    const [dropped, ...wrong] = reply as [number, ...string[]];
    assert.deepEqual(wrong, [], `seed ${seed}`);
    assert.ok(dropped > 0, `never dropped (seed ${seed})`);
  });
});
