-- Votes for wrk: every request changes a vote, as in bench/votes.py.
--
--   wrk -t1 -c64 -d10s -s bench/wrk/votes.lua http://127.0.0.1:PORT -- TOKENS_FILE STEP [STEP ...]
--
-- TOKENS_FILE holds one access token a line. Give one STEP per wrk thread (-t): where that
-- thread starts, 0 on a fresh server, else the "next steps" that the previous run printed, so
-- that a second run goes on with each (user, teacher) where the first left it.
--
-- Each thread votes for its own users (every thread-count-th token), so no two threads touch
-- one vote. Step s is pair s mod (users x teachers), users turning fastest; each pass over the
-- pairs moves every pair one on in the cycle PUT good, PUT bad, DELETE. A pair comes back only
-- after users x teachers requests, more than the connections in flight, so a pair never has
-- two requests in flight and every request changes its vote.

local TEACHERS = 15
local PHASES = {
  {method = "PUT", body = '{"value":"good"}'},
  {method = "PUT", body = '{"value":"bad"}'},
  {method = "DELETE", body = nil},
}

-- Main state: the threads, for done().
local all_threads = {}

function setup(thread)
  thread:set("id", #all_threads)
  table.insert(all_threads, thread)
end

-- Thread state.
local headers, pair_count

function init(args)
  local thread_count = #args - 1
  step = tonumber(args[id + 2])
  non2xx = 0
  headers = {}
  local index = 0
  for line in io.lines(args[1]) do
    if line ~= "" then
      if index % thread_count == id then
        table.insert(headers, {["Authorization"] = "Bearer " .. line, ["Content-Type"] = "application/json"})
      end
      index = index + 1
    end
  end
  pair_count = #headers * TEACHERS
end

function request()
  local pair = step % pair_count
  local phase = PHASES[math.floor(step / pair_count) % 3 + 1]
  local user = pair % #headers + 1
  local teacher = math.floor(pair / #headers) + 1
  step = step + 1
  return wrk.format(phase.method, "/api/teachers/" .. teacher .. "/vote", headers[user], phase.body)
end

function response(status, response_headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local failed, steps = 0, {}
  for _, thread in ipairs(all_threads) do
    failed = failed + thread:get("non2xx")
    table.insert(steps, string.format("%d", thread:get("step")))
  end
  io.write(string.format("non-2xx responses: %d\n", failed))
  io.write("next steps: " .. table.concat(steps, " ") .. "\n")
end
