-- examples/openresty/serverutil.lua: what mapserver.lua, eventserver.lua and
-- pageserver.lua share: the served lists' "REF,k=v,..." items, one-line
-- errors, and the plain-text error answer. Plain Lua (5.1 syntax); only
-- fail() and fail_err() need nginx.
local M = {}

--- an error (a luaebpf error table or a string) on one line, without the
-- "file:line: " a Lua error() prepends
function M.one_line(err)
  local s = tostring(err):gsub("^[^%s:]+:%d+: ", "")
  return (s:gsub("%s*\n%s*", " "))
end

--- "ref,k=v,..." -> { ref, k = value, ... }. `opts` maps each option name
-- to a function(v) giving its value, or nil when v is not one; an unknown
-- option or a refused value raises "<who>: '<s>': expected <usage>".
function M.parse_ref(s, who, usage, opts)
  local spec, first = {}, true
  for part in s:gmatch("[^,]+") do
    if first then
      spec[1], first = part, false
    else
      local k, v = part:match("^(%w+)=(.+)$")
      local value = k and opts[k] and opts[k](v)
      if value == nil then error(who .. ": '" .. s .. "': expected " .. usage, 0) end
      spec[k] = value
    end
  end
  if not spec[1] then error(who .. ": an empty item: expected " .. usage, 0) end
  return spec
end

-- the status of a luaebpf error's class
local STATUS = { missing = 404, permission = 403 }

--- ends the request with a status and a one-line reason (text/plain); a
-- status of 500 or more is logged too
function M.fail(status, reason)
  if status >= 500 then ngx.log(ngx.ERR, reason) end
  ngx.status = status
  ngx.header["Content-Type"] = "text/plain; charset=utf-8"
  ngx.say(reason)
end

--- ends the request with the status of a luaebpf error (404 missing, 403
-- permission, else 500) and the error on one line, after `prefix` if given
function M.fail_err(err, prefix)
  local class = type(err) == "table" and err.class
  return M.fail(STATUS[class] or 500, (prefix or "") .. M.one_line(err))
end

return M
