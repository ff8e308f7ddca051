-- wrk script for bench_edge.py's multi-URL L2 workload: request i goes to <url path><i mod N>,
-- so consecutive requests (and the ones an event-loop tick batches) name distinct objects.
--   wrk -t1 -c50 -d10s -s bench/edge/l2_cycle.lua http://127.0.0.1:PORT/sz/1024/m -- 1000
-- Headers come from -H (wrk.format's default); one wrk thread (-t1) walks all N in turn.
local n = 1
local i = 0

function init(args)
  n = tonumber(args[1]) or 1
end

function request()
  local path = wrk.path .. i
  i = (i + 1) % n
  return wrk.format(nil, path)
end
