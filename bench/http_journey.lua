-- bench/http_journey.lua: wrk driver of the user-journey mix for bench/http_bench.py. Run with as
-- many threads as connections (wrk -t N -c N), so that each thread drives exactly one connection
-- and its requests and responses strictly alternate: the journey is a state machine per thread.
--
--   wrk -t 32 -c 32 -d 15s --latency -s bench/http_journey.lua <url> -- \
--       <first_buyer> <buyers_per_thread> <products> <webhook_secret>
--
-- One journey, by a buyer never used before in the run (id 'b<n>', token 'bt<n>', made by the
-- driver; a scrypt login is left out, see bench/README.md):
--   1. GET  /api/marketplace/products?limit=20          browse the catalogue
--   2. GET  /api/marketplace/products/<p>               look at one product (random of <products>)
--   3. POST /api/marketplace/cart/items                 add one unit of it to the cart
--   4. POST /api/marketplace/checkout                   check out (201, the order's id is read)
--   5. POST /api/marketplace/payments/webhook           the payment provider reports success
--      (X-Signature: hex HMAC-SHA256 of "<timestamp>.<body>" under <webhook_secret>)
-- A step that fails ends the journey (counted in "broken"); the next request starts a new one.
-- done() prints one line "HTTPBENCH_JSON {...}" for the driver.

local bit = require("bit")
local band, bor, bxor, bnot = bit.band, bit.bor, bit.bxor, bit.bnot
local rshift, lshift, ror, tobit = bit.rshift, bit.lshift, bit.ror, bit.tobit

-- SHA-256 (FIPS 180-4) on 32-bit words with LuaJIT's bit library.
local K = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

local function sha256(msg)
    local len = #msg
    msg = msg .. "\128" .. string.rep("\0", (55 - len) % 64)
    local bits = len * 8
    local tail = {}
    for i = 7, 0, -1 do
        tail[#tail + 1] = string.char(math.floor(bits / 2 ^ (8 * i)) % 256)
    end
    msg = msg .. table.concat(tail)
    local h0, h1, h2, h3 = 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a
    local h4, h5, h6, h7 = 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
    local w = {}
    for chunk = 1, #msg, 64 do
        for i = 0, 15 do
            local a, b, c, d = msg:byte(chunk + 4 * i, chunk + 4 * i + 3)
            w[i] = bor(lshift(a, 24), lshift(b, 16), lshift(c, 8), d)
        end
        for i = 16, 63 do
            local x, y = w[i - 15], w[i - 2]
            local s0 = bxor(ror(x, 7), ror(x, 18), rshift(x, 3))
            local s1 = bxor(ror(y, 17), ror(y, 19), rshift(y, 10))
            w[i] = tobit(w[i - 16] + s0 + w[i - 7] + s1)
        end
        local a, b, c, d, e, f, g, h = h0, h1, h2, h3, h4, h5, h6, h7
        for i = 0, 63 do
            local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
            local ch = bxor(band(e, f), band(bnot(e), g))
            local t1 = tobit(h + S1 + ch + K[i + 1] + w[i])
            local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
            local maj = bxor(band(a, b), band(a, c), band(b, c))
            local t2 = tobit(S0 + maj)
            h, g, f, e, d, c, b, a = g, f, e, tobit(d + t1), c, b, a, tobit(t1 + t2)
        end
        h0, h1, h2, h3 = tobit(h0 + a), tobit(h1 + b), tobit(h2 + c), tobit(h3 + d)
        h4, h5, h6, h7 = tobit(h4 + e), tobit(h5 + f), tobit(h6 + g), tobit(h7 + h)
    end
    local out = {}
    for _, v in ipairs({h0, h1, h2, h3, h4, h5, h6, h7}) do
        for s = 24, 0, -8 do
            out[#out + 1] = string.char(band(rshift(v, s), 0xff))
        end
    end
    return table.concat(out)
end

local function hmac_sha256_hex(key, msg)
    if #key > 64 then key = sha256(key) end
    key = key .. string.rep("\0", 64 - #key)
    local ipad, opad = {}, {}
    for i = 1, 64 do
        local k = key:byte(i)
        ipad[i] = string.char(bxor(k, 0x36))
        opad[i] = string.char(bxor(k, 0x5c))
    end
    local digest = sha256(table.concat(opad) .. sha256(table.concat(ipad) .. msg))
    return (digest:gsub(".", function(ch) return string.format("%02x", ch:byte()) end))
end

local threads = {}
local thread_count = 0

function setup(thread)
    thread:set("tid", thread_count)
    thread_count = thread_count + 1
    table.insert(threads, thread)
end

statuses = {}
samples = {}
journeys = 0
broken = 0
issued = 0
wrapped = 0
requests_sent = 0

local first, per_thread, products, secret
local step, buyer, pid, order_id = 0, nil, nil, nil
local address = '{"shippingAddress":{"name":"Bench buyer","street":"1 Load St","city":"X","country":"PT"}}'

function init(args)
    first = tonumber(args[1])
    per_thread = tonumber(args[2])
    products = tonumber(args[3])
    secret = args[4]
    math.randomseed(os.time() * 100 + tid)
    -- Self-check against the HMAC-SHA256 test vector of RFC 4231, case 2.
    assert(hmac_sha256_hex("Jefe", "what do ya want for nothing?") ==
           "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", "HMAC-SHA256 self-check failed")
end

local function next_buyer()
    local n = issued % per_thread
    if issued >= per_thread then wrapped = wrapped + 1 end
    issued = issued + 1
    buyer = first + tid * per_thread + n
    pid = tostring(math.random(1, products))
    order_id = nil
end

function request()
    requests_sent = requests_sent + 1
    if step == 0 then
        next_buyer()
        return wrk.format("GET", "/api/marketplace/products?limit=20")
    end
    local auth = {["Authorization"] = "Bearer bt" .. buyer, ["Content-Type"] = "application/json"}
    if step == 1 then
        return wrk.format("GET", "/api/marketplace/products/" .. pid)
    elseif step == 2 then
        return wrk.format("POST", "/api/marketplace/cart/items", auth,
                          '{"productId":"' .. pid .. '","quantity":1}')
    elseif step == 3 then
        return wrk.format("POST", "/api/marketplace/checkout", auth, address)
    else
        local body = '{"orderId":"' .. order_id .. '","status":"succeeded","reference":"bench-' .. buyer .. '"}'
        local ts = tostring(os.time())
        return wrk.format("POST", "/api/marketplace/payments/webhook", {
            ["Content-Type"] = "application/json",
            ["X-Signature-Timestamp"] = ts,
            ["X-Signature"] = hmac_sha256_hex(secret, ts .. "." .. body),
        }, body)
    end
end

local expected = {[0] = 200, [1] = 200, [2] = 201, [3] = 201, [4] = 200}

function response(status, headers, body)
    local key = tostring(step) .. ":" .. tostring(status)
    statuses[key] = (statuses[key] or 0) + 1
    if status ~= expected[step] then
        if samples[key] == nil then samples[key] = string.sub(body or "", 1, 300) end
        broken = broken + 1
        step = 0
        return
    end
    if step == 3 then
        order_id = string.match(body, '"id"%s*:%s*"([^"]+)"')
        if order_id == nil then
            broken = broken + 1
            step = 0
            return
        end
    end
    if step == 4 then
        journeys = journeys + 1
        step = 0
    else
        step = step + 1
    end
end

local function json_escape(s)
    return (s:gsub('[%c"\\]', function(ch) return string.format("\\u%04x", ch:byte()) end))
end

function done(summary, latency, requests)
    local st, sm = {}, {}
    local total = {journeys = 0, broken = 0, issued = 0, wrapped = 0, requests_sent = 0}
    for _, thread in ipairs(threads) do
        for k, n in pairs(thread:get("statuses")) do st[k] = (st[k] or 0) + n end
        for k, b in pairs(thread:get("samples")) do if sm[k] == nil then sm[k] = b end end
        for k, _ in pairs(total) do total[k] = total[k] + thread:get(k) end
    end
    local parts = {}
    for k, n in pairs(st) do parts[#parts + 1] = string.format('"%s": %d', k, n) end
    local sparts = {}
    for k, b in pairs(sm) do sparts[#sparts + 1] = string.format('"%s": "%s"', k, json_escape(b)) end
    local e = summary.errors
    io.write(string.format('HTTPBENCH_JSON {"duration_us": %d, "requests": %d, "journeys": %d, "broken": %d, '
        .. '"issued": %d, "wrapped": %d, "statuses": {%s}, "samples": {%s}, "errors": {"connect": %d, '
        .. '"read": %d, "write": %d, "timeout": %d, "status": %d}, "p50_us": %d, "p99_us": %d}\n',
        summary.duration, summary.requests, total.journeys, total.broken, total.issued, total.wrapped,
        table.concat(parts, ", "), table.concat(sparts, ", "), e.connect, e.read, e.write, e.timeout, e.status,
        latency:percentile(50), latency:percentile(99)))
end
