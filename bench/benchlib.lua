-- bench/benchlib.lua: what the bench/ scripts share. Loading it points
-- package.cpath at what make built for this interpreter: the luaebpf core and
-- cbench.so (bench/cbench.c). 5.1 syntax: make LUA=... runs the benchmarks on any Lua.
local B = {}

-- make LUA=lua5.4|lua5.3|luajit builds the core and cbench.so under build/$(LUA)/
local build = "./build/" .. (jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")) .. "/?.so;"
package.cpath = build .. package.cpath

B.cbench = require "cbench"
B.now = B.cbench.now
-- this thread's CPU time: what the sides are timed in (cbench's loops too), so
-- other work on a shared machine costs neither side
B.cpu = B.cbench.cputime

-- distinct values that use the high bits (cbench.fill stores the same)
function B.expected(k) return k * 2654435761 + 7 end

function B.fail(script, msg)
  io.stderr:write(script, ": FAILED: ", msg, "\n")
  os.exit(1)
end

function B.median(t)
  local s = {}
  for i = 1, #t do s[i] = t[i] end
  table.sort(s)
  local n = #s
  if n % 2 == 1 then return s[(n + 1) / 2] end
  return (s[n / 2] + s[n / 2 + 1]) / 2
end

function B.round_up(x, a) return math.ceil(x / a) * a end

-- the command that runs this interpreter (for child processes)
function B.interpreter()
  local i = -1
  while arg and arg[i - 1] do i = i - 1 end
  return arg and arg[i] or "lua5.4"
end

-- "met" or "MISSED", for the summary lines
function B.verdict(ok) return ok and "met" or "MISSED" end

-- a one-line explanation of a target figure
function B.target(text) print("  target: " .. text) end

-- integer sums wrap at 2^64 on 5.3+ as cbench's do; on 5.1/LuaJIT a sum is a
-- double that rounds and does not wrap, so compare modulo 2^64, roughly
function B.same_sum(a, b)
  if math.type then return a == b end
  local m = 2 ^ 64
  local d = math.abs(a % m - b % m)
  return math.min(d, m - d) <= 1e-9 * m
end

-- rounds of every side in turn, the order rotated each round so drift hits
-- all sides alike. sides: { { name =, run = function() -> ns per op end } }.
-- A full collection before each side keeps one side's garbage off another's
-- clock. ratio = { a, b } adds side a / side b to each round's line.
-- Returns { [name] = median ns per op }.
function B.rounds(nrounds, sides, unit, ratio)
  local got = {}
  for _, s in ipairs(sides) do got[s.name] = {} end
  for r = 1, nrounds do
    local line = {}
    for i = 0, #sides - 1 do
      local s = sides[(r - 1 + i) % #sides + 1]
      collectgarbage("collect")
      got[s.name][r] = s.run()
    end
    for _, s in ipairs(sides) do
      line[#line + 1] = string.format("%s %.1f", s.name, got[s.name][r])
    end
    local extra = ratio and string.format(", %s/%s %.3f", ratio[1], ratio[2],
      got[ratio[1]][r] / got[ratio[2]][r]) or ""
    print(string.format("  round %d: %s ns/%s%s", r, table.concat(line, ", "), unit, extra))
  end
  collectgarbage("collect")
  local med = {}
  for _, s in ipairs(sides) do med[s.name] = B.median(got[s.name]) end
  return med
end

-- "a/b 1.07 (<= 1.10 met)": one ratio of medians against its target
function B.ratio_text(med, a, b, target)
  local r = med[a] / med[b]
  return string.format("%s/%s %.3f%s", a, b, r,
    target and string.format(" (<= %.2f %s)", target, B.verdict(r <= target)) or ""), r
end

-- B.then_map(so, id, opts): the map of id opened through an older build of
-- the core (its core.so at path so; bench/lookup_then.sh builds one), for a
-- side that times that build's methods against this one's in the same
-- process. Both builds register their metatables under the same registry
-- names, so this build's are set aside while the older one loads and opens
-- the map, and put back after: each build's handles then carry its own
-- metatable, which its methods hold as an upvalue. A finalizer may look its
-- build's metatables up in the registry, so none may run while the other
-- build's are there: the collector is stopped for the swap, and the older
-- build's garbage is collected before this build's metatables come back. A
-- script using this ends with os.exit, not lua_close, for the same reason.
function B.then_map(so, id, opts)
  collectgarbage("collect") -- this build's garbage, under its own metatables
  collectgarbage("stop")
  local reg, set_aside = debug.getregistry(), {}
  for k, v in pairs(reg) do
    if type(k) == "string" and k:find("^luaebpf%.") then set_aside[k] = v end
  end
  for k in pairs(set_aside) do reg[k] = nil end
  local open, err = package.loadlib(so, "luaopen_luaebpf_core")
  local ok, m = pcall(function()
    return assert(assert(open, err)().open_id(id, opts))
  end)
  collectgarbage("collect") -- the older build's garbage, under its own metatables
  for k in pairs(reg) do
    if type(k) == "string" and k:find("^luaebpf%.") then reg[k] = nil end
  end
  for k, v in pairs(set_aside) do reg[k] = v end
  collectgarbage("restart")
  if not ok then error(m, 2) end
  return m
end

-- deep equality of two decoded values (tables field by field)
function B.deep_equal(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not B.deep_equal(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

return B
