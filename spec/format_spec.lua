-- spec/format_spec.lua: luaebpf.format, and the examples that use it run for real
local format = require "luaebpf.format"
local helpers = require "spec.helpers"

describe("format.log2_hist", function()
  it("prints one row per slot from the first to the last non-empty slot", function()
    local out = format.log2_hist({ [0] = 0, [1] = 0, [2] = 4, [3] = 0, [4] = 8 }, "usecs")
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal(4, #lines) -- header, slots 2, 3, 4
    assert.is_truthy(lines[1]:find("usecs", 1, true))
    assert.is_truthy(lines[2]:find("4 -> 7", 1, true))
    assert.is_truthy(lines[3]:find("8 -> 15", 1, true))
    assert.is_truthy(lines[4]:find("16 -> 31", 1, true))
  end)

  it("scales the largest count to a full bar and the others in proportion", function()
    local out = format.log2_hist({ [0] = 10, [1] = 5 })
    local full = out:match("0 %-> 1%s+: 10%s+|(%**)")
    local half = out:match("2 %-> 3%s+: 5%s+|(%**)")
    assert.are.equal(40, #full)
    assert.are.equal(20, #half)
  end)

  it("sums per-CPU arrays and takes a plain Lua array as slots 0, 1, 2", function()
    local out = format.log2_hist({ { 1, 2 }, { 0, 0 }, { 3, 3 } })
    assert.is_truthy(out:find("0 %-> 1%s+: 3 "))
    assert.is_truthy(out:find("4 %-> 7%s+: 6 "))
  end)

  it("says so when there are no samples", function()
    assert.are.equal("(no samples)\n", format.log2_hist({ [0] = 0 }))
  end)
end)

describe("format.table_rows", function()
  it("pads columns to their widest cell and right-aligns '>' columns", function()
    local out = format.table_rows({ ">PID", "COMM" }, { { 1, "init" }, { 12345, "lua" } })
    assert.are.equal("  PID  COMM\n    1  init\n12345  lua\n", out)
  end)
end)

describe("examples/syscount.lua (make run)", function()
  it("shows the top processes each second, then a latency histogram, and exits 0", function()
    local out, ok = helpers.sh(helpers.lua_bin() .. " examples/syscount.lua 2")
    assert.is_true(ok, out)
    local seconds = 0
    for _ in out:gmatch("%d+/2 s  %d+ syscalls/s") do seconds = seconds + 1 end
    assert.are.equal(2, seconds, out)
    assert.is_truthy(out:find("PID  COMM", 1, true), out)
    -- a row: pid, command, a rate and a total
    assert.is_truthy(out:find("\n%s*%d+  [%w%p]+%s+%d+%s+%d+\n"), out)
    assert.is_truthy(out:find("nsecs : count", 1, true), out)
    assert.is_truthy(out:find("|%*+%s*|"), out)
  end)

  it("leaves no program attached behind", function()
    -- its own programs, by the prog ids its fds show while it runs: other
    -- processes on the machine may load programs of the same names meanwhile
    local pid = tonumber(helpers.run(helpers.lua_bin() ..
      " examples/syscount.lua 2 >/dev/null 2>&1 & echo $!"):match("%d+"))
    local ids = {}
    for _ = 1, 40 do
      local out = helpers.run("cat /proc/" .. pid .. "/fdinfo/* 2>/dev/null | "
        .. "sed -n 's/^prog_id:\\s*//p' | sort -u")
      ids = {}
      for id in out:gmatch("%d+") do ids[#ids + 1] = id end
      if #ids >= 2 then break end -- on_enter and on_exit
      helpers.run("sleep 0.05")
    end
    assert.is_true(#ids >= 2, "syscount's programs were not seen while it ran")
    helpers.run("while kill -0 " .. pid .. " 2>/dev/null; do sleep 0.1; done")
    for _, id in ipairs(ids) do
      assert.is_true(helpers.prog_gone(id), "program " .. id .. " is still loaded")
    end
  end)

  it("refuses a duration that is not a whole number of seconds", function()
    local out, ok = helpers.sh(helpers.lua_bin() .. " examples/syscount.lua 0.5")
    assert.is_false(ok)
    assert.is_truthy(out:find("usage", 1, true))
  end)
end)
