/**
 * The gateway's one per-request step before route lookup: an Envoy Lua filter that reads the
 * routing key from the W3C `baggage` header into `x-shardworks-routing-key`, so the route table
 * can look the key up by exact match (ADR 0009). It runs once per request, costs time linear in
 * the baggage header only (never in the number of shards), and parses the list the way
 * `@opentelemetry/core`'s `parseKeyPairsIntoRecord` does ({@link routingKeyFromBaggage}):
 *
 * - members split on `,`; properties cut at the first `;`; key and value split at the first `=`
 *   (a member without `=`, or with `=` first, is skipped); key and value trimmed of ASCII
 *   whitespace; an empty key or value is skipped;
 * - key and value percent-decoded like `decodeURIComponent`: a malformed escape or invalid UTF-8
 *   skips the member (an earlier valid member then stands);
 * - of several `shardworks-routing-key` members the last one wins;
 * - several `baggage` headers are one list (joined with `,`, as HTTP and Node join them).
 *
 * An explicit `x-shardworks-routing-key` header wins: the route is chosen by it, and the filter
 * writes it into the baggage (appending `shardworks-routing-key=<key>` unless the baggage already
 * names that key), so that services, which propagate baggage only, carry it to the next hop
 * (ADR 0012). A header value that cannot be a routing key is not copied. A value
 * that cannot be a routing key (not `[a-z0-9][a-z0-9-]*`, longer than the maximum) sets nothing:
 * no shard owns it, so the request goes to the baseline either way, and nothing a client puts in a
 * baggage value (CR, LF, NUL after decoding) reaches a header.
 */
import { parseKeyPairsIntoRecord } from "@opentelemetry/core";
import { MAX_ROUTING_KEY_LENGTH } from "../../contract/model";
import { BASE_SCOPE, ROUTE_SCOPE_HEADER, SANDBOX_SCOPE } from "./translate/names";
import { ExtensionTypeUrl, pack } from "./xds/protos";

/** The header carrying a routing key. */
export const ROUTING_KEY_HEADER = "x-shardworks-routing-key";
/** The W3C baggage member carrying a routing key. */
export const ROUTING_KEY_BAGGAGE_MEMBER = "shardworks-routing-key";

/**
 * The routing key in a W3C `baggage` header value, parsed by `@opentelemetry/core` (of duplicate
 * members the last wins); undefined when the member is absent. The gateway's filter agrees.
 */
export function routingKeyFromBaggage(header: string): string | undefined {
  return parseKeyPairsIntoRecord(header)[ROUTING_KEY_BAGGAGE_MEMBER];
}

/** What the filter needs to name a request's route scope (ADR 0016). */
export interface ScopeOptions {
  /** Buckets routing keys hash into ({@link routeBucket}). */
  readonly buckets: number;
  /** Sandbox hosts end with `.sandbox.<domain>`: their scope is `sandbox`. */
  readonly domain: string;
}

/** The Lua source Envoy runs (one `envoy_on_request`, no state between requests). */
export function routingKeyLua(scope: ScopeOptions): string {
  if (!Number.isInteger(scope.buckets) || scope.buckets < 1) {
    throw new Error(`route buckets must be a positive integer, got ${String(scope.buckets)}`);
  }
  return `
local HEADER = "${ROUTING_KEY_HEADER}"
local MEMBER = "${ROUTING_KEY_BAGGAGE_MEMBER}"
local MAX_KEY = ${MAX_ROUTING_KEY_LENGTH}
local SCOPE = "${ROUTE_SCOPE_HEADER}"
local BUCKETS = ${scope.buckets}
local SANDBOX_SUFFIX = ${JSON.stringify(`.sandbox.${scope.domain.toLowerCase()}`)}

-- ASCII whitespace as JavaScript's trim() sees it; loops, not patterns, so a long run of
-- spaces costs linear time.
local function ws(b) return b == 32 or (b >= 9 and b <= 13) end
local function trim(s)
  local i, j = 1, #s
  while i <= j and ws(s:byte(i)) do i = i + 1 end
  while j >= i and ws(s:byte(j)) do j = j - 1 end
  return s:sub(i, j)
end

local function hex(s, i)
  local h = s:sub(i, i + 1)
  if #h ~= 2 or not h:find("^%x%x$") then return nil end
  return tonumber(h, 16)
end

-- decodeURIComponent: nil where it would throw (bad escape, invalid or overlong UTF-8).
local function decode(s)
  if not s:find("%", 1, true) then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local j = s:find("%", i, true)
    if j == nil then out[#out + 1] = s:sub(i); break end
    if j > i then out[#out + 1] = s:sub(i, j - 1) end
    local b = hex(s, j + 1)
    if b == nil then return nil end
    local count, lo, hi = 0, 0x80, 0xBF
    if b < 0x80 then count = 0
    elseif b >= 0xC2 and b <= 0xDF then count = 1
    elseif b >= 0xE0 and b <= 0xEF then count = 2
      if b == 0xE0 then lo = 0xA0 elseif b == 0xED then hi = 0x9F end
    elseif b >= 0xF0 and b <= 0xF4 then count = 3
      if b == 0xF0 then lo = 0x90 elseif b == 0xF4 then hi = 0x8F end
    else return nil end
    local bytes = { b }
    local k = j + 3
    for c = 1, count do
      if s:byte(k) ~= 37 then return nil end
      local cb = hex(s, k + 1)
      if cb == nil then return nil end
      if c == 1 then
        if cb < lo or cb > hi then return nil end
      elseif cb < 0x80 or cb > 0xBF then return nil end
      bytes[#bytes + 1] = cb
      k = k + 3
    end
    out[#out + 1] = string.char(unpack(bytes))
    i = k
  end
  return table.concat(out)
end

-- The value of the last member named MEMBER, or nil.
local function routing_key(list)
  local found = nil
  local start, n = 1, #list
  while start <= n + 1 do
    local stop = list:find(",", start, true) or (n + 1)
    local entry = list:sub(start, stop - 1)
    local semi = entry:find(";", 1, true)
    local pair = semi and entry:sub(1, semi - 1) or entry
    local eq = pair:find("=", 1, true)
    if eq ~= nil and eq > 1 then
      local k, v = trim(pair:sub(1, eq - 1)), trim(pair:sub(eq + 1))
      if #k > 0 and #v > 0 then
        local dk, dv = decode(k), decode(v)
        if dk ~= nil and dv ~= nil and #dv > 0 and dk == MEMBER then found = dv end
      end
    end
    start = stop + 1
  end
  return found
end

local function valid(key)
  return key ~= nil and #key <= MAX_KEY and key:find("^[a-z0-9][a-z0-9%-]*$") ~= nil
end

-- A key named only in the header must reach the next hop too, and services carry baggage, not
-- our header (ADR 0012): the member is appended, as the last member wins where parsers read it.
local function carry_in_baggage(headers, key)
  if not valid(key) then return end
  local count = headers:getNumValues("baggage")
  local member = MEMBER .. "=" .. key
  if count == 0 then headers:add("baggage", member); return end
  local values = {}
  for i = 0, count - 1 do values[#values + 1] = headers:getAtIndex("baggage", i) end
  local list = table.concat(values, ",")
  if routing_key(list) == key then return end
  headers:replace("baggage", list .. "," .. member)
end

-- djb2 mod 2^32, then mod BUCKETS: routeBucket() in translate/names.ts. Every product stays
-- below 2^53, so the doubles are exact.
local function bucket(key)
  local h = 5381
  for i = 1, #key do h = (h * 33 + key:byte(i)) % 4294967296 end
  return h % BUCKETS
end

-- The route scope: sandbox hosts, then the key's bucket, else the baseline-only scope.
local function scope_of(authority, key)
  if authority ~= nil then
    local host = authority:lower():gsub(":%d+$", "")
    if #host > #SANDBOX_SUFFIX and host:sub(-#SANDBOX_SUFFIX) == SANDBOX_SUFFIX then
      return "${SANDBOX_SCOPE}"
    end
  end
  if valid(key) then return "b" .. bucket(key) end
  return "${BASE_SCOPE}"
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local key = headers:get(HEADER)
  if key ~= nil then
    carry_in_baggage(headers, key)
  else
    local count = headers:getNumValues("baggage")
    if count > 0 then
      local values = {}
      for i = 0, count - 1 do values[#values + 1] = headers:getAtIndex("baggage", i) end
      key = routing_key(table.concat(values, ","))
      if valid(key) then headers:replace(HEADER, key) else key = nil end
    end
  end
  -- Always overwritten: a client cannot pick a scope (it holds no more than its key selects).
  headers:replace(SCOPE, scope_of(headers:get(":authority"), key))
  handle:clearRouteCache()
end
`;
}

/** The HttpConnectionManager filter entry that runs {@link routingKeyLua} (memoized per options). */
export function routingKeyFilter(scope: ScopeOptions): Record<string, unknown> {
  const memo = `${scope.buckets}/${scope.domain}`;
  let filter = filters.get(memo);
  if (!filter) {
    filter = {
      name: "shardworks.routing_key",
      typed_config: pack(ExtensionTypeUrl.Lua, {
        default_source_code: { inline_string: routingKeyLua(scope) },
      }),
    };
    filters.set(memo, filter);
  }
  return filter;
}
const filters = new Map<string, Record<string, unknown>>();
