//! The shared backend: a Redis server, for apps served by many nodes.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Value, cmd, pipe};

use crate::{KvBackend, KvError, Namespace};

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
/// `set`, `delete`, the batch calls and `increment` update the value and the index
/// together in one `MULTI`/`EXEC` transaction (or one script), and `list_keys` reads
/// the index with `ZRANGE start start+page` (O(log N + page), instead of a `SCAN` of
/// the whole keyspace per page). The cursor is the index (rank) into the sorted
/// listing of the namespace's keys. Values written to these names by anything other
/// than this backend are not indexed.
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
}

impl std::fmt::Debug for RedisKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKv")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Adds decimal `ARGV[1]` to the counter at `KEYS[1]` (missing = 0) and indexes
/// `ARGV[2]` in `KEYS[2]`. Returns the new value as text, -1 when the stored value is
/// not a u64 in decimal, -2 on overflow.
const INCREMENT_SCRIPT: &str = r#"
local max = '18446744073709551615'
local cur = redis.call('GET', KEYS[1])
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
redis.call('SET', KEYS[1], s)
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return s
"#;

impl RedisKv {
    /// Connects to the Redis server at `url` (`redis://[user[:password]@]host[:port][/db]`).
    ///
    /// Fails within a few seconds, with an error naming the URL (password redacted),
    /// when the server is unreachable or refuses us. Once connected, the connection is
    /// re-established automatically when it breaks; commands issued meanwhile fail
    /// (and reach the guest as `error::other`).
    pub async fn connect(url: &str) -> Result<RedisKv, KvError> {
        let shown = redact(url);
        let client = redis::Client::open(url)
            .map_err(|e| KvError::Backend(format!("invalid Redis URL {shown}: {e}")))?;
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
                    "cannot connect to Redis at {shown}: {e}"
                )));
            }
            Err(_) => {
                return Err(KvError::Backend(format!(
                    "cannot connect to Redis at {shown}: no connection after {}s",
                    CONNECT_DEADLINE.as_secs()
                )));
            }
        };
        Ok(RedisKv { conn, url: shown })
    }

    fn err(&self, what: &str, e: redis::RedisError) -> KvError {
        KvError::Backend(format!("Redis at {}: {what}: {e}", self.url))
    }
}

/// `url` with the password (if any) replaced by `***`.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &rest[at..]),
        None => url.to_owned(),
    }
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

/// `wharf:{A:S}:key`: where the value of `key` is stored.
fn value_name(index: &str, key: &str) -> String {
    let mut out = String::with_capacity(index.len() + 1 + key.len());
    out.push_str(index);
    out.push(':');
    out.push_str(key);
    out
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

    async fn set(&self, ns: &Namespace, key: &str, value: &[u8]) -> Result<(), KvError> {
        let index = index_name(ns);
        pipe()
            .atomic()
            .cmd("SET")
            .arg(value_name(&index, key))
            .arg(value)
            .ignore()
            .cmd("ZADD")
            .arg(&index)
            .arg(0)
            .arg(key)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(|e| self.err("SET", e))
    }

    async fn delete(&self, ns: &Namespace, key: &str) -> Result<(), KvError> {
        let index = index_name(ns);
        pipe()
            .atomic()
            .cmd("DEL")
            .arg(value_name(&index, key))
            .ignore()
            .cmd("ZREM")
            .arg(&index)
            .arg(key)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(|e| self.err("DEL", e))
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
        cursor: Option<u64>,
        page: usize,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        let page = page.max(1);
        let start = cursor.unwrap_or(0);
        // Ranks are i64 in Redis; a cursor beyond that is past the end of any set.
        let (Ok(first), Ok(page_i64)) = (i64::try_from(start), i64::try_from(page)) else {
            return Ok((Vec::new(), None));
        };
        // One key more than the page tells whether another page follows.
        let last = first.saturating_add(page_i64);
        let mut keys: Vec<String> = cmd("ZRANGE")
            .arg(index_name(ns))
            .arg(first)
            .arg(last)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.err("ZRANGE", e))?;
        let next = if keys.len() > page {
            keys.truncate(page);
            Some(start.saturating_add(page as u64))
        } else {
            None
        };
        Ok((keys, next))
    }

    async fn increment(&self, ns: &Namespace, key: &str, delta: u64) -> Result<u64, KvError> {
        let index = index_name(ns);
        let reply: Value = cmd("EVAL")
            .arg(INCREMENT_SCRIPT)
            .arg(2)
            .arg(value_name(&index, key))
            .arg(&index)
            .arg(delta.to_string())
            .arg(key)
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
            other => Err(KvError::Backend(format!(
                "Redis at {}: increment: unexpected reply {other:?}",
                self.url
            ))),
        }
    }

    async fn get_many(
        &self,
        ns: &Namespace,
        keys: &[String],
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let index = index_name(ns);
        let mut mget = cmd("MGET");
        for key in keys {
            mget.arg(value_name(&index, key));
        }
        let values: Vec<Option<Vec<u8>>> = mget
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.err("MGET", e))?;
        if values.len() != keys.len() {
            return Err(KvError::Backend(format!(
                "Redis at {}: MGET of {} keys returned {} values",
                self.url,
                keys.len(),
                values.len()
            )));
        }
        Ok(keys
            .iter()
            .zip(values)
            .map(|(key, value)| value.map(|v| (key.clone(), v)))
            .collect())
    }

    async fn set_many(&self, ns: &Namespace, items: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        if items.is_empty() {
            return Ok(());
        }
        let index = index_name(ns);
        let mut mset = cmd("MSET");
        let mut zadd = cmd("ZADD");
        zadd.arg(&index);
        for (key, value) in items {
            mset.arg(value_name(&index, key)).arg(value.as_slice());
            zadd.arg(0).arg(key);
        }
        pipe()
            .atomic()
            .add_command(mset)
            .ignore()
            .add_command(zadd)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(|e| self.err("MSET", e))
    }

    async fn delete_many(&self, ns: &Namespace, keys: &[String]) -> Result<(), KvError> {
        if keys.is_empty() {
            return Ok(());
        }
        let index = index_name(ns);
        let mut del = cmd("DEL");
        let mut zrem = cmd("ZREM");
        zrem.arg(&index);
        for key in keys {
            del.arg(value_name(&index, key));
            zrem.arg(key);
        }
        pipe()
            .atomic()
            .add_command(del)
            .ignore()
            .add_command(zrem)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(|e| self.err("DEL", e))
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
            redact("redis://:s3cret@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            redact("rediss://user:s3cret@host/1"),
            "rediss://user:***@host/1"
        );
        assert_eq!(redact("redis://user@host"), "redis://user@host");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("not a url"), "not a url");
    }
}
