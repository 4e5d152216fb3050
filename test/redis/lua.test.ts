import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import { LUA_DIR } from '../../scripts/build-lua.js';
import { seededRandom } from '../../src/testing/seeded-random.js';
import { encodeRecord, randomRecord } from '../helpers/redis-record.js';
import { useRedisServer } from '../helpers/redis-server.js';

// The scripts' own functions, run by EVAL: common.lua and op-record.lua as the scripts include
// them, then a check written in Lua that calls their locals.
const SOURCE = ['common.lua', 'op-record.lua'].map((f) => readFileSync(join(LUA_DIR, f), 'utf8')).join('\n');

describe('the packed record, in Lua', () => {
  let client: Redis;
  useRedisServer((_server, c) => {
    client = c;
  });

  it('reads what the JavaScript codec wrote, writes it back byte for byte, and refuses records cut short', async () => {
    const seed = Math.floor(Math.random() * 2 ** 31);
    const next = seededRandom(seed);
    for (const bucketMs of [6_000, 1_000, 333.5]) {
      const stamp = 1_700_000_000 + Math.floor(next() * 100_000_000);
      const now = stamp * 1000 + Math.floor(next() * 1000);
      const records = Array.from({ length: 150 }, () =>
        encodeRecord(randomRecord(next, stamp, bucketMs), bucketMs),
      );
      const reply = (await client.callBuffer(
        'EVAL',
        `${SOURCE}
        local p = { bucketMs = tonumber(ARGV[1]) }
        local now = tonumber(ARGV[2])
        local out = {}
        for i = 3, #ARGV do
          local s = ARGV[i]
          local r, why = decode(s, p, now)
          if r == nil then
            out[#out + 1] = 'refused: ' .. why
          else
            local again = encode(r, p, now)
            local short = ''
            -- Every prefix of the first 64 bytes and the last 16, one in 13 between (a long
            -- reason or many writers would make every prefix quadratic).
            for n = 0, #s - 1 do
              if (n < 64 or n >= #s - 16 or n % 13 == 0) and decode(string.sub(s, 1, n), p, now) ~= nil then
                short = 'read a record from its first ' .. n .. ' bytes'
                break
              end
            end
            -- Packed again from the bytes kept with the buckets: the same; and after a count of
            -- an older bucket changed, what packing a fresh copy gives.
            if short == '' and encode(r, p, now) ~= again then
              short = 'packed differently the second time'
            end
            if short == '' and #r.buckets > 1 then
              r.buckets[1].f = r.buckets[1].f == 0 and 1 or 0
              local changed = encode(r, p, now)
              if changed ~= encode(decode(changed, p, now), p, now) or changed == again then
                short = 'kept the bytes of a bucket whose count changed'
              end
              r.buckets[1].f = r.buckets[1].f == 0 and 1 or 0
            end
            out[#out + 1] = short == '' and again or short
          end
        end
        return out
        `,
        0,
        String(bucketMs),
        String(now),
        ...records,
      )) as Buffer[];
      reply.forEach((got, i) => {
        assert.equal(
          got.toString('hex'),
          records[i]!.toString('hex'),
          `seed ${seed}, bucketMs ${bucketMs}, record ${i}: ${got.toString('latin1').slice(0, 80)}`,
        );
      });
    }
  });

  it("updates a lone writer's entry in place exactly as its general code does", async () => {
    // remember_writer's in-place path against the same entry behind another writer (which takes
    // the general path); that writer is then left out of the comparison.
    const seed = Math.floor(Math.random() * 2 ** 31);
    const differ = (await client.eval(
      `${SOURCE}
      math.randomseed(tonumber(ARGV[1]))
      local now = 1700000000000
      local differ, fast = {}, 0
      for case = 1, 3000 do
        local function entry()
          local f = math.random(0, 10)
          return { id = 'a', floor = f, untilS = 1, numbers = { math.random(0, 12) } }
        end
        local e = entry()
        local alone = { list = { e }, by = { a = e } }
        local copy = { id = 'a', floor = e.floor, untilS = 1, numbers = { e.numbers[1] } }
        local other = { id = 'zz', floor = 0, untilS = 1, numbers = { 0 } }
        local beside = { list = { other, copy }, by = { zz = other, a = copy } }
        local n = math.random(0, 15)
        local floor = math.random(0, n)
        if e.floor <= floor and e.numbers[1] < floor then fast = fast + 1 end
        local got = remember_writer(alone, 'a', n, floor, now).by.a
        local want = remember_writer(beside, 'a', n, floor, now).by.a
        local g = got.floor .. ' ' .. got.untilS .. ' ' .. table.concat(got.numbers, ',')
        local w = want.floor .. ' ' .. want.untilS .. ' ' .. table.concat(want.numbers, ',')
        if g ~= w and #differ < 5 then differ[#differ + 1] = case .. ': ' .. g .. ' ~= ' .. w end
      end
      if fast < 300 then differ[#differ + 1] = 'the in-place path came up ' .. fast .. ' times' end
      return differ
      `,
      0,
      seed,
    )) as string[];
    assert.deepEqual(differ, [], `seed ${seed}`);
  });

  it('packs a closed breaker after one failure, one writer of the ids breakers use, in at most 28 bytes', async () => {
    // 28 bytes is what Redis keeps inside a key's object beside a 48 B key name: 193 B a key with
    // an expiry (bench/README.md); one byte more is 209 B.
    const reply = (await client.eval(
      `${SOURCE}
      local now = tonumber(ARGV[1])
      local p = { bucketMs = 6000 }
      local r = empty_record(now)
      r.cf = 1
      r.buckets = { { index = math.floor(now / 6000), s = 0, f = 1, sl = 0, ig = 0 } }
      r.w = remember_writer(r.w, ARGV[2], 1, 1, now)
      return #encode(r, p, now)
      `,
      0,
      String(Date.now()),
      // A process tag of 8 base-36 characters and the 46,655th breaker of the process.
      'k3x9a0zq' + (36 ** 3 - 1).toString(36),
    )) as number;
    assert.ok(reply <= 28, `${reply} bytes`);
  });
});
