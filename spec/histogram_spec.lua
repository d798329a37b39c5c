-- spec/histogram_spec.lua: luaebpf.histogram against real kernel maps made
-- with ebpf.create in every layout it recognises (array, percpu_array, hash
-- keyed by {label, slot}, value structs holding slots), with bpftool's dump
-- of each pinned map as the oracle for the counts; the Prometheus text
-- checked by `promtool check metrics` and by prometheus_client's parser,
-- JSON round-tripped through cjson, and bad input.
-- Shared by every Lua version: 5.1 syntax.
local ebpf, H = require "luaebpf", require "spec.helpers"
local hist = require "luaebpf.histogram"
local prom = require "luaebpf.prometheus"
local format = require "luaebpf.format"
local cjson = require "cjson"

local INT64 = math.type ~= nil
local U64MAX = INT64 and -1 or "18446744073709551615"

-- the parser's view of an exposition text: { name = { type =, samples = {
-- { name, labels, value } } } }, values as floats; or raises
local PARSER = [[
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(open(sys.argv[1], encoding="utf-8").read()):
    out[f.name] = {"type": f.type, "samples": [{"name": s.name, "labels": s.labels,
                   "value": repr(s.value)} for s in f.samples]}
print(json.dumps(out))
]]

local function parse(text)
  local script, file = os.tmpname(), os.tmpname()
  H.write_file(script, PARSER)
  H.write_file(file, text)
  local out, ok = H.sh("/usr/bin/python3 " .. script .. " " .. file)
  os.remove(script)
  os.remove(file)
  if not ok then error("the Prometheus parser refused the text: " .. out .. "\n" .. text, 2) end
  return cjson.decode(out)
end

local function promtool(text)
  local file = os.tmpname()
  H.write_file(file, text)
  local out, ok = H.sh("promtool check metrics < " .. file)
  os.remove(file)
  return ok, out
end

-- the bit length of a whole number (0 for 0), by halving: floor(log2(v)) + 1
local function bitlen(v)
  local n = 0
  while v >= 1 do v = math.floor(v / 2) n = n + 1 end
  return n
end

-- what hist.bpf.c's log2l(v) gives: floor(log2(v)), and 0 for 0
local function log2l(v)
  local b = bitlen(v)
  return b == 0 and 0 or b - 1
end

-- bpftool's dump as { [key bytes] = count }, per-CPU values summed (exact below 2^53)
local function oracle(path)
  local out = {}
  for k, v in pairs(H.dump(path)) do
    if type(v) == "table" then
      local s = 0
      for _, b in ipairs(v) do s = s + H.uint(b) end
      out[k] = s
    else
      out[k] = H.uint(v)
    end
  end
  return out
end

describe("luaebpf.histogram", function()
  local fs, n = nil, 0
  local ncpus = ebpf.ncpus()
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)

  local function pinned(m)
    n = n + 1
    local path = fs.path .. "/h" .. n
    assert(m:pin(path))
    return path
  end

  -- a bucket's bounds hold what log2l puts in its slot, and nothing of the next
  local function check_log2_bounds(buckets)
    for _, b in ipairs(buckets) do
      assert.are.equal(b.slot, log2l(b.lo))
      assert.are.equal(b.slot, log2l(b.hi))
      assert.are.equal(b.slot + 1, log2l(b.hi + 1))
      if b.slot > 0 then assert.are.equal(b.slot - 1, log2l(b.lo - 1)) end
    end
  end

  it("reads a percpu_array named *hist: per-CPU counts summed, every slot a bucket", function()
    local m = ebpf.create{ type = "percpu_array", key = "u32", value = "u64", max_entries = 24,
      name = "lat_hist" }
    local per = {}
    for c = 1, ncpus do per[c] = c * 10 end
    assert(m:update(0, 3))             -- every CPU: 3
    assert(m:update(5, per))
    assert(m:update(23, 1))
    assert.are.equal("log2", hist.detect(m))
    local r = hist.read(m)
    local want = oracle(pinned(m))
    assert.are.equal("log2", r.kind)
    assert.are.equal("array", r.layout)
    assert.are.equal(1, #r.histograms)
    local h = r.histograms[1]
    assert.are.equal(24, #h.buckets)
    local total = 0
    for i, b in ipairs(h.buckets) do
      assert.are.equal(i - 1, b.slot)
      assert.are.equal(want[H.le(i - 1, 4)], b.count)
      total = total + b.count
    end
    assert.are.equal(total, h.count)
    assert.is_nil(h.sum)
    assert.are.same({ 0, 1 }, { h.buckets[1].lo, h.buckets[1].hi }) -- slot 0: 0 and 1
    check_log2_bounds(h.buckets)
    m:close()
  end)

  it("detects a plain array named *slots, and not an array of another name", function()
    local a = ebpf.create{ type = "array", key = "u32", value = "u32", max_entries = 8, name = "io_slots" }
    local b = ebpf.create{ type = "array", key = "u32", value = "u32", max_entries = 8, name = "counts" }
    for _, m in ipairs{ a, b } do
      assert(m:update(2, 7))
      assert(m:update(6, 1))
    end
    assert.are.equal("log2", hist.detect(a))
    local kind, why = hist.detect(b)
    assert.is_nil(kind)
    H.mentions(why, { "counts", "hist", "slots" })
    local _, msg = H.raised(hist.read, b)
    H.mentions(msg, { "histogram: map 'counts'", "ends in neither" })
    -- asked explicitly, it is one
    local r = hist.read(b, { kind = "log2" })
    local want = oracle(pinned(b))
    for _, bk in ipairs(r.histograms[1].buckets) do assert.are.equal(want[H.le(bk.slot, 4)], bk.count) end
    assert.are.equal(8, r.histograms[1].count)
    a:close(); b:close()
  end)

  it("reads a hash keyed by {cpu, slot}: one histogram per cpu, labelled", function()
    local m = ebpf.create{ type = "hash", key = { { "cpu", "u32" }, { "slot", "u32" } },
      value = "u64", max_entries = 64, name = "cpu_lat" }
    local fill = { { 0, 1, 4 }, { 0, 3, 9 }, { 0, 10, 1 }, { 1, 2, 5 }, { 1, 3, 2 }, { 7, 0, 6 } }
    for _, f in ipairs(fill) do assert(m:update({ cpu = f[1], slot = f[2] }, f[3])) end
    assert.is_nil((hist.detect(m))) -- not by the rule: only when asked
    local r = hist.read(m, { kind = "log2" })
    assert.are.equal("slot_key", r.layout)
    assert.are.same({ "cpu" }, r.label_names)
    local want = {} -- cpu -> slot -> count, from bpftool
    for k, v in pairs(oracle(pinned(m))) do
      local cpu, slot = H.uint(k:sub(1, 4)), H.uint(k:sub(5, 8))
      want[cpu] = want[cpu] or {}
      want[cpu][slot] = v
    end
    assert.are.equal(3, #r.histograms)
    local cpus = {}
    for _, h in ipairs(r.histograms) do
      local cpu = tonumber(h.labels.cpu)
      cpus[#cpus + 1] = cpu
      assert.are.equal(11, #h.buckets) -- slots 0..10: the largest slot of the map
      local total = 0
      for _, b in ipairs(h.buckets) do
        assert.are.equal(want[cpu][b.slot] or 0, b.count)
        total = total + b.count
      end
      assert.are.equal(total, h.count)
    end
    assert.are.same({ 0, 1, 7 }, cpus) -- in label order
    -- the text: one block per cpu
    local text = hist.text(r, "usecs")
    assert.truthy(text:find("cpu = 1\n", 1, true))
    assert.truthy(text:find("        4 -> 7           : 5 ", 1, true), text)
    m:close()
  end)

  it("reads a percpu_hash keyed by {comm, slot} as a linear histogram of the given step", function()
    local m = ebpf.create{ type = "percpu_hash", key = { { "comm", "char[16]" }, { "slot", "u16" } },
      value = "u32", max_entries = 32, name = "comm_lin" }
    assert(m:update({ comm = "nginx", slot = 0 }, 2))
    assert(m:update({ comm = "nginx", slot = 4 }, 1))
    assert(m:update({ comm = "bash", slot = 2 }, 3))
    local r = hist.read(m, { kind = "linear", step = 250 })
    assert.are.equal("linear", r.kind)
    assert.are.equal(250, r.step)
    assert.are.same({ "comm" }, r.label_names)
    assert.are.same({ "bash", "nginx" }, { r.histograms[1].labels.comm, r.histograms[2].labels.comm })
    local dump = oracle(pinned(m))
    for _, h in ipairs(r.histograms) do
      for _, b in ipairs(h.buckets) do
        assert.are.equal(b.slot * 250, b.lo)
        assert.are.equal(b.slot * 250 + 249, b.hi)
        local key = h.labels.comm .. string.rep("\0", 16 - #h.labels.comm) .. H.le(b.slot, 2)
        assert.are.equal(dump[key] or 0, b.count) -- bpftool: every CPU summed
      end
    end
    assert.are.equal(3 * ncpus, r.histograms[2].count)
    m:close()
  end)

  it("reads value structs holding slots and a sum, per-CPU, one histogram per key", function()
    local m = ebpf.create{ type = "percpu_hash", key = "u32",
      value = { { "count", "u64" }, { "slots", "u64[6]" }, { "total_ns", "u64" } },
      max_entries = 8, name = "req_lat" }
    local per = {}
    for c = 1, ncpus do per[c] = { slots = { 0, c, 0, 2, 0, 0 }, total_ns = 1000 * c } end
    assert(m:update(80, per))
    assert(m:update(443, { slots = { 1, 0, 0, 0, 0, 4 }, total_ns = 77 }))
    assert.are.equal("log2", hist.detect(m))
    local r = hist.read(m)
    assert.are.equal("slots_value", r.layout)
    assert.are.same({ "key" }, r.label_names)
    local dump = H.dump(pinned(m))
    for _, h in ipairs(r.histograms) do
      local per_cpu = dump[H.le(tonumber(h.labels.key), 4)]
      assert.are.equal(6, #h.buckets)
      local sum = 0
      for c = 1, #per_cpu do sum = sum + H.uint(per_cpu[c]:sub(57, 64)) end
      assert.are.equal(sum, h.sum)
      for _, b in ipairs(h.buckets) do
        local s = 0
        for c = 1, #per_cpu do s = s + H.uint(per_cpu[c]:sub(9 + 8 * b.slot, 16 + 8 * b.slot)) end
        assert.are.equal(s, b.count)
      end
    end
    assert.are.equal("80", r.histograms[1].labels.key)
    assert.are.equal(5 * ncpus, r.histograms[2].count)
    -- a named sum field, and one that is not there
    assert.are.equal(r.histograms[1].sum, hist.read(m, { sum = "total_ns" }).histograms[1].sum)
    local _, msg = H.raised(hist.read, m, { sum = "nope" })
    H.mentions(msg, { "req_lat", "no numeric field 'nope'" })
    m:close()
  end)

  it("renders a Prometheus histogram family promtool and prometheus_client accept", function()
    local m = ebpf.create{ type = "hash", key = "u32",
      value = { { "slots", "u32[5]" }, { "sum", "u64" } }, max_entries = 8, name = "p_hist" }
    assert(m:update(1, { slots = { 1, 2, 0, 3, 0 }, sum = 40 }))
    assert(m:update(2, { slots = { 0, 0, 0, 0, 9 }, sum = 200 }))
    local a = ebpf.create{ type = "percpu_array", key = "u32", value = "u64", max_entries = 6,
      name = "q_hist" }
    assert(a:update(1, 2)); assert(a:update(4, 1))
    local text = prom.render{ prom.histogram(hist.read(m), { name = "req_latency", help = "latency" }),
      prom.collect(a, { type = "histogram", name = "q_latency" })[1] }
    if H.has("promtool") then
      local ok, out = promtool(text)
      assert(ok, "promtool refused:\n" .. out .. "\n" .. text)
    else
      pending("needs promtool (Debian's prometheus: make deps-test)")
    end
    local fams = parse(text)
    assert.are.equal("histogram", fams.req_latency.type)
    assert.are.equal("histogram", fams.q_latency.type)
    local dump = H.dump(pinned(m))
    for _, key in ipairs{ 1, 2 } do
      local v = dump[H.le(key, 4)]
      local counts, sum = {}, H.uint(v:sub(25, 32)) -- u32[5], padding, the u64 at offset 24
      for s = 0, 4 do counts[s] = H.uint(v:sub(1 + 4 * s, 4 + 4 * s)) end
      local buckets, les, got_sum, got_count = {}, {}, nil, nil
      for _, s in ipairs(fams.req_latency.samples) do
        if s.labels.key == tostring(key) then
          if s.name == "req_latency_bucket" then
            buckets[#buckets + 1] = tonumber(s.value)
            les[#les + 1] = s.labels.le
          elseif s.name == "req_latency_sum" then got_sum = tonumber(s.value)
          elseif s.name == "req_latency_count" then got_count = tonumber(s.value) end
        end
      end
      -- cumulative, increasing le (the slot's top: 2^(slot+1) - 1), ending with +Inf
      assert.are.same({ "1", "3", "7", "15", "31", "+Inf" }, les)
      local cum = 0
      for s = 0, 4 do
        cum = cum + counts[s]
        assert.are.equal(cum, buckets[s + 1])
        assert.are.equal(s, log2l(tonumber(les[s + 1])))
      end
      assert.are.equal(cum, buckets[6])
      assert.are.equal(cum, got_count)
      assert.are.equal(sum, got_sum)
    end
    -- no sum in the array: no _sum line
    assert.is_nil(text:find("\nq_latency_sum", 1, true))
    local total = 0 -- every CPU holds 2 in slot 1 and 1 in slot 4, by bpftool
    for _, c in pairs(oracle(pinned(a))) do total = total + c end
    assert.are.equal(3 * ncpus, total)
    assert.truthy(text:find('\nq_latency_bucket{le="+Inf"} ' .. total .. '\n', 1, true))
    assert.truthy(text:find('\nq_latency_count ' .. total .. '\n', 1, true))
    m:close(); a:close()
  end)

  it("keeps u64 counts exact past 2^64 in the family, as decimal strings in the result", function()
    local m = ebpf.create{ type = "percpu_array", key = "u32", value = "u64", max_entries = 4,
      name = "big_hist" }
    assert(m:update(2, U64MAX)) -- every CPU: 2^64 - 1
    local r = hist.read(m)
    local want = "18446744073709551615"
    for _ = 2, ncpus do want = prom.sum({ want, "18446744073709551615" }) end
    assert.are.equal(want, r.histograms[1].buckets[3].count)
    assert.are.equal(want, tostring(r.histograms[1].count))
    local text = prom.text(m, { type = "histogram", name = "big" })
    assert.truthy(text:find('\nbig_bucket{le="7"} ' .. want .. "\n", 1, true), text)
    assert.truthy(text:find('\nbig_count ' .. want .. "\n", 1, true), text)
    -- python's own integers: n CPUs times 2^64 - 1
    local fams = parse(text)
    for _, s in ipairs(fams.big.samples) do
      if s.name == "big_count" then assert.are.equal(ncpus * 18446744073709551615.0, tonumber(s.value)) end
    end
    m:close()
  end)

  it("gives a count past 2^53 as its decimal string, never the nearest double", function()
    -- 2^53 + 1 has no double: tonumber rounds it to 2^53, which must not pass
    -- for the count on LuaJIT; 2^53 itself and 2^53 - 1 are exact numbers
    local m = ebpf.create{ type = "array", key = "u32", value = "u64", max_entries = 4,
      name = "edge_hist" }
    local path = pinned(m)
    H.bpftool_update("pinned " .. path, H.le(1, 4), "\1\0\0\0\0\0\32\0") -- 2^53 + 1
    H.bpftool_update("pinned " .. path, H.le(2, 4), "\0\0\0\0\0\0\32\0") -- 2^53
    H.bpftool_update("pinned " .. path, H.le(3, 4), "\255\255\255\255\255\255\31\0") -- 2^53 - 1
    -- python's integers read bpftool's bytes: the exact decimals
    local want = {}
    for k, v in pairs(H.dump(path)) do
      want[H.uint(k)] = H.sh("/usr/bin/python3 -c 'import sys; print(int.from_bytes(bytes.fromhex(sys.argv[1]), \"little\"))' "
        .. H.hex(v)):match("%d+")
    end
    local h = hist.read(m).histograms[1]
    assert.are.equal("string", type(h.buckets[2].count))
    assert.are.equal(want[1], h.buckets[2].count)
    assert.are.equal("number", type(h.buckets[3].count))
    assert.are.equal(want[2], string.format("%.0f", h.buckets[3].count))
    assert.are.equal(want[3], string.format("%.0f", h.buckets[4].count))
    m:close()
  end)

  it("gives bounds past 2^53 exactly, as decimal strings, in the result, the text and le", function()
    local m = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 8, name = "wide" }
    assert(m:update(53, 2))
    assert(m:update(63, 1))
    local r = hist.read(m, { kind = "log2" })
    local b = r.histograms[1].buckets
    assert.are.equal(64, #b)
    -- python's integers: the least and the greatest v whose bit_length() - 1 is the slot
    local want = H.sh([[/usr/bin/python3 -c '
for s in (52, 53, 63):
    lo = next(v for v in (2 ** s - 1, 2 ** s, 2 ** s + 1) if v.bit_length() - 1 == s)
    hi = next(v for v in (2 ** (s + 1), 2 ** (s + 1) - 1) if v.bit_length() - 1 == s)
    print(lo, hi)']])
    local got = {}
    for _, s in ipairs{ 52, 53, 63 } do
      local lo, hi = b[s + 1].lo, b[s + 1].hi
      got[#got + 1] = (type(lo) == "number" and string.format("%.0f", lo) or lo) .. " "
        .. (type(hi) == "number" and string.format("%.0f", hi) or hi)
    end
    assert.are.equal(want, table.concat(got, "\n") .. "\n")
    assert.are.equal("string", type(b[54].hi))               -- 2^54 - 1: no double holds it
    assert.are.equal("number", type(b[54].lo))               -- 2^53 does
    local text = prom.render{ prom.histogram(r, { name = "wide" }) }
    assert.truthy(text:find('\nwide_bucket{le="18014398509481983"} 2\n', 1, true), text)
    assert.truthy(text:find('\nwide_bucket{le="18446744073709551615"} 3\n', 1, true), text)
    if H.has("promtool") then
      local ok, out = promtool(text)
      assert(ok, "promtool refused:\n" .. out .. "\n" .. text)
    end
    assert.truthy(hist.text(r):find("9223372036854775808 -> 18446744073709551615 : 1", 1, true))
    m:close()
  end)

  it("refuses to render a family named like a histogram family's _count, _sum or _bucket", function()
    local h = prom.family{ name = "lat", type = "histogram" }
    h:add_histogram({}, { buckets = { { hi = 1, count = 2 } } })
    local g = prom.family{ name = "lat_count", type = "gauge" }
    g:add({}, 5)
    -- the text of both, as render would have written it: promtool refuses it
    if H.has("promtool") then
      local ok, out = promtool(table.concat(h:render()) .. table.concat(g:render()))
      assert.is_false(ok)
      H.mentions(out, { "lat" })
    end
    for _, order in ipairs{ { h, g }, { g, h } } do
      local _, msg = H.raised(prom.render, order)
      H.mentions(msg, { "'lat_count'", "histogram family 'lat'", "samples named 'lat_count'" })
    end
    local b = prom.family{ name = "lat_bucket", type = "counter" }
    local _, msg = H.raised(prom.render, { h, b })
    H.mentions(msg, { "'lat_bucket'" })
    -- apart, each renders; a gauge "lat" beside a histogram "lat_ms" too
    assert.truthy(prom.render{ h }:find("lat_count 2", 1, true))
    local h2 = prom.family{ name = "lat_ms", type = "histogram" }
    h2:add_histogram({}, { buckets = { { hi = 1, count = 1 } } })
    assert.truthy(prom.render{ prom.family{ name = "lat" }, h2 })
  end)

  it("format.log2_hist labels slots past 2^53 exactly, from a table of slots too", function()
    -- python's integers: slot 62 holds 2^62 .. 2^63 - 1, slot 63 2^63 .. 2^64 - 1
    local want = H.sh("/usr/bin/python3 -c 'print(2 ** 62, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1)'")
    local lo62, hi62, lo63, hi63 = want:match("^(%d+) (%d+) (%d+) (%d+)")
    local text = format.log2_hist({ [0] = 0, [62] = 2, [63] = 1 }, "v") -- [0]: slots from 0
    assert.truthy(text:find(lo62 .. " -> " .. hi62 .. " : 2 ", 1, true), text)
    assert.truthy(text:find(lo63 .. " -> " .. hi63 .. " : 1 ", 1, true), text)
    assert.truthy(format.log2_hist({ 0, 3, 0, 1 }):find("\n         2 -> 3           : 3 ", 1, true))
  end)

  it("adds up entries whose keys give the same labels: one series per label set", function()
    -- two keys differing only after the NUL of their char array: the same label
    local m = ebpf.create{ type = "hash", key = "char[8]", value = { { "slots", "u32[3]" } },
      max_entries = 4, name = "dup_slots" }
    local path = pinned(m)
    H.bpftool_update("pinned " .. path, "ab\0X\0\0\0\0", H.le(1, 4) .. H.le(2, 4) .. H.le(0, 4))
    H.bpftool_update("pinned " .. path, "ab\0Y\0\0\0\0", H.le(0, 4) .. H.le(5, 4) .. H.le(7, 4))
    local want, n = { 0, 0, 0 }, 0
    for _, v in pairs(H.dump(path)) do
      n = n + 1
      for s = 1, 3 do want[s] = want[s] + H.uint(v:sub(4 * s - 3, 4 * s)) end
    end
    assert.are.equal(2, n)
    local r = hist.read(m)
    assert.are.equal(1, #r.histograms)
    assert.are.equal("ab", r.histograms[1].labels.key)
    for s = 1, 3 do assert.are.equal(want[s], r.histograms[1].buckets[s].count) end
    local text = prom.render{ prom.histogram(r, { name = "dup" }) }
    local _, lines = text:gsub('dup_count{key="ab"}', "")
    assert.are.equal(1, lines, text)
    local fams = parse(text) -- prometheus_client: one _count sample for the label set
    local counts = 0
    for _, smp in ipairs(fams.dup.samples) do if smp.name == "dup_count" then counts = counts + 1 end end
    assert.are.equal(1, counts)
    m:close()
  end)

  it("gives a plain table cjson encodes, exact in JSON", function()
    local m = ebpf.create{ type = "hash", key = { { "dev", "u32" }, { "slot", "u32" } }, value = "u64",
      max_entries = 8, name = "j" }
    assert(m:update({ dev = 8, slot = 1 }, 3))
    assert(m:update({ dev = 8, slot = 12 }, 123456789012345))
    local r = hist.read(m, { kind = "log2", max_number = 1e14 - 1 })
    local back = cjson.decode(cjson.encode(r))
    assert.are.equal("log2", back.kind)
    assert.are.equal("slot_key", back.layout)
    assert.are.same({ "dev" }, back.label_names)
    assert.are.equal(m:info().id, back.map.id)
    local h = back.histograms[1]
    assert.are.equal("8", h.labels.dev)
    assert.are.equal(13, #h.buckets)
    assert.are.same({ slot = 12, lo = 4096, hi = 8191, count = "123456789012345" }, h.buckets[13])
    assert.are.equal(3, h.buckets[2].count)
    assert.are.equal("123456789012348", h.count) -- beyond max_number: a decimal string
    assert.is_nil(h.sum)
    m:close()
  end)

  it("feeds format.log2_hist: the same text as from a table of slots", function()
    local obj = ebpf.load("bpf/hist.bpf.o")
    local lat = obj:map("latency") -- the main job's histogram, with its BTF
    assert(lat:update(3, 4)); assert(lat:update(9, 1)); assert(lat:update(12, 2))
    local slots = {}
    for slot, per_cpu in lat:pairs() do slots[slot] = ebpf.sum(per_cpu) end
    local r = hist.read(lat, { kind = "log2" })
    assert.are.equal(32, #r.histograms[1].buckets)
    assert.are.equal(format.log2_hist(slots, "nsecs"), format.log2_hist(r.histograms[1], "nsecs"))
    assert.are.equal(format.log2_hist(slots, "nsecs"), hist.text(r, "nsecs"))
    assert.is_nil((hist.detect(lat))) -- "latency": marked by hand (hist=log2), not by name
    obj:close()
  end)

  it("refuses what is not a histogram, with what was expected and what was given", function()
    local s = ebpf.create{ type = "hash", key = "u32", value = "char[8]", max_entries = 2, name = "names" }
    local _, msg = H.raised(hist.read, s, { kind = "log2" })
    H.mentions(msg, { "map 'names'", "not a histogram", "an array of integer counts", "'slot'",
      "'slots'", "got hash u32 -> char[8]" })
    local kind, why = hist.detect(s)
    assert.is_nil(kind)
    H.mentions(why, { "not a histogram" })
    _, msg = H.raised(prom.collect, s, { type = "histogram" })
    H.mentions(msg, { "not a histogram" })
    s:close()
    local m = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 4, name = "oor" }
    assert(m:update(1000, 1))
    _, msg = H.raised(hist.read, m, { kind = "log2" })
    H.mentions(msg, { "slot 1000 is out of range", "0..127" })
    _, msg = H.raised(hist.read, m, { kind = "cubic" })
    H.mentions(msg, { "kind", "'log2' or 'linear'", "cubic" })
    _, msg = H.raised(hist.read, m, { kind = "log2", step = 10 })
    H.mentions(msg, { "step is for kind 'linear'" })
    _, msg = H.raised(hist.read, m, { kind = "linear", step = 0.5 })
    H.mentions(msg, { "step", "integer >= 1", "0.5" })
    _, msg = H.raised(hist.read, m, { bins = 3 })
    H.mentions(msg, { "unknown option 'bins'" })
    _, msg = H.raised(prom.collect, m, { type = "histogram", hist = "log2", value = "x" })
    H.mentions(msg, { "value and labels do not apply" })
    _, msg = H.raised(prom.collect, m, { step = 4 })
    H.mentions(msg, { "step is for type 'histogram'" })
    local fam = prom.family{ name = "h", type = "histogram" }
    _, msg = H.raised(fam.add_histogram, fam, {}, { buckets = { { hi = 3, count = 1 }, { hi = 2, count = 1 } } })
    H.mentions(msg, { "bounds must increase", "2 after 3" })
    _, msg = H.raised(fam.add_histogram, fam, {}, { buckets = { { hi = 3 } } })
    H.mentions(msg, { "bucket 1", "count" })
    m:close()
  end)
end)
