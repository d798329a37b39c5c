-- spec/tcpconn_spec.lua: bpf/tcpconn.bpf.o and examples/tcpconn.lua against
-- connections this spec makes. A Python child listens on fresh ports of
-- 127.0.0.1 and ::1, connects to itself N times per port and one more time
-- to a port nobody listens on, and prints what its own socket layer (the
-- oracle: getsockname/getpeername, text from the C library's inet_ntop) says
-- each connection's addresses are. Other connections of the machine are
-- counted too: only rows with these ports count. Needs root; 5.1 syntax.
local H = require "spec.helpers"
local ebpf = require "luaebpf"

local N = 3
local CONNECT = [[
import socket, sys
n = int(sys.argv[1])
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    srv = socket.socket(fam)
    srv.bind((host, 0))
    srv.listen()
    port = srv.getsockname()[1]
    for _ in range(n):
        c = socket.create_connection((host, port))
        a, _ = srv.accept()
        print(fam == socket.AF_INET and "ipv4" or "ipv6", port, c.getsockname()[0], c.getpeername()[0])
        c.close(); a.close()
    # refused: never ESTABLISHED, so never counted
    closed = socket.socket(fam); closed.bind((host, 0)); dead = closed.getsockname()[1]; closed.close()
    try:
        socket.create_connection((host, dead)).close()
    except OSError:
        pass
    print("refused", dead)
    srv.close()
]]

-- runs the Python child; returns { {family, port, laddr, raddr}, ... } and the refused ports
local function connect(dir)
  H.write_file(dir .. "/connect.py", CONNECT)
  local conns, refused = {}, {}
  for line in H.run("/usr/bin/python3 " .. dir .. "/connect.py " .. N):gmatch("[^\n]+") do
    local fam, port, laddr, raddr = line:match("^(ipv%d) (%d+) (%S+) (%S+)$")
    if fam then
      conns[#conns + 1] = { family = fam, port = tonumber(port), laddr = laddr, raddr = raddr }
    else
      refused[#refused + 1] = tonumber(line:match("^refused (%d+)$"))
    end
  end
  return conns, refused
end

-- the expected rows: per port, N out (this host connected) and N in (it accepted)
local function expected_rows(conns)
  local want = {}
  for _, c in ipairs(conns) do
    for _, dir in ipairs{ "out", "in" } do
      local id = table.concat({ dir, c.laddr, c.raddr, c.port }, " ")
      want[id] = (want[id] or 0) + 1
    end
  end
  return want
end

local function ports_of(conns)
  local p = {}
  for _, c in ipairs(conns) do p[c.port] = true end
  return p
end

describe("bpf/tcpconn.bpf.o read through decoders", function()
  local dir
  before_each(function() dir = H.tmpdir("lxtcp") end)
  after_each(function() H.run("rm -rf " .. dir) end)

  it("counts each established connection by local and remote address (as text), port and direction",
    function()
      local obj = ebpf.load("bpf/tcpconn.bpf.o")
      local link = obj:attach("on_state")
      local conns, refused = connect(dir)
      link:close()
      assert.are.equal(2 * N, #conns)
      local ports = ports_of(conns)
      local got = {}
      for _, spec in ipairs{ { "conns4", "ipv4" }, { "conns6", "ipv6" } } do
        local m = obj:map(spec[1])
        m:codec{ key = "btf", decode = { laddr = spec[2], raddr = spec[2] } }
        assert.are.equal(spec[2], m:layout().key.fields[1].kind)
        for k, count in m:pairs() do
          for _, r in ipairs(refused) do assert.are_not.equal(r, k.port) end
          if ports[k.port] then
            -- the example prints its own side: laddr is this end, raddr the peer
            local id = table.concat({ k.dir == 1 and "out" or "in", k.laddr, k.raddr, k.port }, " ")
            got[id] = (got[id] or 0) + count
          end
        end
        m:close()
      end
      obj:close()
      assert.are.same(expected_rows(conns), got)
    end)
end)

describe("examples/tcpconn.lua", function()
  local dir
  before_each(function() dir = H.tmpdir("lxtcpx") end)
  after_each(function() H.run("rm -rf " .. dir) end)

  it("prints a table of the connections made while it ran, addresses as text, and exits 0",
    function()
      H.run(string.format("(%s examples/tcpconn.lua 3 >%s/out 2>%s/err </dev/null; echo $? >%s/rc) "
        .. ">/dev/null 2>&1 &", H.lua_bin(), dir, dir, dir))
      -- connect only once the program is attached: the example says so on stderr
      for _ = 1, 100 do
        local f = io.open(dir .. "/err")
        local s = f and f:read("*a") or ""
        if f then f:close() end
        if s:find("counting", 1, true) then break end
        H.run("sleep 0.1")
      end
      local conns = connect(dir)
      for _ = 1, 100 do
        if io.open(dir .. "/rc") then break end
        H.run("sleep 0.1")
      end
      assert.are.equal("0", H.read_file(dir .. "/rc"):match("%d+"), H.read_file(dir .. "/err"))
      local out = H.read_file(dir .. "/out")
      assert.truthy(out:match("^DIR%s+LOCAL%s+REMOTE%s+PORT%s+COUNT\n"), out)
      local ports, got = ports_of(conns), {}
      for dirn, laddr, raddr, port, count in out:gmatch("(%a+)%s+(%S+)%s+(%S+)%s+(%d+)%s+(%d+)\n") do
        if ports[tonumber(port)] then
          got[table.concat({ dirn, laddr, raddr, port }, " ")] = tonumber(count)
        end
      end
      assert.are.same(expected_rows(conns), got)
    end)
end)
