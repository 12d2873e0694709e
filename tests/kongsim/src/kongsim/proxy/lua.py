"""User Lua for the ``pre-function`` and ``post-function`` plugins, run for real in LuaJIT
(through ``lupa``), in Kong 3.9.3's default sandbox (``untrusted_lua = sandbox``).

What follows Kong (``kong/plugins/pre-function/_handler.lua``, ``kong/tools/sandbox.lua``,
``kong/tools/kong-lua-sandbox.lua``):

- Each string of a phase array is compiled in text mode on first use. A chunk that returns a
  function is run once, and from then on the function it returned runs (Kong's "0.2.0" style,
  upvalues kept between requests); any other chunk runs on every request.
- The sandbox environment: the safe globals and the safe parts of ``coroutine``, ``math``,
  ``os``, ``string`` and ``table`` (read-only: writing a field raises ``Can not modify
  <module>.<field>. Protected by the sandbox.``), ``_G`` pointing at the environment itself,
  ``kong`` and ``ngx``, a ``require`` that refuses every module not listed in
  ``untrusted_lua_sandbox_requires``, and the globals named in
  ``untrusted_lua_sandbox_environment``. ``untrusted_lua = on`` gives the whole global table;
  ``off`` refuses to load any function (the request gets a 500).
- ``kong.response.exit`` ends the phase at once (Kong yields the plugin's coroutine), also
  from inside ``pcall``; a Lua error ends the request with Kong's 500
  ``An unexpected error occurred`` and the error in the node's error log.

The PDK is the subset a header-mapping function needs (see ``README.md`` in this directory):
``kong.request.get_header/get_headers/get_method/get_path/get_raw_query/get_scheme/get_host``,
``kong.service.request.set_header/add_header/clear_header``,
``kong.response.exit/error/set_header/add_header``, ``kong.client.get_ip/get_forwarded_ip``,
``kong.log`` and ``kong.log.<level>``, ``kong.ctx.shared/plugin``, ``kong.version``;
``ngx.var`` (``http_*``, ``uri``, ``request_uri``, ``request_method``, ``remote_addr``,
``host``, ``scheme``, ``args``), ``ngx.req.get_headers/set_header/clear_header``,
``ngx.log`` with the level constants, ``ngx.time``, ``ngx.now``, ``ngx.null``. Anything else
is ``nil`` (calling it is a runtime error, so a 500).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger("kongsim")

PHASES = ("certificate", "rewrite", "access", "header_filter", "body_filter", "log")


class LuaUnavailable(RuntimeError):
    """``lupa`` is not installed (Debian: ``python3-lupa``)."""


def _lupa() -> Any:
    """LuaJIT, as Kong runs: lupa 2's ``luajit21`` module, else lupa 1's default runtime
    (Debian 12's ``python3-lupa`` is built on LuaJIT)."""
    try:
        from lupa import luajit21  # type: ignore[import-not-found]

        return luajit21
    except ImportError:
        pass
    try:
        import lupa  # type: ignore[import-not-found]
    except ImportError as exc:
        raise LuaUnavailable("the pre-function plugin needs lupa (python3-lupa)") from exc
    return lupa


def _deny_attributes(obj: Any, name: Any, is_setting: bool) -> Any:
    # Lua code never reaches a Python object's attributes (no escape from the sandbox).
    raise AttributeError("access denied")


def new_runtime() -> Any:
    module = _lupa()
    kwargs: dict[str, Any] = {
        "register_eval": False,
        "unpack_returned_tuples": True,
        "attribute_filter": _deny_attributes,
    }
    try:
        return module.LuaRuntime(register_builtins=False, **kwargs)
    except TypeError:  # lupa 1.x before register_builtins
        runtime = module.LuaRuntime(**kwargs)
        runtime.execute("python = nil")
        return runtime


_syntax_lock = threading.Lock()
_syntax_runtime: list[Any] = []


def syntax_error(code: str) -> str | None:
    """``loadstring(code)``'s error, as the plugin schema reports it, or ``None``."""
    with _syntax_lock:
        if not _syntax_runtime:
            runtime = new_runtime()
            _syntax_runtime.append(
                runtime.eval("function(s) local _, err = loadstring(s) return err end")
            )
        return _syntax_runtime[0](code)


# The sandbox and the phase runner, in Lua. ``setup`` receives the Python side of the PDK as a
# table of functions (kept as upvalues, so user code never reaches them) and returns
# ``compile(codes, mode, requires, env_vars) -> runner`` and ``run(runner) -> status, err``.
_BOOT = r"""
local py = ...
local EXIT = {}

local SAFE = {
  _G_names = "_VERSION assert error ipairs next pairs pcall select tonumber tostring type "
      .. "unpack xpcall",
  coroutine = "create resume running status wrap yield",
  math = "abs acos asin atan atan2 ceil cos cosh deg exp fmod floor frexp huge ldexp log log10 "
      .. "max min modf pi pow rad random sin sinh sqrt tan tanh",
  os = "clock date difftime time",
  string = "byte char find format gmatch gsub len lower match rep reverse sub upper",
  table = "concat insert maxn remove sort",
}

local BASE = {}
for name in SAFE._G_names:gmatch("%S+") do BASE[name] = _G[name] end
for _, module in ipairs({"coroutine", "math", "os", "string", "table"}) do
  local fields = {}
  for name in SAFE[module]:gmatch("%S+") do fields[name] = _G[module][name] end
  BASE[module] = setmetatable({}, {
    __index = fields,
    __newindex = function(_, name)
      error("Can not modify " .. module .. "." .. name .. ". Protected by the sandbox.")
    end,
  })
end

local function headers_table(list)
  local t = {}
  for i = 1, #list, 2 do
    local name, value = list[i], list[i + 1]
    local seen = t[name]
    if seen == nil then
      t[name] = value
    elseif type(seen) == "table" then
      seen[#seen + 1] = value
    else
      t[name] = { seen, value }
    end
  end
  return setmetatable(t, { __index = function(tt, k)
    if type(k) == "string" then
      local lower = k:lower():gsub("_", "-")
      if lower ~= k then return rawget(tt, lower) end
    end
  end })
end

local function header_value(value)
  local kind = type(value)
  if kind == "string" then return value end
  if kind == "number" or kind == "boolean" then return tostring(value) end
  if kind == "table" then
    local out = {}
    for i, v in ipairs(value) do out[i] = header_value(v) end
    return out
  end
  error("invalid header value for \"" .. tostring(value) .. "\": got " .. kind
        .. ", expected array of string, string, number or boolean", 3)
end

local function check_name(name)
  if type(name) ~= "string" then error("header name must be a string", 3) end
end

local function set_headers(fn, name, value)
  check_name(name)
  value = header_value(value)
  if type(value) == "table" then
    py.clear_header(name)
    for _, v in ipairs(value) do py.add_header(name, v) end
  else
    fn(name, value)
  end
end

local function log_at(level)
  return function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    py.log(level, table.concat(parts))
  end
end

local request_ctx = {}

local kong = {
  version = py.version,
  version_num = py.version_num,
  request = {
    get_header = function(name) check_name(name) return py.get_header(name) end,
    get_headers = function() return headers_table(py.get_headers()) end,
    get_method = function() return py.var("request_method") end,
    get_path = function() return py.get_path() end,
    get_raw_query = function() return py.var("args") or "" end,
    get_scheme = function() return py.var("scheme") end,
    get_host = function() return py.var("host") end,
  },
  service = {
    request = {
      set_header = function(name, value) set_headers(py.set_header, name, value) end,
      add_header = function(name, value) set_headers(py.add_header, name, value) end,
      clear_header = function(name) check_name(name) py.clear_header(name) end,
    },
  },
  response = {
    exit = function(status, body, headers)
      if type(status) ~= "number" then error("code must be a number", 2) end
      if status < 100 or status > 599 then
        error("code must be a number between 100 and 599", 2)
      end
      if body ~= nil and type(body) ~= "string" and type(body) ~= "table" then
        error("body must be a nil, string or table", 2)
      end
      if headers ~= nil and type(headers) ~= "table" then
        error("headers must be a nil or table", 2)
      end
      py.exit(status, body, headers)
      coroutine.yield(EXIT)
    end,
    error = function(status, message, headers)
      if type(status) ~= "number" or status < 400 or status > 599 then
        error("code must be a number between 400 and 599", 2)
      end
      py.error(status, message, headers)
      coroutine.yield(EXIT)
    end,
    set_header = function(name, value)
      check_name(name) py.set_response_header(name, tostring(value))
    end,
    add_header = function(name, value)
      check_name(name) py.set_response_header(name, tostring(value))
    end,
  },
  client = {
    get_ip = function() return py.var("realip_remote_addr") end,
    get_forwarded_ip = function() return py.var("remote_addr") end,
  },
  log = setmetatable({
    alert = log_at("alert"), crit = log_at("crit"), err = log_at("err"),
    warn = log_at("warn"), notice = log_at("notice"), info = log_at("info"),
    debug = log_at("debug"),
  }, { __call = function(_, ...) return log_at("notice")(...) end }),
  ctx = setmetatable({}, { __index = function(_, k)
    if k == "shared" or k == "plugin" then
      request_ctx[k] = request_ctx[k] or {}
      return request_ctx[k]
    end
  end }),
}

local LEVELS = { "STDERR", "EMERG", "ALERT", "CRIT", "ERR", "WARN", "NOTICE", "INFO", "DEBUG" }
local ngx = {
  var = setmetatable({}, {
    __index = function(_, name) return py.var(name) end,
    __newindex = function(_, name)
      error("variable \"" .. tostring(name) .. "\" not changeable", 2)
    end,
  }),
  req = {
    get_headers = kong.request.get_headers,
    set_header = kong.service.request.set_header,
    clear_header = kong.service.request.clear_header,
  },
  log = function(level, ...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    py.log(LEVELS[(tonumber(level) or 4) + 1] or "err", table.concat(parts))
  end,
  time = function() return py.time() end,
  now = function() return py.now() end,
  null = setmetatable({}, { __tostring = function() return "null" end }),
}
for i, name in ipairs(LEVELS) do ngx[name] = i - 1 end

local function link(path, from, into)
  local head, rest = path:match("([^%.]+)%.?(.*)")
  if not head or from[head] == nil then return end
  if rest == "" then
    local value = from[head]
    into[head] = type(value) == "table" and setmetatable({}, { __index = value }) or value
    return
  end
  into[head] = into[head] or {}
  link(rest, from[head], into[head])
end

local function load_text(code, env)
  local f, err = loadstring(code)
  if not f then error(err, 0) end
  if string.byte(code, 1) == 27 then error("attempt to load a binary chunk", 0) end
  return setfenv(f, env)
end

local function sandboxed(code, mode, requires, env_vars)
  local given = { kong = kong, ngx = ngx }
  if mode == "off" then
    error("loading of untrusted Lua code disabled because "
          .. "'untrusted_lua' config option is set to 'off'", 0)
  end
  if mode == "on" then
    return load_text(code, setmetatable(given, { __index = _G }))
  end
  local allowed = {}
  for _, name in ipairs(requires) do allowed[name] = true end
  local extra = {
    require = function(name)
      if not allowed[name] then
        error(string.format("require '%s' not allowed within sandbox", tostring(name)))
      end
      return require(name)
    end,
  }
  for _, path in ipairs(env_vars) do link(path, _G, extra) end
  setmetatable(given, { __index = extra })
  local env = {}
  for name, value in pairs(BASE) do
    local override = given[name]
    if override ~= nil then env[name] = override else env[name] = value end
  end
  setmetatable(env, { __index = given })
  env._G = env
  return load_text(code, env)
end

local function compile(codes, mode, requires, env_vars)
  local compiled = {}
  for i, code in ipairs(codes) do
    local func = sandboxed(code, mode, requires, env_vars)
    local first = true
    compiled[i] = function()
      if first then
        first = false
        local result = func()
        if type(result) == "function" then
          func = result
          compiled[i] = func
          return func()
        end
        compiled[i] = func
      else
        compiled[i] = func
        return func()
      end
    end
  end
  return function()
    for i = 1, #compiled do compiled[i]() end
  end
end

local function run(runner)
  for k in pairs(request_ctx) do request_ctx[k] = nil end
  local co = coroutine.create(runner)
  local ok, res = coroutine.resume(co)
  if not ok then return "error", tostring(res) end
  if res == EXIT then return "exit", nil end
  return "done", nil
end

local function try_compile(codes, mode, requires, env_vars)
  local ok, res = pcall(compile, codes, mode, requires, env_vars)
  if ok then return res, nil end
  return nil, tostring(res)
end

return try_compile, run
"""


def _to_python(value: Any, lua_type: Callable[[Any], str | None]) -> Any:
    """A Lua value as cjson would encode it (tables with keys 1..n are arrays; an empty
    table is an object)."""
    if lua_type(value) != "table":
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value
    items = list(value.items())
    keys = [k for k, _ in items]
    numeric = items and all(isinstance(k, int | float) for k in keys)
    if numeric and sorted(keys) == list(range(1, len(keys) + 1)):
        ordered = sorted(items, key=lambda kv: kv[0])
        return [_to_python(v, lua_type) for _, v in ordered]
    return {str(k): _to_python(v, lua_type) for k, v in items}


def cjson(value: Any) -> str:
    """``cjson.encode``: compact, and ``/`` escaped."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).replace("/", "\\/")


class LuaExit(Exception):
    """``kong.response.exit``/``error`` from user code; ``body`` is ``None`` for no body."""

    def __init__(
        self,
        status: int,
        body: bytes | None,
        headers: Mapping[str, str],
        message: str | None = None,
    ):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers)
        self.message = message  # set for kong.response.error (Kong's error template)


class LuaFailure(Exception):
    """A Lua error in user code (or a function that could not be loaded)."""


class RequestView:
    """What the PDK reads and changes for one request (the proxy fills it in)."""

    def __init__(
        self,
        headers: Any,
        response_headers: dict[str, str],
        variables: Mapping[str, str | None],
        path: str,
    ):
        self.headers = headers  # the upstream request headers (CIMultiDict)
        self.response_headers = response_headers
        self.variables = variables
        self.path = path
        self.exit: LuaExit | None = None


_VERSION = "3.9.3"

# kong/pdk/response.lua HTTP_ERROR_MESSAGES (the 4xx/5xx most used; others get Kong's
# "The upstream server responded with <status>").
_ERROR_MESSAGES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    429: "Too many requests",
    500: "An unexpected error occurred",
    501: "Not implemented",
    502: "An invalid response was received from the upstream server",
    503: "The upstream server is currently unavailable",
    504: "The upstream server is timing out",
}


class LuaEngine:
    """One node's LuaJIT state: the sandbox, the compiled phase functions, the PDK."""

    def __init__(self, conf: Mapping[str, Any]):
        self.mode = str(conf.get("untrusted_lua") or "sandbox")
        self.requires = _list(conf.get("untrusted_lua_sandbox_requires"))
        self.env_vars = _list(conf.get("untrusted_lua_sandbox_environment"))
        self.runtime = new_runtime()
        self._lua_type = _lupa().lua_type
        self._current: RequestView | None = None
        pdk = self.runtime.table_from(
            {
                "version": _VERSION,
                "version_num": 3009003,
                "get_header": self._get_header,
                "get_headers": self._get_headers,
                "get_path": lambda: self._view().path,
                "set_header": self._set_header,
                "add_header": self._add_header,
                "clear_header": self._clear_header,
                "exit": self._exit,
                "error": self._error,
                "set_response_header": self._set_response_header,
                "var": self._var,
                "log": self._log,
                "time": lambda: int(time.time()),
                "now": lambda: round(time.time(), 3),
            }
        )
        self._compile, self._run = self.runtime.execute(_BOOT, pdk)
        self._compiled: dict[tuple[str, ...], Any] = {}

    # -- running ---------------------------------------------------------------------------

    def runner(self, codes: Iterable[str]) -> Any:
        """The compiled phase array (cached per code list); raises :class:`LuaFailure`."""
        key = tuple(codes)
        found = self._compiled.get(key)
        if found is None:
            table = self.runtime.table_from(list(key))
            found, err = self._compile(
                table, self.mode, self._lua_list(self.requires), self._lua_list(self.env_vars)
            )
            if found is None:
                raise LuaFailure(err)
            if len(self._compiled) > 1000:
                self._compiled.clear()
            self._compiled[key] = found
        return found

    def run(self, codes: Iterable[str], view: RequestView) -> None:
        """Run a phase's functions for one request; raises :class:`LuaExit` when user code
        ends the request and :class:`LuaFailure` on a Lua error."""
        runner = self.runner(codes)
        self._current = view
        try:
            status, err = self._run(runner)
        finally:
            self._current = None
        if status == "error":
            raise LuaFailure(err)
        if status == "exit" and view.exit is not None:
            raise view.exit

    def _lua_list(self, items: list[str]) -> Any:
        return self.runtime.table_from(items)

    # -- the PDK's Python side ---------------------------------------------------------------

    def _view(self) -> RequestView:
        if self._current is None:
            raise RuntimeError("no request in progress")
        return self._current

    def _values(self, name: str) -> list[str]:
        headers = self._view().headers
        values = headers.getall(name, [])
        if not values and "_" in name:
            values = headers.getall(name.replace("_", "-"), [])
        return values

    def _get_header(self, name: str) -> str | None:
        values = self._values(name)
        return values[0] if values else None

    def _get_headers(self) -> Any:
        flat: list[str] = []
        for name, value in self._view().headers.items():
            flat += [name.lower(), value]
        return self.runtime.table_from(flat)

    def _set_header(self, name: str, value: str) -> None:
        headers = self._view().headers
        headers.popall(name, None)
        headers[name] = value

    def _add_header(self, name: str, value: str) -> None:
        self._view().headers.add(name, value)

    def _clear_header(self, name: str) -> None:
        headers = self._view().headers
        headers.popall(name, None)
        if "_" in name:
            headers.popall(name.replace("_", "-"), None)

    def _set_response_header(self, name: str, value: str) -> None:
        self._view().response_headers[name] = value

    def _headers_arg(self, headers: Any) -> dict[str, str]:
        if headers is None:
            return {}
        out = {}
        for name, value in _to_python(headers, self._lua_type).items():
            out[str(name)] = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        return out

    def _exit(self, status: Any, body: Any, headers: Any) -> None:
        out = self._headers_arg(headers)
        data: bytes | None = None
        if self._lua_type(body) == "table":
            data = cjson(_to_python(body, self._lua_type)).encode()
            if not any(k.lower() == "content-type" for k in out):
                out["Content-Type"] = "application/json; charset=utf-8"
        elif body is not None:
            data = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body
        self._view().exit = LuaExit(int(status), data, out)

    def _error(self, status: Any, message: Any, headers: Any) -> None:
        if message is None:
            text = _ERROR_MESSAGES.get(int(status), f"The upstream server responded with {status}")
        elif self._lua_type(message) == "table":
            text = cjson(_to_python(message, self._lua_type))
        else:
            text = str(message)
        self._view().exit = LuaExit(int(status), None, self._headers_arg(headers), text)

    def _var(self, name: Any) -> str | None:
        if not isinstance(name, str):
            return None
        view = self._view()
        if name.startswith("http_"):
            values = self._values(name[5:])
            return ", ".join(values) if values else None
        return view.variables.get(name)

    def _log(self, level: str, message: str) -> None:
        numeric = {
            "debug": logging.DEBUG,
            "info": logging.INFO,
            "notice": logging.INFO,
            "warn": logging.WARNING,
        }.get(str(level).lower(), logging.ERROR)
        log.log(numeric, "[kong] %s", message)


def _list(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value if str(v)]
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return []
