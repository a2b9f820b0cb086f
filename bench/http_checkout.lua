-- bench/http_checkout.lua: wrk driver for bench/http_bench.py. Every request is one checkout of
-- one unit, by a buyer never used before in the run, so no two requests (let alone two
-- connections) ever share a buyer or a cart.
--
--   wrk -c 32 -t 2 -d 15s --latency -s bench/http_checkout.lua <url> -- \
--       <mode> <scenario> <first_buyer> <buyers_per_thread> <products>
--
-- mode "ours":     POST /api/marketplace/checkout {shippingAddress}; the buyer's cart was filled
--                  before the run (one line: product 'hot', or a random one of the catalogue).
-- mode "baseline": POST /baseline/checkout {productId, quantity: 1}; the product is 'hot', or a
--                  random one of the catalogue drawn here.
-- mode "floor":    POST /floor/sale on the baseline server, the same body as "baseline": one
--                  conditional UPDATE, no order (a lower bound, not a checkout).
-- Buyer n has id 'b<n>' and token 'bt<n>'. Thread t (0-based) uses buyers
-- first_buyer + t * buyers_per_thread .. first_buyer + (t + 1) * buyers_per_thread - 1, one per
-- request. Statuses are counted per thread in response(); done() prints one line
-- "HTTPBENCH_JSON {...}" for the driver to parse.

local threads = {}
local thread_count = 0

function setup(thread)
    thread:set("tid", thread_count)
    thread_count = thread_count + 1
    table.insert(threads, thread)
end

-- per-thread state (each wrk thread has its own Lua state)
statuses = {}
samples = {}
issued = 0
wrapped = 0

local mode, scenario, first, per_thread, products, path

function init(args)
    mode = args[1]
    scenario = args[2]
    first = tonumber(args[3])
    per_thread = tonumber(args[4])
    products = tonumber(args[5])
    if mode == "ours" then
        path = "/api/marketplace/checkout"
    elseif mode == "baseline" then
        path = "/baseline/checkout"
    elseif mode == "floor" then
        path = "/floor/sale"
    else
        error("mode must be ours, baseline or floor, not " .. tostring(mode))
    end
    if scenario ~= "hot" and scenario ~= "spread" then
        error("scenario must be hot or spread, not " .. tostring(scenario))
    end
    math.randomseed(os.time() * 100 + tid)
end

local address = '{"shippingAddress":{"name":"Bench buyer","street":"1 Load St","city":"X","country":"PT"}}'

function request()
    local n = issued % per_thread
    if issued >= per_thread then
        wrapped = wrapped + 1  -- the driver sized the blocks too small: reported, never hidden
    end
    issued = issued + 1
    local buyer = first + tid * per_thread + n
    local headers = {
        ["Authorization"] = "Bearer bt" .. buyer,
        ["Content-Type"] = "application/json",
    }
    local body
    if mode == "ours" then
        body = address
    else
        local pid = "hot"
        if scenario == "spread" then
            pid = tostring(math.random(1, products))
        end
        body = '{"productId":"' .. pid .. '","quantity":1}'
    end
    return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
    if status ~= 201 and samples[status] == nil then
        samples[status] = string.sub(body or "", 1, 300)
    end
end

local function quote(s)
    s = string.gsub(s, '[%c"\\]', function(c)
        if c == '"' then return '\\"' end
        if c == "\\" then return "\\\\" end
        return string.format("\\u%04x", string.byte(c))
    end)
    return '"' .. s .. '"'
end

function done(summary, latency, requests)
    local total, sample, issued_all, wrapped_all = {}, {}, 0, 0
    for _, thread in ipairs(threads) do
        for status, n in pairs(thread:get("statuses")) do
            total[status] = (total[status] or 0) + n
        end
        for status, body in pairs(thread:get("samples")) do
            if sample[status] == nil then sample[status] = body end
        end
        issued_all = issued_all + thread:get("issued")
        wrapped_all = wrapped_all + thread:get("wrapped")
    end
    local parts = {}
    for status, n in pairs(total) do
        table.insert(parts, string.format('"%d":%d', status, n))
    end
    local sparts = {}
    for status, body in pairs(sample) do
        table.insert(sparts, string.format('"%d":%s', status, quote(body)))
    end
    local e = summary.errors
    io.write(string.format(
        'HTTPBENCH_JSON {"statuses":{%s},"samples":{%s},"duration_us":%d,"requests":%d,' ..
        '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
        '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d,"issued":%d,"wrapped":%d}\n',
        table.concat(parts, ","), table.concat(sparts, ","), summary.duration, summary.requests,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
        latency.max, issued_all, wrapped_all))
end
