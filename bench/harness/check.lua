-- wrk script of bench/harness/wrk.py: POST one body, check every answer, report as JSON.
-- Each wrk thread runs this file in its own Lua state; done() runs in the main one.

local function slurp(path)
  local file = assert(io.open(path, "rb"))
  local content = file:read("*a")
  file:close()
  return content
end

wrk.method = "POST"
wrk.body = slurp(os.getenv("BENCH_WRK_BODY"))
for line in io.lines(os.getenv("BENCH_WRK_HEADERS")) do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end
local expected = slurp(os.getenv("BENCH_WRK_EXPECTED"))
local exact = os.getenv("BENCH_WRK_EXACT") == "1"

wrong = 0
first_wrong = ""

function response(status, headers, body)
  if status ~= 200 or #body ~= #expected or (exact and body ~= expected) then
    wrong = wrong + 1
    if first_wrong == "" then
      first_wrong = "HTTP " .. status .. ", " .. #body .. " bytes (expected " .. #expected .. "): " .. body:sub(1, 300)
    end
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function quoted(text)
  return '"' .. text:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

function done(summary, latency, requests)
  local total_wrong, first = 0, ""
  for _, thread in ipairs(threads) do
    total_wrong = total_wrong + thread:get("wrong")
    if first == "" then first = thread:get("first_wrong") end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-WRK-RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p99_us": %d, '
      .. '"wrong": %d, "first_wrong": %s, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, '
      .. '"timeout": %d}}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(99),
    total_wrong, quoted(first), e.connect, e.read, e.write, e.status, e.timeout))
end
