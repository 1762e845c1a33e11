-- The one wrk script of the benchmarks (run by bench/web.py from the project's root):
--   wrk ... -s bench/wrk/requests.lua <url> -- <threads> [<requests file> cycle]
--   wrk ... -s bench/wrk/requests.lua <url> -- <threads> <requests file> once <last path>
-- Without a requests file, wrk sends its plain GET of <url>. With one (written by bench/web.py, a
-- request a line: method, path, body, then "Name: value" headers, separated by tabs; bodies are
-- JSON, so hold no tab or newline), thread i of n sends lines i, i+n, i+2n...: "cycle" starts its
-- share again when it runs out; "once" sends each line once (one connection a thread, so the next
-- request goes when the previous one is answered), then a GET of <last path>, and stops the thread.
-- done() prints the figures as one JSON line, the last line of wrk's output.

local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

local requests, index, once, last = {}, 1, false, nil

local function parse(line)
  local fields = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do
    fields[#fields + 1] = field
  end
  local headers = {}
  for i = 4, #fields do
    local name, value = fields[i]:match("^([^:]+): (.*)$")
    headers[name] = value
  end
  return wrk.format(fields[1], fields[2], headers, fields[3])
end

function init(args)
  local threads, path = tonumber(args[1]), args[2]
  once = args[3] == "once"
  if once then
    last = wrk.format("GET", args[4])
  end
  if path == nil then
    request = nil -- wrk's own request: a GET of the URL
    return
  end
  -- wrk calls thread 0's request() once before the run, to check what it returns: that call must
  -- not use up a request.
  index = id == 0 and 0 or 1
  local n = 0
  for line in io.lines(path) do
    if n % threads == id then
      requests[#requests + 1] = parse(line)
    end
    n = n + 1
  end
end

function request()
  if index > #requests then
    if once then
      -- Its share answered, wrk has reconnected (gunicorn closes after each answer): stop with a
      -- request in flight rather than an idle connection, which would hold a gunicorn sync
      -- worker until it timed out.
      wrk.thread:stop()
      return last
    end
    index = 1
  end
  index = index + 1
  return requests[math.max(index - 1, 1)]
end

function done(summary, latency)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "status_errors": %d, "socket_errors": %d, "p50_ms": %.2f, "p99_ms": %.2f}\n',
    summary.requests, summary.duration / 1e6, errors.status, errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000
  ))
end
