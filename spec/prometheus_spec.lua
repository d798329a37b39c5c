-- spec/prometheus_spec.lua: luaebpf.prometheus against real maps (made and
-- filled by bpftool, or by bpf/shapes.bpf.o for BTF struct keys), its text
-- checked line by line and parsed by the real Prometheus parser
-- (/usr/bin/python3 with Debian's python3-prometheus-client, through
-- io.popen). Shared by every Lua version: 5.1 syntax.
local ebpf, H = require "luaebpf", require "spec.helpers"
local prom = require "luaebpf.prometheus"
local cjson = require "cjson"

local U64MAX = "18446744073709551615"
local INT64 = math.type ~= nil -- 5.3+: 64-bit integers

-- the parser's view of an exposition text: an array of
-- { name, type, help, samples = { { name, labels, value } } }, values as the
-- parser's float repr; or raises with the parser's complaint
local PARSER = [[
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(open(sys.argv[1], encoding="utf-8").read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": repr(s.value)}
                            for s in f.samples]})
print(json.dumps(out))
]]

local function parse(text)
  local script, file = os.tmpname(), os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(PARSER)
  f:close()
  f = assert(io.open(file, "wb"))
  f:write(text)
  f:close()
  local out, ok = H.sh("/usr/bin/python3 " .. script .. " " .. file)
  os.remove(script)
  os.remove(file)
  if not ok then error("the Prometheus parser refused the text: " .. out .. "\n" .. text, 2) end
  return cjson.decode(out)
end

local function family(fams, name)
  for _, f in ipairs(fams) do if f.name == name then return f end end
end

local lines = H.lines

-- little-endian bytes of a decimal string (any size; for u64 beyond 2^53)
local function le_dec(dec, size)
  local digits, bytes = dec, {}
  for i = 1, size do
    local q, r, out = 0, 0, {}
    for d in digits:gmatch("%d") do
      r = r * 10 + tonumber(d)
      q = math.floor(r / 256)
      r = r % 256
      if #out > 0 or q > 0 then out[#out + 1] = tostring(q) end
    end
    bytes[i] = string.char(r)
    digits = #out > 0 and table.concat(out) or "0"
  end
  return table.concat(bytes)
end

describe("luaebpf.prometheus", function()
  local fs
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)

  it("turns a u32 -> u64 hash into one sample per key, exact past 2^53 and 2^63", function()
    local path = fs:bpftool_map{ type = "hash", key = 4, value = 8, name = "prom_counts",
      fill = { [1] = 5, [2] = le_dec("9007199254740993", 8), [3] = le_dec(U64MAX, 8) } }
    local m = ebpf.open(path, { key = "u32", value = "u64" })
    local text = prom.text(m, { name = "syscalls_total", type = "counter", help = "calls" })
    m:close()
    local l = lines(text)
    assert.is_true(l["# HELP syscalls_total calls"])
    assert.is_true(l["# TYPE syscalls_total counter"])
    assert.is_true(l['syscalls_total{key="1"} 5'])
    assert.is_true(l['syscalls_total{key="2"} 9007199254740993'])
    assert.is_true(l['syscalls_total{key="3"} 18446744073709551615'])
    local fams = parse(text)
    assert.are.equal(1, #fams)
    assert.are.equal("counter", fams[1].type)
    assert.are.equal("calls", fams[1].help)
    local got = {}
    for _, s in ipairs(fams[1].samples) do got[s.labels.key] = s.value end
    assert.are.same({ ["1"] = "5.0", ["2"] = "9007199254740992.0", ["3"] = "1.8446744073709552e+19" }, got)
  end)

  it("sums per-CPU values exactly, past 2^64", function()
    local n = ebpf.ncpus()
    local path = fs:bpftool_map{ type = "percpu_hash", key = 4, value = 8, name = "prom_pcpu" }
    local m = ebpf.open(path, { access = "rw", key = "u32", value = "u64", int64 = "string" })
    local per = {}
    for c = 1, n do per[c] = INT64 and -1 or U64MAX end -- 2^64 - 1 on every CPU
    assert(m:update(7, per))
    local small = {}
    for c = 1, n do small[c] = c end
    assert(m:update(8, small))
    local text = prom.text(m, { name = "bytes_total", type = "counter" })
    m:close()
    -- n * (2^64 - 1), as a decimal string built by hand
    local want = "0"
    for _ = 1, n do want = prom.sum({ want, U64MAX }) end
    local l = lines(text)
    assert.is_true(l['bytes_total{key="7"} ' .. want], text)
    assert.is_true(l['bytes_total{key="8"} ' .. string.format("%d", n * (n + 1) / 2)], text)
    local fams = parse(text)
    assert.are.equal(2, #fams[1].samples)
  end)

  describe("with BTF struct keys and values (bpf/shapes.bpf.o)", function()
    local obj, shapes
    setup(function()
      obj = ebpf.load("bpf/shapes.bpf.o")
      shapes = obj:map("shapes")
      shapes:codec{ int64 = "string" }
      assert(shapes:update({ pid = 1, comm = 'a"b\\c\nd' },
        { u64v = INT64 and -1 or U64MAX, s64v = -5, flag = true, ["in"] = { bytes = 3 } }))
      assert(shapes:update({ pid = 2, comm = "init" }, { u64v = 7, s64v = 9 }))
    end)
    teardown(function() obj:close() end)

    it("gives one label per key field, escaped as the format says", function()
      local text = prom.text(shapes, { name = "shape_u64", value = "u64v", help = 'a\\b\nc' })
      local l = lines(text)
      assert.is_true(l["# HELP shape_u64 a\\\\b\\nc"], text)
      assert.is_true(l['shape_u64{pid="1",comm="a\\"b\\\\c\\nd"} 18446744073709551615'], text)
      assert.is_true(l['shape_u64{pid="2",comm="init"} 7'], text)
      local f = parse(text)[1]
      assert.are.equal('a\\b\nc', f.help)
      local comms = {}
      for _, s in ipairs(f.samples) do comms[s.labels.comm] = s.labels.pid end
      assert.are.same({ ['a"b\\c\nd'] = "1", init = "2" }, comms) -- round trip through the parser
    end)

    it("makes one family per numeric field of a struct value, nested fields joined with _", function()
      local fams = prom.collect(shapes, { name = "shape" })
      local names = {}
      for _, f in ipairs(fams) do names[f.name] = f end
      assert.is_truthy(names.shape_u64v)
      assert.is_truthy(names.shape_s64v)
      assert.is_truthy(names.shape_in_bytes)
      assert.is_truthy(names.shape_anon_a) -- anonymous member: a field of the parent
      assert.is_nil(names.shape_name)      -- a char array is no number
      local text = prom.render(fams)
      local l = lines(text)
      assert.is_true(l['shape_s64v{pid="1",comm="a\\"b\\\\c\\nd"} -5'], text)
      assert.is_true(l['shape_flag{pid="1",comm="a\\"b\\\\c\\nd"} 1'], text)
      assert.is_true(l['shape_in_bytes{pid="1",comm="a\\"b\\\\c\\nd"} 3'], text)
      local parsed = parse(text)
      assert.are.equal(#fams, #parsed)
      for _, f in ipairs(parsed) do assert.are.equal("gauge", f.type) end
    end)

    it("sums per-CPU struct fields, and takes a function for the value and labels", function()
      local per = obj:map("percpu_inner")
      local n = ebpf.ncpus()
      local values = {}
      for c = 1, n do values[c] = { port = 1, bytes = c * 10 } end
      assert(per:update(5, values))
      local text = prom.text(per, { name = "inner_bytes", value = "bytes",
        const_labels = { host = "a b" } })
      assert.is_true(lines(text)['inner_bytes{host="a b",key="5"} ' .. string.format("%d", 10 * n * (n + 1) / 2)], text)
      text = prom.text(per, { name = "inner_ports", value = function(v) return v.port end,
        labels = function(k) return { bucket = "b" .. k } end })
      assert.is_true(lines(text)['inner_ports{bucket="b5"} ' .. string.format("%d", n)], text)
      parse(text)
    end)
  end)

  it("reads in read_batch slices with a yield between them, to the same text", function()
    local fill = {}
    for i = 1, 300 do fill[i] = i * 7 end
    local path = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = 512, fill = fill }
    local m = ebpf.open(path, { key = "u32", value = "u64" })
    local yields = 0
    local sliced = prom.text(m, { name = "x", slice = 64, yield = function() yields = yields + 1 end })
    local whole = prom.text(m, { name = "x" })
    m:close()
    assert.is_true(yields >= 4)
    local a, b = lines(sliced), lines(whole)
    assert.are.same(b, a)
    local count = 0
    for line in pairs(a) do if line:find("^x{") then count = count + 1 end end
    assert.are.equal(300, count)
    assert.are.equal(300, #parse(sliced)[1].samples)
  end)

  it("writes HELP and TYPE for an empty map, and hex labels for raw keys", function()
    local path = fs:bpftool_map{ type = "hash", key = 6, value = 8, name = "prom_raw",
      fill = { ["\1\2\3\4\5\255"] = 9 } }
    local m = ebpf.open(path, { value = "u64" })
    local text = prom.text(m)
    m:close()
    assert.is_true(lines(text)['ebpf_map_prom_raw{key="0102030405ff"} 9'], text)
    local empty = fs:bpftool_map{ type = "hash", key = 4, value = 8, name = "prom_empty" }
    m = ebpf.open(empty, { key = "u32", value = "u64" })
    text = prom.text(m, { type = "untyped" })
    m:close()
    assert.are.equal("# HELP ebpf_map_prom_empty eBPF hash map 'prom_empty' (id "
      .. string.format("%d", H.show(empty).id) .. ")\n# TYPE ebpf_map_prom_empty untyped\n", text)
    local f = parse(text)[1]
    assert.are.equal("unknown", f.type)
    assert.are.equal(0, #f.samples)
  end)

  it("refuses bad names, types, options and values", function()
    assert.has_error(function() prom.family{ name = "1bad" } end)
    assert.has_error(function() prom.family{ name = "ok", type = "counterz" } end)
    local path = fs:bpftool_map{ type = "hash", key = 4, value = 8, fill = { [1] = 1 } }
    local m = ebpf.open(path, { key = "u32", value = "u64" })
    assert.has_error(function() prom.collect(m, { nmae = "x" }) end)
    assert.has_error(function() prom.collect(m, { value = 3 }) end)
    assert.has_error(function() prom.collect(m, { value = function() return "n/a" end }) end)
    m:close()
    local f1, f2 = prom.family{ name = "a" }, prom.family{ name = "a" }
    assert.has_error(function() prom.render{ f1, f2 } end)
  end)

  it("makes names, label names and UTF-8 safe", function()
    assert.are.equal("_9a_b:c", prom.metric_name("9a-b:c"))
    assert.are.equal("_x", prom.label_name("__x"))
    assert.are.equal("a_b", prom.label_name("a.b"))
    assert.are.equal("\\\\ \\\" \\n h\\\\xff \226\130\172", prom.escape_label_value('\\ " \n h\255 \226\130\172'))
    assert.are.equal("-1", prom.number(INT64 and -1 or "-1"))
    assert.are.equal(U64MAX, prom.number(INT64 and -1 or U64MAX, true))
    assert.are.equal("1.5", prom.number(1.5))
    assert.are.equal("+Inf", prom.number(math.huge))
    assert.are.equal("0", prom.sum({ "-3", 1, 2 }))
    assert.are.equal("36893488147419103230", prom.sum({ U64MAX, U64MAX }))
  end)
end)
