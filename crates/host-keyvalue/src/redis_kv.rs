//! The shared backend: a Redis server, for apps served by many nodes.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Value, cmd};

use crate::{KvBackend, KvError, KvQuota, KvUsage, Namespace};

/// How long [`RedisKv::connect`] may take in all before it gives up.
const CONNECT_DEADLINE: Duration = Duration::from_secs(4);
/// One TCP connection attempt (also used when the connection manager reconnects).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one command may wait for its reply before the guest gets an error.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The Redis backend.
///
/// # Layout
///
/// For the namespace `(app, store)` let `A` and `S` be `app` and `store` with `%`, `:`,
/// `{` and `}` percent-encoded (`%25`, `%3A`, `%7B`, `%7D`). Then
/// - the value of `key` is the string `wharf:{A:S}:key` (the key itself is not
///   encoded: `A` and `S` contain no `:`, so the first two `:` after `{` delimit them
///   and everything after `}:` is the key, so no two namespaces' keys can collide);
/// - the sorted set `wharf:{A:S}` (no trailing `:`, so it is never a value's name)
///   indexes the namespace's keys, all with score 0, so Redis orders them by their
///   bytes.
///
/// `{A:S}` is a Redis Cluster *hash tag*: all of a namespace's names hash to one slot,
/// so the multi-key transactions and scripts below stay valid on a cluster proxy.
///
/// # Listing
///
/// `set`, `delete`, the batch calls and `increment` update the value, the index and the
/// app's usage together in one script, and `list_keys` reads the index with
/// `ZRANGEBYLEX (after + LIMIT 0 page+1` (O(log N + page), instead of a `SCAN` of the
/// whole keyspace per page, and with no rank offset). The cursor is the last key
/// returned. Values written to these names by anything other than this backend are
/// not indexed.
///
/// # Quota
///
/// The hash `wharf-usage:{A}` holds the app's `keys` and `bytes` over all its stores;
/// every write script checks the quota and updates it atomically. It is a different
/// hash slot from the namespace's names, so the write scripts are cross-slot: Wharf
/// supports a single Redis server (or a primary with replicas), not Redis Cluster.
/// Data written before usage was counted is not in the counts (they never go below 0).
///
/// # Increment
///
/// `increment` runs a small Lua script that adds in decimal text, so the full `u64`
/// range works and the rules match [`SqliteKv`](crate::SqliteKv) exactly (Redis's own
/// `INCRBY` is limited to `i64` and accepts negative numbers).
#[derive(Clone)]
pub struct RedisKv {
    conn: ConnectionManager,
    /// The URL with any password replaced by `***`, for messages.
    url: String,
    /// The password(s) in the URL, scrubbed from the Redis client's error messages.
    secrets: Vec<String>,
}

impl std::fmt::Debug for RedisKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKv")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Adds decimal `ARGV[1]` to the counter at `KEYS[1]` (missing = 0), indexes `ARGV[2]`
/// in `KEYS[2]` and counts the change in the usage hash `KEYS[3]` against the quota
/// `ARGV[3]` keys, `ARGV[4]` bytes. Returns the new value as text, -1 when the stored
/// value is not a u64 in decimal, -2 on overflow, -3 / -4 when over the keys / bytes
/// quota (with the current usage).
const INCREMENT_SCRIPT: &str = r#"
local max = '18446744073709551615'
local raw = redis.call('GET', KEYS[1])
local cur = raw
if cur == false then cur = '0' end
if string.find(cur, '^%d+$') == nil then return -1 end
cur = string.gsub(cur, '^0+', '')
if cur == '' then cur = '0' end
if #cur > 20 or (#cur == 20 and cur > max) then return -1 end
local d = ARGV[1]
local out = {}
local carry = 0
local i, j = #cur, #d
while i > 0 or j > 0 or carry > 0 do
  local x = carry
  if i > 0 then x = x + string.byte(cur, i) - 48; i = i - 1 end
  if j > 0 then x = x + string.byte(d, j) - 48; j = j - 1 end
  out[#out + 1] = string.char(48 + x % 10)
  carry = math.floor(x / 10)
end
local s = string.gsub(string.reverse(table.concat(out)), '^0+', '')
if s == '' then s = '0' end
if #s > 20 or (#s == 20 and s > max) then return -2 end
local dk, db = 1, #ARGV[2] + #s
if raw ~= false then dk = 0; db = #s - #raw end
local uk = tonumber(redis.call('HGET', KEYS[3], 'keys') or '0')
local ub = tonumber(redis.call('HGET', KEYS[3], 'bytes') or '0')
if dk > 0 and uk + dk > tonumber(ARGV[3]) then return {-3, uk} end
if db > 0 and ub + db > tonumber(ARGV[4]) then return {-4, ub} end
redis.call('SET', KEYS[1], s)
redis.call('ZADD', KEYS[2], 0, ARGV[2])
if dk ~= 0 then redis.call('HINCRBY', KEYS[3], 'keys', dk) end
if db ~= 0 then redis.call('HINCRBY', KEYS[3], 'bytes', db) end
return s
"#;

/// Sets (`ARGV[3]` = `set`: pairs key, value from `ARGV[4]`) or deletes (`del`: keys
/// from `ARGV[4]`) the values named `KEYS[3..]`, one per key in order, keeping the
/// index `KEYS[1]` and the usage hash `KEYS[2]`, against the quota `ARGV[1]` keys,
/// `ARGV[2]` bytes. Returns 0, or {-3 | -4, current usage} when over the keys / bytes
/// quota (nothing is written then).
const WRITE_SCRIPT: &str = r#"
local set = ARGV[3] == 'set'
local n = #KEYS - 2
local size = {}
local dk, db = 0, 0
for j = 1, n do
  local name = KEYS[2 + j]
  local key, new
  if set then key = ARGV[2 + 2 * j]; new = #key + #ARGV[3 + 2 * j] else key = ARGV[3 + j]; new = false end
  local old = size[name]
  if old == nil then
    if redis.call('EXISTS', name) == 1 then old = #key + redis.call('STRLEN', name) else old = false end
  end
  if old then dk = dk - 1; db = db - old end
  if new then dk = dk + 1; db = db + new end
  size[name] = new
end
local uk = tonumber(redis.call('HGET', KEYS[2], 'keys') or '0')
local ub = tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0')
if dk > 0 and uk + dk > tonumber(ARGV[1]) then return {-3, uk} end
if db > 0 and ub + db > tonumber(ARGV[2]) then return {-4, ub} end
for j = 1, n do
  local name = KEYS[2 + j]
  if set then
    redis.call('SET', name, ARGV[3 + 2 * j])
    redis.call('ZADD', KEYS[1], 0, ARGV[2 + 2 * j])
  else
    redis.call('DEL', name)
    redis.call('ZREM', KEYS[1], ARGV[3 + j])
  end
end
if dk ~= 0 then
  if uk + dk < 0 then redis.call('HSET', KEYS[2], 'keys', 0) else redis.call('HINCRBY', KEYS[2], 'keys', dk) end
end
if db ~= 0 then
  if ub + db < 0 then redis.call('HSET', KEYS[2], 'bytes', 0) else redis.call('HINCRBY', KEYS[2], 'bytes', db) end
end
return 0
"#;

/// The values named `KEYS`, or, when their sizes add up to more than `ARGV[1]` bytes,
/// that total (an integer) without reading them.
const GET_MANY_SCRIPT: &str = r#"
local total = 0
for i = 1, #KEYS do total = total + redis.call('STRLEN', KEYS[i]) end
if total > tonumber(ARGV[1]) then return total end
return redis.call('MGET', unpack(KEYS))
"#;

impl RedisKv {
    /// Connects to the Redis server at `url` (`redis://[user[:password]@]host[:port][/db]`).
    ///
    /// Fails within a few seconds, with an error naming the URL (password redacted),
    /// when the server is unreachable or refuses us. Once connected, the connection is
    /// re-established automatically when it breaks; commands issued meanwhile fail
    /// (and reach the guest as `error::other`).
    pub async fn connect(url: &str) -> Result<RedisKv, KvError> {
        let shown = redact_url(url);
        let secrets = secrets_of(url);
        let client = redis::Client::open(url).map_err(|e| {
            KvError::Backend(format!(
                "invalid Redis URL {shown}: {}",
                scrub(&e.to_string(), &secrets)
            ))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CONNECTION_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_number_of_retries(2)
            .set_factor(100)
            .set_max_delay(1000);
        let attempt = async {
            let mut conn = ConnectionManager::new_with_config(client, config).await?;
            cmd("PING").query_async::<()>(&mut conn).await?;
            Ok::<_, redis::RedisError>(conn)
        };
        let conn = match tokio::time::timeout(CONNECT_DEADLINE, attempt).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(KvError::Backend(format!(
                    "cannot connect to Redis at {shown}: {}",
                    scrub(&e.to_string(), &secrets)
                )));
            }
            Err(_) => {
                return Err(KvError::Backend(format!(
                    "cannot connect to Redis at {shown}: no connection after {}s",
                    CONNECT_DEADLINE.as_secs()
                )));
            }
        };
        Ok(RedisKv {
            conn,
            url: shown,
            secrets,
        })
    }

    fn err(&self, what: &str, e: redis::RedisError) -> KvError {
        KvError::Backend(format!(
            "Redis at {}: {what}: {}",
            self.url,
            scrub(&e.to_string(), &self.secrets)
        ))
    }
}

/// The secrets in `url`: the password of its user info and any `pass`/`password`
/// query parameter (the `redis+unix://` form), raw and percent-decoded.
fn secrets_of(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some((_, password)) = rest[..at].split_once(':')
        {
            out.push(password.to_owned());
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split(['&', '#']) {
            if let Some((k, v)) = pair.split_once('=')
                && (k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password"))
            {
                out.push(v.to_owned());
            }
        }
    }
    let decoded: Vec<String> = out.iter().map(|s| percent_decode(s)).collect();
    out.extend(decoded);
    out.retain(|s| !s.is_empty());
    out.sort();
    out.dedup();
    // Longest first, so a secret containing another is replaced whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            // Two hex digits: at most 0xff.
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with every secret replaced by `***`.
fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        out = out.replace(secret.as_str(), "***");
    }
    out
}

/// `url` with its password (user info, or a `pass`/`password` query parameter)
/// replaced by `***`: the form to show in messages and logs. The server should print
/// a `--key-value` URL only through this.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some((user, _password)) = rest[..at].split_once(':')
        {
            out = format!("{}{user}:***{}", &url[..scheme_end + 3], &rest[at..]);
        }
    }
    if let Some((base, query)) = out.clone().split_once('?') {
        let (query, fragment) = match query.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (query, None),
        };
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _))
                    if k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password") =>
                {
                    format!("{k}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{base}?{}", query.join("&"));
        if let Some(f) = fragment {
            out.push('#');
            out.push_str(f);
        }
    }
    out
}

/// Percent-encodes the characters that delimit the namespace in a Redis name.
fn encode_part(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
}

/// `wharf:{A:S}`: the namespace's index, and the prefix of its values' names.
fn index_name(ns: &Namespace) -> String {
    let mut out = String::with_capacity(10 + ns.app.len() + ns.store.len());
    out.push_str("wharf:{");
    encode_part(&ns.app, &mut out);
    out.push(':');
    encode_part(&ns.store, &mut out);
    out.push('}');
    out
}

/// `wharf-usage:{A}`: the app's usage hash (`keys`, `bytes`).
fn usage_name(app: &str) -> String {
    let mut out = String::with_capacity(14 + app.len());
    out.push_str("wharf-usage:{");
    encode_part(app, &mut out);
    out.push('}');
    out
}

/// A quota refusal from a script's `{-3 | -4, used}` reply.
fn quota_error(code: i64, used: i64, quota: &KvQuota) -> KvError {
    let used = u64::try_from(used).unwrap_or(0);
    if code == -3 {
        KvError::QuotaExceeded {
            what: "keys",
            limit: quota.max_keys,
            used,
        }
    } else {
        KvError::QuotaExceeded {
            what: "bytes",
            limit: quota.max_bytes,
            used,
        }
    }
}

/// `wharf:{A:S}:key`: where the value of `key` is stored.
fn value_name(index: &str, key: &str) -> String {
    let mut out = String::with_capacity(index.len() + 1 + key.len());
    out.push_str(index);
    out.push(':');
    out.push_str(key);
    out
}

impl RedisKv {
    /// Runs [`WRITE_SCRIPT`] over `ops` (all sets or all deletes).
    async fn write(
        &self,
        ns: &Namespace,
        keys: &[&str],
        values: Option<&[&[u8]]>,
        quota: &KvQuota,
    ) -> Result<(), KvError> {
        if keys.is_empty() {
            return Ok(());
        }
        let index = index_name(ns);
        let mut script = cmd("EVAL");
        script
            .arg(WRITE_SCRIPT)
            .arg(keys.len() + 2)
            .arg(&index)
            .arg(usage_name(&ns.app));
        for key in keys {
            script.arg(value_name(&index, key));
        }
        script.arg(quota.max_keys.to_string());
        script.arg(quota.max_bytes.to_string());
        match values {
            Some(values) => {
                script.arg("set");
                for (key, value) in keys.iter().zip(values) {
                    script.arg(*key).arg(*value);
                }
            }
            None => {
                script.arg("del");
                for key in keys {
                    script.arg(*key);
                }
            }
        }
        let reply: Value = script
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.err("write", e))?;
        match reply {
            Value::Int(0) => Ok(()),
            Value::Array(v) => match v.as_slice() {
                [Value::Int(code), Value::Int(used)] => Err(quota_error(*code, *used, quota)),
                _ => Err(self.unexpected("write", &v)),
            },
            other => Err(self.unexpected("write", &other)),
        }
    }

    fn unexpected(&self, what: &str, reply: &dyn std::fmt::Debug) -> KvError {
        KvError::Backend(format!(
            "Redis at {}: {what}: unexpected reply {reply:?}",
            self.url
        ))
    }
}

#[async_trait::async_trait]
impl KvBackend for RedisKv {
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        cmd("GET")
            .arg(value_name(&index_name(ns), key))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.err("GET", e))
    }

    async fn set(
        &self,
        ns: &Namespace,
        key: &str,
        value: &[u8],
        quota: &KvQuota,
    ) -> Result<(), KvError> {
        self.write(ns, &[key], Some(&[value]), quota).await
    }

    async fn delete(&self, ns: &Namespace, key: &str) -> Result<(), KvError> {
        self.write(ns, &[key], None, &KvQuota::UNLIMITED).await
    }

    async fn exists(&self, ns: &Namespace, key: &str) -> Result<bool, KvError> {
        cmd("EXISTS")
            .arg(value_name(&index_name(ns), key))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.err("EXISTS", e))
    }

    async fn list_keys(
        &self,
        ns: &Namespace,
        after: Option<&str>,
        page: usize,
    ) -> Result<(Vec<String>, Option<String>), KvError> {
        let page = page.max(1);
        let min = match after {
            None => b"-".to_vec(),
            Some(after) => {
                let mut min = Vec::with_capacity(after.len() + 1);
                min.push(b'(');
                min.extend_from_slice(after.as_bytes());
                min
            }
        };
        // One key more than the page tells whether another page follows.
        let mut keys: Vec<String> = cmd("ZRANGEBYLEX")
            .arg(index_name(ns))
            .arg(min)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(page.saturating_add(1))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.err("ZRANGEBYLEX", e))?;
        let next = if keys.len() > page {
            keys.truncate(page);
            keys.last().cloned()
        } else {
            None
        };
        Ok((keys, next))
    }

    async fn increment(
        &self,
        ns: &Namespace,
        key: &str,
        delta: u64,
        quota: &KvQuota,
    ) -> Result<u64, KvError> {
        let index = index_name(ns);
        let reply: Value = cmd("EVAL")
            .arg(INCREMENT_SCRIPT)
            .arg(3)
            .arg(value_name(&index, key))
            .arg(&index)
            .arg(usage_name(&ns.app))
            .arg(delta.to_string())
            .arg(key)
            .arg(quota.max_keys.to_string())
            .arg(quota.max_bytes.to_string())
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.err("increment", e))?;
        match reply {
            Value::BulkString(text) => std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| {
                    KvError::Backend(format!(
                        "Redis at {}: increment: unexpected result {:?}",
                        self.url,
                        String::from_utf8_lossy(&text)
                    ))
                }),
            Value::Int(-1) => Err(KvError::NotANumber {
                key: key.to_owned(),
            }),
            Value::Int(-2) => Err(KvError::Overflow {
                key: key.to_owned(),
                delta,
            }),
            Value::Array(v) => match v.as_slice() {
                [Value::Int(code), Value::Int(used)] => Err(quota_error(*code, *used, quota)),
                _ => Err(self.unexpected("increment", &v)),
            },
            other => Err(self.unexpected("increment", &other)),
        }
    }

    async fn get_many(
        &self,
        ns: &Namespace,
        keys: &[String],
        max_bytes: u64,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let index = index_name(ns);
        let mut script = cmd("EVAL");
        script.arg(GET_MANY_SCRIPT).arg(keys.len());
        for key in keys {
            script.arg(value_name(&index, key));
        }
        // Lua numbers are doubles: a cap beyond 2^53 is as good as none.
        script.arg(max_bytes.min(1 << 53).to_string());
        let reply: Value = script
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.err("get many", e))?;
        let values = match reply {
            Value::Int(total) => {
                return Err(KvError::BatchTooLarge {
                    limit: max_bytes,
                    total: u64::try_from(total).unwrap_or(0),
                });
            }
            Value::Array(values) => values,
            other => return Err(self.unexpected("get many", &other)),
        };
        if values.len() != keys.len() {
            return Err(KvError::Backend(format!(
                "Redis at {}: MGET of {} keys returned {} values",
                self.url,
                keys.len(),
                values.len()
            )));
        }
        keys.iter()
            .zip(values)
            .map(|(key, value)| match value {
                Value::Nil => Ok(None),
                Value::BulkString(v) => Ok(Some((key.clone(), v))),
                other => Err(self.unexpected("get many", &other)),
            })
            .collect()
    }

    async fn set_many(
        &self,
        ns: &Namespace,
        items: &[(String, Vec<u8>)],
        quota: &KvQuota,
    ) -> Result<(), KvError> {
        let keys: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
        let values: Vec<&[u8]> = items.iter().map(|(_, v)| v.as_slice()).collect();
        self.write(ns, &keys, Some(&values), quota).await
    }

    async fn delete_many(&self, ns: &Namespace, keys: &[String]) -> Result<(), KvError> {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.write(ns, &keys, None, &KvQuota::UNLIMITED).await
    }

    async fn usage(&self, app: &str) -> Result<KvUsage, KvError> {
        let (keys, bytes): (Option<i64>, Option<i64>) = cmd("HMGET")
            .arg(usage_name(app))
            .arg("keys")
            .arg("bytes")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.err("HMGET", e))?;
        let count = |n: Option<i64>| n.map_or(0, |n| u64::try_from(n).unwrap_or(0));
        Ok(KvUsage {
            keys: count(keys),
            bytes: count(bytes),
        })
    }

    async fn purge(&self, app: &str) -> Result<u64, KvError> {
        // Every name of every store of the app starts with `wharf:{A:` (A encoded, so
        // that another app's prefix can never match); `*`, `?`, `[` and `\\` are
        // escaped for the glob.
        let mut pattern = String::from("wharf:{");
        let mut encoded = String::new();
        encode_part(app, &mut encoded);
        for c in encoded.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str(":*");
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut values: u64 = 0;
        loop {
            let (next, names): (u64, Vec<String>) = cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.err("SCAN", e))?;
            if !names.is_empty() {
                // A value's name is its index's name, `:` and the key; an index name
                // has no `}:` (store names are encoded).
                values += names.iter().filter(|n| n.contains("}:")).count() as u64;
                cmd("UNLINK")
                    .arg(&names)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| self.err("UNLINK", e))?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        cmd("DEL")
            .arg(usage_name(app))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.err("DEL", e))?;
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_different_namespaces_cannot_collide() {
        let a = index_name(&Namespace::new("a:b", "c"));
        let b = index_name(&Namespace::new("a", "b:c"));
        assert_ne!(a, b);
        assert_eq!(a, "wharf:{a%3Ab:c}");
        assert_eq!(b, "wharf:{a:b%3Ac}");
        assert_eq!(
            index_name(&Namespace::new("%3A", "}{")),
            "wharf:{%253A:%7D%7B}"
        );
        assert_eq!(value_name(&a, "k:1"), "wharf:{a%3Ab:c}:k:1");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("redis://:s3cret@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            redact_url("rediss://user:s3cret@host/1"),
            "rediss://user:***@host/1"
        );
        assert_eq!(redact_url("redis://user@host"), "redis://user@host");
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
